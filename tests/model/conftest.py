"""Fixtures for the model/ tests: the real MNIST files, a local HTTP mirror, the entrypoint."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# CI runs in a fresh clone with ../shared beside it.
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not all((MNIST_DIR / f"{name}.gz").is_file() for name in MNIST_FILES):
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR} (expected ../shared/data/mnist beside the repo)")
    return MNIST_DIR


class Mirror:
    """A real HTTP server on 127.0.0.1 serving `files` (URL path → bytes).

    `fail_first[path] = n` answers the first n requests for that path with 503.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}
        self.requests: Counter[str] = Counter()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                path = self.path.lstrip("/")
                mirror.requests[path] += 1
                if mirror.requests[path] <= mirror.fail_first.get(path, 0):
                    self.send_error(503, "try again")
                    return
                body = mirror.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, name: str, body: bytes) -> None:
        self.files[f"mnist/{name}"] = body


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    m.thread.start()
    yield m
    m.server.shutdown()
    m.server.server_close()


def run_train(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `python -m model.train ARGS` from the repo root, as mlctl and the Job do."""
    return subprocess.run(
        [sys.executable, "-m", "model.train", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def train_cli():
    """The entrypoint runner, as a fixture so test modules need not import this conftest."""
    return run_train
