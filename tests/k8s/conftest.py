"""Fixtures for the Kubernetes tests: stand-in helm/kubectl, a spec with credentials in the
environment, a fake clock for the polling loops, and artifacts without torch."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from mlctl import poll  # noqa: E402 (needs the path above)
from mlctl.artifacts import LocalArtifact, StoredArtifact, read_local  # noqa: E402
from mlctl.specload import load_spec  # noqa: E402
from tests.chart.helpers import find_helm  # noqa: E402
from tests.helpers import MODEL_PACKAGE, FakeClock  # noqa: E402
from tests.k8s.fakes import FakeTools, env_for  # noqa: E402

# Distinctive values, so a leak anywhere is found by a plain substring search.
SECRETS = {
    "REGISTRY_PASSWORD": "reg-pw-7f3a91c2e5",
    "MLCTL_S3_ACCESS_KEY_ID": "AKIAFAKE0123456789",
    "MLCTL_S3_SECRET_ACCESS_KEY": "s3-secret-d41d8cd98f00b204",
}

SPEC = """\
apiVersion: mlctl/v1
model: {model}
name: mnist
target: kubernetes
training:
  epochs: 1
  limitTrain: 1000
  limitTest: 500
  output: models
  runner: {runner}
modelStore: {{uri: "{uri}"}}
registry: {{server: ghcr.io, username: bot, password: {{env: REGISTRY_PASSWORD}}}}
storage:
  rclone: {{type: s3, provider: Minio, endpoint: "http://minio.minio.svc:9000", env_auth: "false"}}
  accessKeyId: {{env: MLCTL_S3_ACCESS_KEY_ID}}
  secretAccessKey: {{env: MLCTL_S3_SECRET_ACCESS_KEY}}
kubernetes:
  namespace: models
  release: mnist
  context: kind-ci
  timeoutSeconds: 60
"""


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return SECRETS


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """mlctl's temporary files (values, manifests) land here, so a test can check none is left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path) -> FakeTools:
    tools = FakeTools(tmp_path / "bin")
    for k, v in env_for(tools, find_helm()).items():
        monkeypatch.setenv(k, v)
    # The storage key appears as is in values files and base64-encoded in Secret manifests.
    monkeypatch.setenv("FAKE_EXPECT_SECRET", SECRETS["MLCTL_S3_SECRET_ACCESS_KEY"])
    return tools


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # Real time yields up to 20 ms per sleep: the fake port-forward's server must start.
    fake = FakeClock(now=1000.0, yield_s=0.02)
    monkeypatch.setattr(poll, "_clock", fake)
    monkeypatch.setattr(poll, "_sleep", fake.sleep)
    return fake


def write_spec(
    folder: Path, runner: str = "{kind: kubernetes}", uri: str = "s3://mlctl-models/mnist", extra: str = ""
) -> Path:
    path = folder / "mnist.yaml"
    path.write_text(SPEC.format(model=MODEL_PACKAGE, runner=runner, uri=uri) + extra)
    return path


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_spec(tmp_path)


@pytest.fixture
def spec(spec_path: Path):
    return load_spec(spec_path)


def local_artifact(folder: Path, payload: bytes = b"weights" * 1000) -> LocalArtifact:
    """A complete artifact folder (any bytes stand in for the state_dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(payload)
    meta = {"sha256": hashlib.sha256(payload).hexdigest(), "test_accuracy": 0.97, "format": "mlctl.mnist/v1"}
    (folder / "metadata.json").write_text(json.dumps(meta))
    artifact = read_local(folder)
    assert artifact is not None
    return artifact


def remote_artifact(uri: str = "s3://mlctl-models/mnist/mnist-abababababab") -> StoredArtifact:
    """What train_k8s returns: the Job already put the model in its folder of the store."""
    return StoredArtifact({"sha256": "ab" * 32, "test_accuracy": 0.98}, uri)
