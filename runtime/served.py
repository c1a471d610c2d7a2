"""The served model, whichever engine serves it: verify, load, predict, probe, describe.

`runtime/seldon.py` (Seldon Core v1) and `runtime/kserve_server.py` (KServe) are thin adapters
over `ServedModel`: they turn their protocol's request into the arrays the contract declares
(`runtime.decode` does the decoding for both) and this class's answer and errors into their
protocol's. The package's own class (the contract's `class`, a plain class with `load(folder)`
and `predict(inputs)`) is imported and called here, and nowhere else.

What the runtime guarantees the class:
- `load(folder)` is called once per serving process, after the fork or spawn, with a folder whose
  weights match metadata.json's sha256 (and MODEL_SHA256 when the deployment pins one). The
  folder is handed over as a path pinned to the directory that was verified
  (/proc/self/fd/N), so an artifact swapped in at MODEL_URI meanwhile cannot slip in.
- `predict(inputs)` gets `{name: value}` for the one input the request carried: a list of
  decoded images (uint8 arrays) or an (N, …) array of a declared datatype, N ≤ maxBatch, every
  bound already checked. Its answer must be N rows of one score per label: anything else is a
  500 naming what came back, never a wrong answer.
- An optional `describe()` returns string facts (e.g. the arithmetic it chose) that the
  metadata, tags and health answers carry.

Process rule (both engines fork or spawn workers): build this object anywhere, call `load()` in
the process that serves. Loaded state never crosses a process boundary: torch created before a
fork deadlocks the child's first convolution (NOTES.md), so a pickled ServedModel carries its
settings only and arrives unloaded. Imports neither torch, seldon_core nor kserve.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime import contract as contracts
from runtime.artifact import METADATA, ArtifactError, read_artifact
from runtime.settings import ServingSettings, package_folder

log = logging.getLogger(__name__)

METADATA_KEYS = ("format", "sha256", "test_accuracy", "training_hash", "created")
"""metadata.json fields every engine reports as they are."""


class ModelNotLoaded(RuntimeError):
    """`predict` or `health` before `load()` (or in a process that did not load)."""


class UnhealthyModel(RuntimeError):
    """The health probe's prediction came out wrong (non-finite scores)."""


class BadAnswer(RuntimeError):
    """The model's `predict` answered something other than one row of scores per item."""


def column_names(labels: tuple[str, ...]) -> list[str]:
    """The answer's columns as Seldon names a 2-D answer without class_names(): `t:0` … (the
    tutorial's), whatever the labels are; the labels themselves travel in metadata."""
    return [f"t:{i}" for i in range(len(labels))]


