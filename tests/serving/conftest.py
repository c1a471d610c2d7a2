"""Fixtures for the serving tests: MNIST test images, a well-trained model (trained once, cached),
one real multi-worker seldon-core-microservice and one real multi-worker KServe server
(`python -m runtime.kserve_server` from .venv-kserve) on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlctl.artifacts import training_code_sha256
from mlctl.errors import MlctlError
from mlctl.targets.local.server import LocalServer, ServerConfig, kserve_python, server_binary

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
CACHE = REPO / ".mlctl" / "cache"
# Two epochs with the convolutions training throughout reach ~99 % on the test set, a model
# as good as the default recipe's (one epoch: ~98.7 %; two with conv2 frozen after 30 % of
# them, so 0.6 epochs of convolutions: 98.9 %).
TRAIN_ARGS = ("--epochs", "2", "--batch-size", "128", "--freeze-conv2", "1", "--seed", "1", "--no-progress")


def _have_mnist() -> bool:
    return (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (10000, 28, 28), labels) from ../shared/data/mnist."""
    if not _have_mnist():
        pytest.skip(f"MNIST not found in {MNIST_DIR} (expected ../shared/data/mnist beside the repo)")
    from model.data import load_mnist

    data = load_mnist(MNIST_DIR)
    return data.test_x, data.test_y


def _model_cache_key() -> str:
    """Everything the cached model's weights depend on: the arguments, the training code (as the
    training hash takes it: the recipe as much as the network), the torch build and the data."""
    from importlib.metadata import version

    h = hashlib.sha256(" ".join(TRAIN_ARGS).encode())
    h.update(json.dumps(training_code_sha256(REPO / "model"), sort_keys=True).encode())
    h.update(version("torch").encode())
    for f in sorted(MNIST_DIR.glob("*.gz")):
        h.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def pytest_collection_modifyitems(config, items):
    """A test that needs the trained model trains it on a fresh clone (~1.5 min): it is slow."""
    for item in items:
        if "trained_model_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trained_model_dir() -> Path:
    """A model trained by `python -m model.train` with TRAIN_ARGS, cached across runs by the hash
    of the model code and the arguments (a fresh clone trains it once, ~1.5 min on 2 cores)."""
    if not _have_mnist():
        pytest.skip(f"MNIST not found in {MNIST_DIR}")
    out = CACHE / f"test-model-{_model_cache_key()}"
    if (out / "metadata.json").is_file() and (out / "model.pt").is_file():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    p = subprocess.run(
        [sys.executable, "-m", "model.train", "--data-dir", str(MNIST_DIR), "--out", str(tmp), *TRAIN_ARGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, f"training failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


@pytest.fixture(scope="session")
def serve_bin() -> str:
    try:
        return server_binary()
    except MlctlError as e:
        pytest.skip(f"no seldon-core-microservice: {e}")


@pytest.fixture(scope="session")
def server(trained_model_dir: Path, serve_bin: str) -> Iterator[LocalServer]:
    """One real server: 2 gunicorn workers × 2 threads (gthread), metrics handed over at once."""
    cfg = ServerConfig(
        model_dir=trained_model_dir,
        workers=2,
        threads=2,
        extra_env={"MODEL_METRICS_FLUSH_S": "0", "MODEL_MAX_IMAGE_BYTES": str(1024 * 1024)},
    )
    with LocalServer(cfg) as srv:
        yield srv


@pytest.fixture(scope="session")
def kserve_bin() -> str:
    """.venv-kserve's Python (scripts/setup.sh makes it; CI always has it)."""
    try:
        return kserve_python()
    except MlctlError as e:
        pytest.skip(f"no KServe runtime: {e} (scripts/setup.sh makes .venv-kserve; CI always has it)")


class KServeWithGrpc(LocalServer):
    """The KServe server as `mlctl serve` runs it, plus its OIP gRPC server on `cfg.grpc_port`, which
    the image runs (mlctl turns it off: Knative gives a predictor one port)."""

    @property
    def argv(self) -> list[str]:
        return ["--enable_grpc=true" if a == "--enable_grpc=false" else a for a in super().argv]


@pytest.fixture(scope="module")
def kserve_server(trained_model_dir: Path, kserve_bin: str) -> Iterator[LocalServer]:
    """One real KServe server (`python -m runtime.kserve_server`): 2 spawned uvicorn workers, each
    loading the model itself, gRPC in the parent; a 1 MiB image limit, small enough to send past."""
    cfg = ServerConfig(
        model_dir=trained_model_dir,
        engine="kserve",
        workers=2,
        extra_env={"MODEL_MAX_IMAGE_BYTES": str(1024 * 1024)},
    )
    with KServeWithGrpc(cfg, start_timeout=120) as srv:
        assert "--enable_grpc=true" in srv.argv
        yield srv
