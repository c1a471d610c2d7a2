"""The `helm test` check itself: the examples it posts are the model contract's (for MNIST a real
test-set digit), and the script the pod runs (taken from the rendered ConfigMap) passes when every
example gets its answer and fails on a wrong label, an accepted bad input, or no answer."""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlctl.render import examples_values
from mlctl.specload import load_contract
from tests.chart.helpers import MNIST_DIR, one, template
from tests.helpers import MODEL_PACKAGE
from tests.k8s.fakes import refusal

CONTRACT = load_contract(MODEL_PACKAGE)
DIGIT = CONTRACT.labelled_examples[0]
LABEL = int(DIGIT.expect)


def test_the_mnist_example_is_test_image_0_with_its_label():
    images, labels = MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"MNIST test set not found in {MNIST_DIR} (expected ../shared/data/mnist beside the repo)")
    first = np.frombuffer(gzip.open(images).read(16 + 28 * 28), np.uint8, offset=16).reshape(28, 28)
    label = gzip.open(labels).read(9)[8]
    png = np.asarray(Image.open(DIGIT.input))
    assert png.dtype == np.uint8 and png.shape == (28, 28)
    assert np.array_equal(png, first)
    assert label == LABEL


def test_without_examples_there_is_no_test_pod(helm):
    objects = template({"model": {"uri": "pvc://m/p"}}, helm=helm)
    assert not [o for o in objects if o["kind"] in ("Pod", "ConfigMap")]


def _fields(handler: http.server.BaseHTTPRequestHandler, body: bytes) -> dict[str, bytes]:
    """Split a multipart/form-data body byte for byte (email's parser rewrites line ends in binary parts)."""
    boundary = handler.headers.get_param("boundary").encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head).group(1).decode()
        fields[name] = content.removesuffix(b"\r\n")
    return fields


class FakeSeldon(http.server.BaseHTTPRequestHandler):
    """Answers like the Seldon wrapper: scores for t:0…t:9 with the chosen digit highest, and
    the contract's bad examples refused with their status (unless `accept_all`)."""

    answer_digit = LABEL
    answer_format = "ndarray"
    accept_all = False
    received: list[dict[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get_content_type() == "application/json":  # a tensor: Seldon's JSON ndarray
            fields = {"ndarray": json.loads(body)["data"]["ndarray"]}
        else:
            fields = _fields(self, body)
        type(self).received.append(fields)
        refused = None if self.accept_all else refusal(body)
        if refused:
            self.send_response(refused)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        scores = [0.01] * 10
        scores[self.answer_digit] = 0.91
        if self.answer_format == "ndarray":
            data = {"names": [f"t:{i}" for i in range(10)], "ndarray": [scores]}
        else:
            data = {"names": [f"t:{i}" for i in range(10)], "tensor": {"shape": [1, 10], "values": scores}}
        payload = json.dumps({"data": data, "meta": {}}).encode()
        status = 200 if self.path == "/api/v1.0/predictions" and {"binData", "ndarray"} & set(fields) else 400
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[FakeSeldon]]]:
    handler = type("Handler", (FakeSeldon,), {"received": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def sample(helm, tmp_path_factory) -> Path:
    """The ConfigMap's files as the pod sees them under /sample."""
    values = {"model": {"uri": "pvc://m/p"}, "tests": examples_values(CONTRACT)}
    cm = one(template(values, helm=helm), "ConfigMap", "-test-sample")
    root = tmp_path_factory.mktemp("sample")
    for name, text in cm["data"].items():
        (root / name).write_text(text)
    for name, b64 in cm["binaryData"].items():
        (root / name).write_bytes(base64.b64decode(b64))
    return root


def run_check(sample: Path, url: str, attempts: int = 1) -> subprocess.CompletedProcess:
    env = {
        "PREDICT_URL": url,
        "EXAMPLES": str(sample / "examples.json"),
        "ATTEMPTS": str(attempts),
        "RETRY_SECONDS": "0",
    }
    return subprocess.run(
        [sys.executable, "-B", str(sample / "predict.py")], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("fmt", ["ndarray", "tensor"])
def test_check_passes_when_every_example_gets_its_answer(sample, server, fmt):
    base, handler = server
    handler.answer_format = fmt
    p = run_check(sample, f"{base}/api/v1.0/predictions")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["examples"]
    assert [(g["input"], g.get("label"), g["status"]) for g in got] == [
        (e.input.name, e.expect, e.status or 200) for e in CONTRACT.examples
    ]
    sent = [f.get("binData", f.get("ndarray")) for f in handler.received]
    assert sent == [  # an image as its bytes, a tensor (one 28×28 item) as a batch of one
        [json.loads(e.input.read_text())] if e.kind == "tensor" else e.input.read_bytes() for e in CONTRACT.examples
    ]
    assert any(e.kind == "tensor" for e in CONTRACT.examples)


def test_check_fails_on_a_wrong_digit(sample, server):
    base, handler = server
    handler.answer_digit = (LABEL + 1) % 10
    p = run_check(sample, f"{base}/api/v1.0/predictions")
    assert p.returncode == 1
    assert f"FAIL: {DIGIT.input.name}: answered '{LABEL + 1}' (HTTP 200), expected '{LABEL}'" in p.stderr


def test_check_fails_when_a_bad_input_is_accepted(sample, server):
    base, handler = server
    handler.accept_all = True
    p = run_check(sample, f"{base}/api/v1.0/predictions")
    assert p.returncode == 1
    bad = [e for e in CONTRACT.examples if e.status]
    assert bad and all(f"FAIL: {e.input.name}: HTTP 200, expected HTTP {e.status}" in p.stderr for e in bad)


def test_check_fails_when_nothing_answers(sample):
    import socket

    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run_check(sample, f"http://127.0.0.1:{port}/api/v1.0/predictions", attempts=2)
    assert p.returncode == 1
    assert "attempt 2/2" in p.stderr and "FAIL: " in p.stderr


def test_the_ci_values_carry_the_examples_mlctl_renders():
    """chart-testing installs ci/*-values.yaml without mlctl: the copies there are the contract's."""
    import yaml

    from tests.chart.helpers import CHART

    for name in ("default", "kserve"):
        values = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
        assert values["tests"] == examples_values(CONTRACT), name
