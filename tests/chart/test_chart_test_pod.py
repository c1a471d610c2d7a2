"""The `helm test` check itself: the sample is a real MNIST digit, and the script the pod runs
(taken from the rendered ConfigMap) passes on a right answer and fails on a wrong one."""

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

from tests.chart.helpers import CHART, MNIST_DIR, one, template

LABEL = int((CHART / "files/digit.label").read_text())


def test_sample_is_mnist_test_image_0_with_its_label():
    images, labels = MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"MNIST test set not found in {MNIST_DIR} (expected ../shared/data/mnist beside the repo)")
    first = np.frombuffer(gzip.open(images).read(16 + 28 * 28), np.uint8, offset=16).reshape(28, 28)
    label = gzip.open(labels).read(9)[8]
    png = np.asarray(Image.open(CHART / "files/digit.png"))
    assert png.dtype == np.uint8 and png.shape == (28, 28)
    assert np.array_equal(png, first)
    assert label == LABEL


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
    """Answers like the Seldon wrapper: scores for t:0…t:9 with the chosen digit highest."""

    answer_digit = LABEL
    answer_format = "ndarray"
    received: list[dict[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        fields = _fields(self, body)
        type(self).received.append(fields)
        scores = [0.01] * 10
        scores[self.answer_digit] = 0.91
        if self.answer_format == "ndarray":
            data = {"names": [f"t:{i}" for i in range(10)], "ndarray": [scores]}
        else:
            data = {"names": [f"t:{i}" for i in range(10)], "tensor": {"shape": [1, 10], "values": scores}}
        payload = json.dumps({"data": data, "meta": {}}).encode()
        status = 200 if self.path == "/api/v1.0/predictions" and "binData" in fields else 400
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
    cm = one(template({"model": {"uri": "pvc://m/p"}}, helm=helm), "ConfigMap", "-test-sample")
    root = tmp_path_factory.mktemp("sample")
    for name, text in cm["data"].items():
        (root / name).write_text(text)
    for name, b64 in cm["binaryData"].items():
        (root / name).write_bytes(base64.b64decode(b64))
    return root


def run_check(sample: Path, url: str, attempts: int = 1) -> subprocess.CompletedProcess:
    env = {
        "PREDICT_URL": url,
        "SAMPLE_PNG": str(sample / "digit.png"),
        "SAMPLE_LABEL": str(sample / "digit.label"),
        "ATTEMPTS": str(attempts),
        "RETRY_SECONDS": "0",
    }
    return subprocess.run(
        [sys.executable, "-B", str(sample / "predict.py")], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("fmt", ["ndarray", "tensor"])
def test_check_passes_on_the_right_digit(sample, server, fmt):
    base, handler = server
    handler.answer_format = fmt
    p = run_check(sample, f"{base}/api/v1.0/predictions")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["predicted"] == LABEL
    (fields,) = handler.received
    assert fields["binData"] == (CHART / "files/digit.png").read_bytes()


def test_check_fails_on_a_wrong_digit(sample, server):
    base, handler = server
    handler.answer_digit = (LABEL + 1) % 10
    p = run_check(sample, f"{base}/api/v1.0/predictions")
    assert p.returncode == 1
    assert f"the digit is a {LABEL}" in p.stderr


def test_check_fails_when_nothing_answers(sample, server):
    base, _ = server
    p = run_check(sample, f"{base}/wrong/path", attempts=2)
    assert p.returncode == 1
    assert "attempt 2/2" in p.stderr
