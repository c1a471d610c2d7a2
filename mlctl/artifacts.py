"""Trained artifacts on local disk: the training hash, where an artifact lives, and reading one.

An artifact is a folder with `model.pt` (the state_dict) and `metadata.json`, written atomically
by `python -m model.train`. Its folder name carries the training hash, so an unchanged spec and
unchanged model code find the artifact they already trained and skip training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from mlctl.errors import MlctlError
from mlctl.spec import Spec, TrainingSpec

METADATA = "metadata.json"
WEIGHTS = "model.pt"


def hyperparameters(training: TrainingSpec) -> dict[str, object]:
    """The settings that change the trained weights (not where or how fast training runs)."""
    return {
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
        "label_smoothing": training.label_smoothing,
        "weight_decay": training.weight_decay,
        "seed": training.seed,
        "limit_train": training.limit_train,
        "limit_test": training.limit_test,
    }


def model_package_dir() -> Path:
    """The `model` package folder, found without importing it (it imports torch)."""
    found = importlib.util.find_spec("model")
    if found is None or not found.submodule_search_locations:
        raise MlctlError("cannot find the `model` package", hint="install mlctl from the project root (pip install -e .)")
    return Path(next(iter(found.submodule_search_locations)))


def training_code_sha256() -> dict[str, str]:
    """sha256 of every training source file. model/data.py carries the data checksums it enforces,
    so a change of data identity shows up here too."""
    root = model_package_dir()
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("*.py"))
        if not p.name.lstrip("_").startswith("serving")
    }


def training_hash(spec: Spec) -> str:
    payload = {"hyperparameters": hyperparameters(spec.training), "code": training_code_sha256()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def artifact_dir(spec: Spec, digest: str | None = None) -> Path:
    return spec.training.output / f"{spec.name}-{(digest or training_hash(spec))[:12]}"


@dataclass(frozen=True)
class Artifact:
    path: Path | str
    """A local folder, or the model store URI (a str) for a model trained on the cluster."""
    sha256: str
    test_accuracy: float
    metadata: dict

    @property
    def is_local(self) -> bool:
        return isinstance(self.path, Path)

    @property
    def weights(self) -> Path:
        return Path(self.path) / self.metadata.get("weights", WEIGHTS)

    @property
    def name(self) -> str:
        """The folder's name (`mnist-87ed90d314a2`), or the URI for a remote artifact."""
        return self.path.name if isinstance(self.path, Path) else self.path


def read_artifact(path: Path, verify: bool = True) -> Artifact | None:
    """The complete artifact at `path`, or None when there is none. A folder that exists but whose
    weights do not match their metadata is an error, not a silent retrain."""
    meta_file = path / METADATA
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        sha = meta["sha256"]
        accuracy = float(meta["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MlctlError(f"{meta_file}: unreadable artifact metadata ({exc})", hint="retrain with --force") from None
    weights = path / meta.get("weights", WEIGHTS)
    if verify:
        try:
            actual = hashlib.sha256(weights.read_bytes()).hexdigest()
        except OSError as exc:
            raise MlctlError(f"{weights}: {exc.strerror}", hint="retrain with --force") from None
        if actual != sha:
            raise MlctlError(
                f"{weights}: sha256 {actual[:12]}… does not match its metadata ({sha[:12]}…)",
                hint="the artifact was modified after training; retrain with --force",
            )
    return Artifact(path=path, sha256=sha, test_accuracy=accuracy, metadata=meta)


def metadata_from_log(text: str) -> dict | None:
    """The last line of the log that is a JSON object with a sha256: the trainer's metadata."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                meta = json.loads(line)
            except ValueError:
                continue
            if isinstance(meta, dict) and "sha256" in meta:
                return meta
    return None
