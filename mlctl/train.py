"""`mlctl train`: run the training the spec describes, unless its artifact already exists.

The local runner starts the same entrypoint the training image runs (the model contract's
`training.command`, its `python` being this Python) as a subprocess in the model package's parent
folder: its progress bar goes straight to the terminal, its one JSON line on stdout is the
artifact's metadata. The Kubernetes runner lives in mlctl/targets/kubernetes/train.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlctl import artifacts
from mlctl.artifacts import TrainResult
from mlctl.errors import MlctlError, UsageError
from mlctl.render import hyperparameter_args
from mlctl.spec import LocalRunner, Spec
from mlctl.specload import load_contract


def data_args(spec: Spec) -> list[str]:
    """The data flags of the training command (none when the spec names no data)."""
    data = spec.data
    if data is None:
        return []
    return [
        "--data-dir", str(data.dir), *(["--download"] if data.download else []),
        *[a for m in data.mirrors for a in ("--mirror", m)],
    ]  # fmt: skip


def local_argv(spec: Spec, out: Path, digest: str, progress: bool = True) -> list[str]:
    """The exact command the local runner runs (in the model package's parent folder)."""
    training = spec.training
    runner = training.runner
    assert isinstance(runner, LocalRunner)
    program, *rest = load_contract(spec.model).training.command
    return [
        sys.executable if program == "python" else program, *rest,
        *data_args(spec),
        *hyperparameter_args(training),
        *(["--threads", str(runner.threads)] if runner.threads else []),
        "--training-hash", digest, "--out", str(out),
        *([] if progress else ["--no-progress"]),
    ]  # fmt: skip


def train(
    spec: Spec, force: bool = False, progress: bool = True, on_line: Callable[[str], None] | None = None
) -> TrainResult:
    """Train if needed (or when forced) and return the artifact for the spec's training hash; a
    spec that brings its own weights gets them (checked, copied once) instead.
    The local runner's progress goes straight to the terminal; the Kubernetes runner passes the
    Job's log lines to `on_line`."""
    if spec.weights is not None:  # brought, not trained, whatever the runner
        started = time.monotonic()
        artifact, copied = artifacts.import_weights(spec)
        digest = artifacts.training_hash(spec)
        return TrainResult(artifact, copied, time.monotonic() - started, digest, imported=True)
    if spec.training.runner.kind == "kubernetes":
        from mlctl.targets.kubernetes import train as train_k8s

        return train_k8s.train(spec, force=force, on_line=on_line if progress else None)
    digest = artifacts.training_hash(spec)
    out = artifacts.artifact_dir(spec, digest)
    existing = artifacts.read_local(out)
    if existing is not None and not force:
        return TrainResult(existing, trained=False, seconds=0.0, training_hash=digest)
    if importlib.util.find_spec("torch") is None:
        raise UsageError(
            f"torch is not installed in {sys.prefix}, so this machine cannot train",
            hint="run scripts/setup.sh (or pip install -c requirements/constraints.txt 'mlctl[train]')",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # stderr is inherited: the trainer's progress bar and its own error line reach the user as is.
    argv = local_argv(spec, out, digest, progress)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, cwd=spec.model.parent)
    seconds = time.monotonic() - started
    if proc.returncode:
        cls = UsageError if proc.returncode == 2 else MlctlError
        raise cls(f"training failed (exit {proc.returncode}); its error is above", hint=None)
    try:
        json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise MlctlError("training finished but printed no metadata line") from exc
    artifact = artifacts.read_local(out)
    if artifact is None:
        raise MlctlError(f"training finished but left no artifact in {out}")
    return TrainResult(artifact, trained=True, seconds=seconds, training_hash=digest)
