"""The MNIST CNN as the model contract's class: `load(folder)` and `predict(inputs)`.

The server runtime (runtime/, either engine) verifies the weights, decodes and bounds each
request, then calls this class; what is MNIST's stays here: the network, the int8-or-float32
choice, the traced graph, and the preprocessing that turns the runtime's arrays into normalised
28×28 grids (model/preprocess.py, shared with training).

Settings of this model (the environment): MODEL_PRECISION (default int8) serves the network
quantized with the activation ranges training recorded in metadata.json (model/quantize.py:
faster, the same predictions on ≥ 99.8 % of the test set); `float32` serves model.pt as trained.
An artifact without int8 ranges, or a torch without the x86 int8 engine, is served in float32
with a warning; `describe()` says which ran.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import quantize
from model.net import Net
from model.preprocess import image_to_grid, normalize, pixels_to_grid

log = logging.getLogger(__name__)

PRECISION_ENV = "MODEL_PRECISION"
PRECISIONS = ("int8", "float32")


class MnistModel:
    """The MNIST CNN as one server process serves it."""

    def __init__(self) -> None:
        requested = os.environ.get(PRECISION_ENV, "").strip().lower() or "int8"
        if requested not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={requested!r}: expected one of {', '.join(PRECISIONS)}")
        self.requested_precision = requested
        self.precision = requested  # what load() ends up serving
        self._net: torch.nn.Module | None = None
        self._memory_format = torch.contiguous_format

    def load(self, folder: Path) -> None:
        """The verified model.pt and metadata.json of `folder` → the traced network to serve."""
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        state = torch.load(folder / metadata.get("weights", "model.pt"), map_location="cpu", weights_only=True)
        net = Net()
        net.load_state_dict(state)
        net.eval()
        self.precision, int8 = self._int8_or_float(net, metadata)
        if int8 is not None:
            net = int8
            self._memory_format = torch.contiguous_format
        else:
            # Float32 in channels-last layout: faster than contiguous on the CPUs measured
            # (bench/README.md), same outputs to 1e-6.
            net = net.to(memory_format=torch.channels_last)
            self._memory_format = torch.channels_last
        probe = self._as_input(normalize(np.zeros((28, 28), dtype=np.uint8)))
        # A frozen TorchScript graph, traced here, after the fork. trace's own check_trace is
        # off (its comparison imports torch.distributed, a large share of each worker's cold start);
        # the traced graph is compared with the module below instead.
        with torch.no_grad(), quantize.quiet():
            eager = net(probe)
            net = torch.jit.freeze(torch.jit.trace(net, probe, check_trace=False))
        with torch.inference_mode():
            for _ in range(3):  # warm-up: the profiling runs of a frozen graph happen here
                out = net(probe)
        if not torch.allclose(out, eager, atol=1e-4):
            raise RuntimeError(f"{folder}: the traced network answers differently from the module")
        self._net = net

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

    # -- the prediction ----------------------------------------------------------------------

    def predict(self, inputs: dict[str, Any]) -> np.ndarray:
        """`image` (decoded grayscale images, any size) or `pixels` ((N, 28, 28) numbers in
        0..255) → the (N, 10) float32 log-probabilities of 0–9, through
        `model.preprocess.normalize`, the function training uses."""
        if self._net is None:
            raise RuntimeError("load() first")
        if "image" in inputs:
            grids = np.stack([image_to_grid(image) for image in inputs["image"]])
        else:
            grids = pixels_to_grid(inputs["pixels"])
        with torch.inference_mode():
            return self._net(self._as_input(normalize(grids))).numpy()

    def describe(self) -> dict[str, str]:
        """What the servers report beside the weights' digest: the arithmetic that runs."""
        return {"precision": self.precision, "torch": torch.__version__}

    def _as_input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=self._memory_format)
