"""Trained models as mlctl sees them: the training hash, a model's name and addresses, and the two
kinds of artifact, a folder on this machine (`LocalArtifact`) and a folder in the model store
(`StoredArtifact`). The format itself (files, version, digest check) is runtime/artifact.py's.

A model is named `<name>-<hash12>` after its training hash, here (`training.output/<that>`) and in
the store (`modelStore.uri/<that>`): an unchanged spec and unchanged model code find the model they
already trained, and every release names exactly the weights it serves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlctl.errors import MlctlError, UsageError
from mlctl.spec import Spec, TrainingSpec
from runtime import artifact as artifact_format


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


def training_code_sha256(package: Path) -> dict[str, str]:
    """sha256 of every training source file of the model package (its top-level modules but the
    serving ones). A package whose code checks its data's checksums turns a change of data into
    a change here too."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(package.glob("*.py"))
        if not p.name.lstrip("_").startswith("serving")
    }


def training_hash(spec: Spec) -> str:
    """What names a model: its training settings and code, or for weights a spec brings, the
    weights' own digest."""
    if spec.weights is not None:
        payload: dict[str, object] = {"weights": spec.weights.sha256}
    else:
        payload = {"hyperparameters": hyperparameters(spec.training), "code": training_code_sha256(spec.model)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_name(spec: Spec, digest: str | None = None) -> str:
    """`NAME-3e627a2e8fc6`: the spec's name and the training hash's first 12 hex digits."""
    return f"{spec.name}-{(digest or training_hash(spec))[:12]}"


def artifact_dir(spec: Spec, digest: str | None = None) -> Path:
    """The model's folder on this machine."""
    return spec.training.output / model_name(spec, digest)


def store_uri(spec: Spec, digest: str | None = None) -> str:
    """The model's folder in the model store."""
    return spec.model_store.join(model_name(spec, digest))


@dataclass(frozen=True)
class _Model:
    metadata: dict

    @property
    def sha256(self) -> str:
        return str(self.metadata.get("sha256", ""))

    @property
    def test_accuracy(self) -> float:
        return float(self.metadata.get("test_accuracy", 0.0))


@dataclass(frozen=True)
class LocalArtifact(_Model):
    """A model folder on this machine."""

    path: Path = Path()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def files(self) -> list[Path]:
        """The weights, then the metadata (the order an upload keeps, so a complete metadata file
        means complete weights)."""
        return [self.path / self.metadata.get("weights", artifact_format.WEIGHTS), self.path / artifact_format.METADATA]


@dataclass(frozen=True)
class StoredArtifact(_Model):
    """A model folder in the model store (written there by the cluster's training Job)."""

    uri: str = ""

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def location(self) -> str:
        return self.uri


Artifact = LocalArtifact | StoredArtifact


def sha256_of(path: Path) -> str:
    return artifact_format.sha256_file(path)


def planned(spec: Spec) -> LocalArtifact:
    """The artifact a dry run plans with before the first training: its place, no digest yet (an
    empty model.sha256, which the values admit; the plan's text says "after training")."""
    return LocalArtifact({"sha256": "", "test_accuracy": 0.0}, artifact_dir(spec))


def read_local(path: Path, verify: bool = True) -> LocalArtifact | None:
    """The complete artifact at `path`, or None when there is none. A folder that exists but whose
    weights do not match their metadata is an error, not a silent retrain."""
    if not (path / artifact_format.METADATA).is_file():
        return None
    try:
        if verify:
            _, meta = artifact_format.read_artifact(path, attempts=1)
        else:
            meta = artifact_format.read_metadata(path)
        float(meta["test_accuracy"])
    except artifact_format.ArtifactError as exc:
        raise MlctlError(str(exc), hint="the artifact was modified after training; retrain with --force") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise MlctlError(
            f"{path / artifact_format.METADATA}: unreadable artifact metadata ({exc})", hint="retrain with --force"
        ) from exc
    return LocalArtifact(meta, path)


def import_weights(spec: Spec) -> tuple[LocalArtifact, bool]:
    """The spec's own weights (`weights.dir`) as this spec's model folder, copied there once after
    checking them: (the artifact, whether it was copied now). A folder that holds other weights
    than `weights.sha256` names is refused."""
    assert spec.weights is not None
    out = artifact_dir(spec)
    existing = read_local(out)
    if existing is not None and existing.sha256 == spec.weights.sha256:
        return existing, False
    source = spec.weights.dir
    found = read_local(source)  # model.pt checked against its metadata
    if found is None:
        raise UsageError(
            f"weights.dir: {source} holds no model folder (model.pt and {artifact_format.METADATA})",
            hint="point weights.dir at a folder `mlctl train` wrote, e.g. .mlctl/models/<name>-<hash>",
        )
    if found.sha256 != spec.weights.sha256:
        raise MlctlError(
            f"weights.dir: {source} holds weights with sha256 {found.sha256}, not the spec's "
            f"weights.sha256 {spec.weights.sha256}",
            hint="the folder changed since the digest was taken, or the digest is another model's",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        for file in found.files:
            shutil.copy2(file, staging / file.name)
        copied = read_local(staging)
        if copied is None or copied.sha256 != spec.weights.sha256:
            raise MlctlError(f"the copy of {source} in {staging} does not hold the weights it should")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    imported = read_local(out)
    assert imported is not None
    return imported, True


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


@dataclass(frozen=True)
class TrainResult:
    artifact: Artifact
    trained: bool  # False when an artifact for this training hash already existed
    seconds: float
    training_hash: str
    imported: bool = False  # the spec's own weights (weights.dir), copied rather than trained

    def as_dict(self) -> dict:
        meta = self.artifact.metadata
        return {
            "trained": self.trained,
            "imported": self.imported,
            "artifact": self.artifact.location,
            "trainingHash": self.training_hash,
            "sha256": self.artifact.sha256,
            "testAccuracy": self.artifact.test_accuracy,
            "testLoss": meta.get("test_loss"),
            "epochs": meta.get("epochs"),
            "trainSeconds": meta.get("train_seconds"),
            "seconds": round(self.seconds, 2),
        }
