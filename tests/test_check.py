"""The check every target ends with, against a loopback server that answers as told: each of the
shipped contract's examples must get its label or its status, and each kind of wrong answer stops
it with what was expected and what came."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from mlctl.errors import SmokeTestFailed
from mlctl.specload import load_contract
from mlctl.targets.shared.check import check_examples, summary
from tests.helpers import MODEL_PACKAGE
from tests.k8s.fakes import refusal

CONTRACT = load_contract(MODEL_PACKAGE)
SHA = "cd" * 32


def answer(index: int) -> bytes:
    row = [-5.0] * 10
    row[index] = -0.01
    return json.dumps({"data": {"ndarray": [row]}, "meta": {"tags": {"model_sha256": SHA}}}).encode()


@pytest.fixture
def server():
    behaviour = {"label": 7, "refuse": True, "bad_status": None}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = refusal(body) if behaviour["refuse"] else None
            if status and behaviour["bad_status"]:
                status = behaviour["bad_status"]
            payload = b'{"error": "refused"}' if status else answer(behaviour["label"])
            self.send_response(status or 200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", behaviour
    httpd.shutdown()


def test_every_example_gets_its_answer(server):
    url, _ = server
    done = check_examples(url, CONTRACT, expected_sha256=SHA)
    assert [r["input"] for r in done["examples"]] == [e.input.name for e in CONTRACT.examples]
    assert summary(done).startswith("digit-7.png → 7 (p=") and "too-many-pixels.png → HTTP 413" in summary(done)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"label": 3}, "digit-7.png: http://127.0.0.1:{port}/api/v1.0/predictions answered '3'"),
        ({"refuse": False}, "not-an-image.txt: http://127.0.0.1:{port}/api/v1.0/predictions answered '7', but"),
        (
            {"bad_status": 422},
            "not-an-image.txt: POST http://127.0.0.1:{port}/api/v1.0/predictions should answer HTTP 400",
        ),
    ],
    ids=["wrong label", "a bad input accepted", "another 4xx"],
)
def test_each_wrong_answer_stops_the_check(server, change, said):
    url, behaviour = server
    behaviour.update(change)
    with pytest.raises(SmokeTestFailed) as failed:
        check_examples(url, CONTRACT, expected_sha256=SHA)
    assert said.format(port=url.rsplit(":", 1)[1]) in failed.value.message


def test_other_weights_than_the_release_names_stop_it(server):
    url, _ = server
    with pytest.raises(SmokeTestFailed, match=f"serves the weights {SHA[:12]}…, not {'ef' * 6}…"):
        check_examples(url, CONTRACT, expected_sha256="ef" * 32)
