"""examples/tabular, the second model package, as mlctl uses it: its contract validates, its
trainer (run as a subprocess from the package's parent with the flags mlctl appends) writes a
deterministic artifact that learns, the class answers every example of the contract from that
artifact, and a wrong --out is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlctl.contract import TensorInput
from mlctl.specload import load_contract
from runtime import artifact

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = REPO / "examples" / "tabular"
PACKAGE = PACKAGE_ROOT / "tabular"
sys.path.insert(0, str(PACKAGE_ROOT))  # as the server imports it: from the package folder's parent

from tabular import data  # noqa: E402  # importable only once PACKAGE_ROOT is on sys.path
from tabular.model import TabularModel  # noqa: E402  # same

# What mlctl appends with a spec's defaults (mlctl.train.local_argv), --out and --seed aside.
MLCTL_FLAGS = (
    "--data-dir", "/nonexistent/data", "--epochs", "5", "--batch-size", "256", "--lr", "0.005",
    "--label-smoothing", "0.1", "--weight-decay", "0.01", "--device", "auto",
    "--training-hash", "0123456789abcdef", "--no-progress",
)  # fmt: skip


def run_train(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m tabular.train ARGS` in the package's parent, as mlctl runs it. The trainer writes
    through runtime.artifact, so PYTHONPATH names this checkout (the venv's editable install may
    predate `runtime`; the training image has runtime/ in its working folder)."""
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "tabular.train", *args],
        cwd=PACKAGE_ROOT,
        text=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )


def trained(out: Path, seed: int) -> tuple[Path, dict, str]:
    p = run_train(*MLCTL_FLAGS, "--seed", str(seed), "--out", str(out))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    return out, json.loads(lines[0]), p.stderr


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("tabular") / "seed1", seed=1)


@pytest.fixture(scope="module")
def seed2_run(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("tabular") / "seed2", seed=2)


@pytest.fixture(scope="module")
def contract():
    return load_contract(PACKAGE)


def test_the_contract_validates_and_matches_the_code(contract):
    assert contract.model_class == "tabular.model:TabularModel"
    assert contract.output.labels == list(data.LABELS)  # the network's output order
    assert contract.output.scores == "probabilities"
    (features,) = contract.inputs
    assert isinstance(features, TensorInput) and features.name == "features"
    assert features.datatype == ["FP32"] and features.shape == [-1, len(data.FEATURES)]
    assert contract.training.command == ["python", "-m", "tabular.train"]
    assert {e.expect for e in contract.labelled_examples} == set(data.LABELS)  # one example per class at least
    assert any(e.status == 400 for e in contract.examples)


def test_requirements_pin_the_torch_this_was_built_with():
    lines = [ln.strip() for ln in (PACKAGE / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln and not ln.startswith("#")] == [
        f"torch=={torch.__version__.split('+')[0]}",
        "numpy",
    ]


@pytest.mark.slow
def test_default_training_writes_a_valid_artifact(default_run):
    out, printed, stderr = default_run
    meta = json.loads((out / "metadata.json").read_text())
    assert printed == meta
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.pt"]
    assert meta["format"] == artifact.FORMAT and meta["weights"] == "model.pt"
    assert meta["sha256"] == artifact.sha256_file(out / "model.pt")
    artifact.read_artifact(out, expected_sha256=meta["sha256"])  # what the server reads
    assert meta["test_accuracy"] >= 0.9, meta
    assert 0 < meta["test_loss"] < 1
    assert (meta["epochs"], meta["seed"], meta["device"]) == (5, 1, "cpu")
    assert (meta["train_examples"], meta["test_examples"]) == (data.TRAIN_ROWS, data.TEST_ROWS)
    assert meta["hyperparameters"]["batch_size"] == 256 and meta["hyperparameters"]["lr"] == 0.005
    assert meta["training_hash"] == "0123456789abcdef"
    assert meta["torch_version"] == torch.__version__
    assert meta["created"].endswith("Z") and meta["train_seconds"] > 0
    epochs = [ln for ln in stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/5", "2/5", "3/5", "4/5", "5/5"]


@pytest.mark.slow
def test_same_flags_same_weights_another_seed_other_weights(default_run, seed2_run, tmp_path):
    _, first, _ = default_run
    _, again, _ = trained(tmp_path / "again", seed=1)
    _, other, _ = seed2_run
    assert again["sha256"] == first["sha256"]
    assert other["sha256"] != first["sha256"]
    assert other["test_accuracy"] >= 0.9, other


@pytest.mark.slow
@pytest.mark.parametrize("run", ["default_run", "seed2_run"])
def test_the_class_answers_every_example(run, contract, request):
    out, _, _ = request.getfixturevalue(run)
    model = TabularModel()
    model.load(out)
    labels = contract.output.labels
    rows = []
    for example in contract.labelled_examples:
        row = np.asarray(json.loads(example.input.read_text()), dtype=np.float32).reshape(-1, len(data.FEATURES))
        probabilities = model.predict({"features": row})
        assert probabilities.dtype == np.float32 and probabilities.shape == (1, len(labels))
        assert labels[int(probabilities.argmax())] == example.expect, (example.input.name, probabilities)
        assert probabilities.max() > 0.8, (example.input.name, probabilities)  # a clear margin, not a coin toss
        rows.append(row)
    batch = model.predict({"features": np.concatenate(rows)})
    assert batch.shape == (len(rows), len(labels))
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-5)
    assert [labels[i] for i in batch.argmax(axis=1)] == [e.expect for e in contract.labelled_examples]


def test_the_bad_example_does_not_fit_the_declared_shape(contract):
    """The server answers 400 to what does not hold 8 numbers per item: the bad example must not."""
    (features,) = contract.inputs
    for example in contract.examples:
        numbers = np.asarray(json.loads(example.input.read_text()), dtype=np.float32)
        assert (numbers.size % features.shape[1] != 0) == (example.status == 400), example.input.name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "folder with files"])
def test_a_bad_out_is_one_line_and_exit_2(kind, tmp_path):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("not an artifact")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    p = run_train("--out", str(out), "--no-progress")
    assert p.returncode == 2
    assert p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("python -m tabular.train: error: --out ") and str(out) in p.stderr
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()) == before  # untouched


def test_a_bad_flag_is_one_line_and_exit_2(tmp_path):
    p = run_train("--out", str(tmp_path / "out"), "--epochs", "0")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["python -m tabular.train: error: argument --epochs: 0 must be ≥ 1 (see --help)"]
    assert not (tmp_path / "out").exists()
