"""The served network, whichever engine serves it: load, predict, probe, describe.

`model/serving.py` (Seldon Core v1) and `model/kserve_server.py` (KServe) are thin adapters
over `MnistModel`: they turn their protocol's request into 28×28 uint8 grids (`model.decode`
does the decoding for both) and this class's answer and errors into their protocol's. So the
weights checks, the int8-or-float32 choice, the traced graph and the health probe exist once.
Imports neither seldon_core nor kserve.

Process rule (both engines fork or spawn workers): build this object anywhere, but call `load()`
in the process that serves. Loaded torch state never crosses a process boundary: created before
a fork, the first prediction in the child deadlocks inside Conv2d (NOTES.md), so a pickled
MnistModel carries its settings only and arrives unloaded.

Settings (model.settings.ServingSettings; what they mean is written there and in
model/serving.py's docstring): MODEL_URI, MODEL_SHA256, MNIST_PRECISION, TORCH_THREADS and
MNIST_MAX_BATCH are read here; the byte, pixel and batch limits of the decoders are the
adapters' business.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import quantize
from model.artifact import ArtifactError, read_artifact
from model.net import Net
from model.preprocess import normalize
from model.settings import ServingSettings

log = logging.getLogger(__name__)

OUTPUT_NAMES = tuple(f"t:{i}" for i in range(10))
"""The output columns as Seldon names a 2-D answer without class_names(): `t:0` … `t:9`."""
METADATA_KEYS = ("format", "sha256", "test_accuracy", "training_hash", "created")
"""metadata.json fields every engine reports as they are."""


class ModelNotLoaded(RuntimeError):
    """`predict` or `health` before `load()` (or in a process that did not load)."""


class UnhealthyModel(RuntimeError):
    """The health probe's prediction came out wrong (non-finite scores)."""


class MnistModel:
    """The MNIST CNN as one server process serves it."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.model_uri = settings.model_uri
        self.expected_sha256 = settings.model_sha256 or None
        self.requested_precision = settings.precision
        self.precision = settings.precision  # what load() ends up serving
        self.torch_threads = settings.torch_threads
        self.metadata: dict[str, Any] = {}
        self.sha256: str | None = None
        self._net: torch.nn.Module | None = None
        self._probe: torch.Tensor | None = None
        self._memory_format = torch.contiguous_format

    # -- process boundaries ------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings travel: the receiving process loads its own weights and pools."""
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Read metadata.json, verify the weights' sha256, load them; runs in each worker."""
        torch.set_num_threads(self.torch_threads)
        try:  # format, sha256, and the digest the deployment names (MODEL_SHA256)
            weights, metadata = read_artifact(self.model_uri, expected_sha256=self.expected_sha256)
        except ArtifactError as e:
            log.error("not serving %s: %s", self.model_uri, e)  # the worker never boots: never ready
            raise
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        net = Net()
        net.load_state_dict(state)
        net.eval()
        self.metadata = metadata
        self.sha256 = metadata["sha256"]
        self.precision, int8 = self._int8_or_float(net, metadata)
        if int8 is not None:
            net = int8
            self._memory_format = torch.contiguous_format
        else:
            # Float32 in channels-last layout: faster than contiguous on the CPUs measured
            # (bench/README.md), same outputs to 1e-6.
            net = net.to(memory_format=torch.channels_last)
            self._memory_format = torch.channels_last
        self._probe = self._as_input(normalize(np.zeros((28, 28), dtype=np.uint8)))
        # A frozen TorchScript graph, traced here, after the fork. trace's own check_trace is
        # off (its comparison imports torch.distributed, a large share of each worker's cold start);
        # the traced graph is compared with the module below instead.
        with torch.no_grad(), quantize.quiet():
            eager = net(self._probe)
            net = torch.jit.freeze(torch.jit.trace(net, self._probe, check_trace=False))
        with torch.inference_mode():
            for _ in range(3):  # warm-up: the profiling runs of a frozen graph happen here
                out = net(self._probe)
        if tuple(out.shape) != (1, 10):
            raise ArtifactError(f"{self.model_uri}: the network answers shape {tuple(out.shape)}, not (1, 10)")
        if not torch.allclose(out, eager, atol=1e-4):
            raise ArtifactError(f"{self.model_uri}: the traced network answers differently from the module")
        self._net = net
        log.info(
            "loaded %s (sha256 %s, %s) in pid %d with %d torch thread(s)",
            self.model_uri,
            self.sha256,
            self.precision,
            os.getpid(),
            self.torch_threads,
        )

    def _int8_or_float(self, net: torch.nn.Module, metadata: dict[str, Any]) -> tuple[str, torch.nn.Module | None]:
        """("int8", the int8 network) when asked for and possible, else ("float32", None)."""
        if self.requested_precision != "int8":
            return "float32", None
        recorded = metadata.get("int8")
        why = None
        if not quantize.available():
            why = "this torch build has no x86 int8 engine"
        elif not isinstance(recorded, dict) or "qparams" not in recorded:
            why = "the artifact records no int8 activation ranges (trained before int8 serving)"
        else:
            try:
                return "int8", quantize.build(net, recorded["qparams"])
            except quantize.QuantizationError as e:
                why = str(e)
        log.warning("serving float32, not int8: %s", why)
        return "float32", None

    @property
    def loaded(self) -> bool:
        return self._net is not None

    # -- the prediction ----------------------------------------------------------------------

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 MNIST grids → the (N, 10) float32 log-probabilities of 0–9, through
        `model.preprocess.normalize`, the function training uses."""
        net = self._require_net()
        with torch.inference_mode():
            return net(self._as_input(normalize(pixels))).numpy()

    def health(self) -> dict[str, Any]:
        """A tiny real prediction (a blank image): what a health probe answers."""
        net = self._require_net()
        with torch.inference_mode():
            row = net(self._probe).numpy()
        if not np.isfinite(row).all():
            raise UnhealthyModel("health check: the model answered non-finite scores")
        return {
            "status": "ok",
            "model_sha256": self.sha256,
            "precision": self.precision,
            "probe_class": int(row.argmax()),
        }

    # -- what the model is -------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The weights' short name: the first 12 hex digits of their sha256."""
        return (self.sha256 or "")[:12]

    def describe(self) -> dict[str, Any]:
        """The facts a metadata endpoint reports, from metadata.json alone (no torch work, so
        an engine's parent process can answer before any worker loaded): `versions` ([the
        short sha256], or [] when unreadable) and `custom` (strings: torch, model_uri, the
        requested precision, max_batch and the artifact's recorded facts)."""
        custom = {
            "torch": torch.__version__,
            "model_uri": self.model_uri,
            "precision": self.requested_precision,
            "max_batch": str(self.settings.max_batch),
        }
        versions: list[str] = []
        try:
            metadata = json.loads((Path(self.model_uri) / "metadata.json").read_text())
        except (OSError, ValueError):
            metadata = {}
        if isinstance(metadata, dict):
            for key in METADATA_KEYS:
                if key in metadata:
                    custom[key] = str(metadata[key])
            int8 = metadata.get("int8")
            if isinstance(int8, dict) and "test_accuracy" in int8:
                custom["int8_test_accuracy"] = str(int8["test_accuracy"])
            if isinstance(metadata.get("sha256"), str):
                versions = [metadata["sha256"][:12]]
        return {"versions": versions, "custom": custom}

    # -- helpers -----------------------------------------------------------------------------

    def _as_input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=self._memory_format)

    def _require_net(self) -> torch.nn.Module:
        if self._net is None:
            raise ModelNotLoaded("the model is not loaded yet")
        return self._net