def import_class(reference: str, package: Path) -> type:
    """`module:Class`, imported with the package's parent folder on sys.path."""
    parent = str(package.resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    module_name, _, class_name = reference.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


class ServedModel:
    """One package's model as one server process serves it."""

    def __init__(self, settings: ServingSettings, package: Path | None = None) -> None:
        self.settings = settings
        self.package = package or package_folder()
        self.contract = contracts.read(self.package)
        self.model_uri = settings.model_uri
        self.expected_sha256 = settings.model_sha256 or None
        self.metadata: dict[str, Any] = {}
        self.sha256: str | None = None
        self.facts: dict[str, str] = {}
        self._model: Any = None

    # -- process boundaries ------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings travel: the receiving process loads its own weights and pools."""
        return {"settings": self.settings, "package": self.package}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["package"])  # type: ignore[misc]

    # -- lifecycle ---------------------------------------------------------------------------

    def verify(self) -> dict[str, Any]:
        """The artifact's metadata once its weights match their sha256 (and MODEL_SHA256), no
        model code run: what a parent that serves nothing itself checks."""
        try:
            _, metadata = read_artifact(self.model_uri, expected_sha256=self.expected_sha256)
        except ArtifactError as e:
            log.error("not serving %s: %s", self.model_uri, e)  # the worker never boots: never ready
            raise
        return metadata

    def load(self) -> None:
        """Verify the weights, then load them with the package's class; runs in each worker."""
        try:
            folder = os.open(self.model_uri, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            log.error("not serving %s: %s", self.model_uri, e.strerror)
            raise ArtifactError(f"{self.model_uri}: {e.strerror}") from None
        try:
            pinned = Path(f"/proc/self/fd/{folder}")
            try:
                _, metadata = read_artifact(pinned, expected_sha256=self.expected_sha256)
            except ArtifactError as e:
                log.error("not serving %s: %s", self.model_uri, str(e).replace(str(pinned), self.model_uri))
                raise
            cls = import_class(self.contract.cls, self.package)
            self._set_torch_threads()
            model = cls()
            model.load(pinned)
        finally:
            os.close(folder)
        self.metadata, self.sha256, self._model = metadata, metadata["sha256"], model
        self.facts = self._facts(model)
        self.health()  # one real prediction before the first request: shape and finiteness
        log.info(
            "loaded %s (sha256 %s%s) with %s in pid %d",
            self.model_uri,
            self.sha256,
            "".join(f", {k} {v}" for k, v in self.facts.items()),
            self.contract.cls,
            os.getpid(),
        )

    def _set_torch_threads(self) -> None:
        """TORCH_THREADS for a model whose module brought torch in (the runtime never imports it)."""
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.settings.torch_threads)

    @staticmethod
    def _facts(model: Any) -> dict[str, str]:
        describe = getattr(model, "describe", None)
        if not callable(describe):
            return {}
        return {str(k): str(v) for k, v in dict(describe()).items()}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    # -- the prediction ----------------------------------------------------------------------

    def predict(self, inputs: dict[str, Any]) -> np.ndarray:
        """The model's (N, labels) scores for one input's N items, checked."""
        model = self._require_model()
        ((name, value),) = inputs.items()
        n = len(value)
        rows = np.asarray(model.predict(inputs))
        expected = (n, len(self.contract.labels))
        if rows.shape != expected or rows.dtype.kind != "f":
            raise BadAnswer(
                f"{self.contract.cls}.predict answered {rows.dtype} {rows.shape} for {n} item(s) of "
                f"`{name}`; the contract asks for float scores shaped {expected}"
            )
        return rows

    def probe_input(self) -> dict[str, Any]:
        """A blank item of the contract's first tensor input (else a black image)."""
        spec = self.contract.tensor_input
        if spec is not None:
            from runtime.decode import DTYPES

            return {spec.name: np.zeros((1, *spec.item_shape), dtype=DTYPES[spec.datatypes[0]])}
        image = self.contract.image_input
        assert image is not None  # a contract has at least one input
        return {image.name: [np.zeros((8, 8) if image.mode == "L" else (8, 8, 3), dtype=np.uint8)]}

    def health(self) -> dict[str, Any]:
        """A tiny real prediction (a blank item): what a health probe answers."""
        row = self.predict(self.probe_input())
        if not np.isfinite(row).all():
            raise UnhealthyModel("health check: the model answered non-finite scores")
        return {"status": "ok", "model_sha256": self.sha256, **self.facts, "probe_class": int(row.argmax())}

    # -- what the model is -------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The weights' short name: the first 12 hex digits of their sha256."""
        return (self.sha256 or "")[:12]

    def describe(self) -> dict[str, Any]:
        """The facts a metadata endpoint reports, from model.yaml and metadata.json alone (no
        model code, so an engine's parent process can answer before any worker loaded):
        `versions` ([the short sha256], or [] when unreadable) and `custom` (strings)."""
        custom = {
            "model_uri": self.model_uri,
            "class": self.contract.cls,
            "labels": ",".join(self.contract.labels),
            "scores": self.contract.scores,
            "max_batch": str(self.settings.max_batch),
            **self.facts,
        }
        versions: list[str] = []
        try:
            metadata = json.loads((Path(self.model_uri) / METADATA).read_text())
        except (OSError, ValueError):
            metadata = {}
        if isinstance(metadata, dict):
            for key in METADATA_KEYS:
                if key in metadata:
                    custom[key] = str(metadata[key])
            if isinstance(metadata.get("sha256"), str):
                versions = [metadata["sha256"][:12]]
        return {"versions": versions, "custom": custom}

    def _require_model(self) -> Any:
        if self._model is None:
            raise ModelNotLoaded("the model is not loaded yet")
        return self._model
