"""The Seldon Core v1 model class: `seldon-core-microservice model.serving.MnistClassifier`.

The wrapper builds this object once in the parent process, forks its gunicorn workers, then calls
`load()` in each worker. So `__init__` only reads settings, and the weights (and torch's thread
pools) come to life in `load()`: created before the fork, the first prediction in a worker
deadlocks inside Conv2d.

Input: a multipart `binData` image (any common raster format, size or mode; see
`model.decode` for the decode steps and the inversion heuristic) or a JSON
`ndarray`/`tensor` of MNIST-oriented pixels: one image, or a batch of up to MNIST_MAX_BATCH
(N×784, N×28×28, N×1×28×28). Either becomes 28×28 uint8 grids and goes through
`model.preprocess.normalize`, the same function training uses. Output: the (N, 10)
log-probability rows, which the wrapper answers as the tutorial's
`{"data": {"names": ["t:0", …], "tensor": {"shape": [1, 10], "values": […]}}, "meta": …}`.

Settings: the environment only, read through `model.settings.ServingSettings` (names,
defaults and allowed values are written there once). What they mean here:
- `MODEL_URI` (default /mnt/models): folder with metadata.json and the weights.
- `MODEL_SHA256`: when set, the only weights this server loads; other weights (a stale or
  swapped model at MODEL_URI) stop every worker at start, with both digests in the log.
- `TORCH_THREADS` (default 1): intra-op threads per worker. One worker per core with one thread
  each serves this small network best; more threads only contend.
- `MNIST_PRECISION` (default int8): `int8` serves the network quantized with the activation
  ranges training recorded in metadata.json (model/quantize.py: faster, the same predictions on
  ≥ 99.8 % of the test set); `float32` serves model.pt as
  trained. An artifact without int8 ranges, or a torch without the x86 int8 engine, is served in
  float32 with a warning; the `precision` tag says which ran.
- `MNIST_MAX_IMAGE_BYTES` / `MNIST_MAX_IMAGE_PIXELS`: the largest accepted image (bytes; width ×
  height, checked from the header before decoding); the request body may be 64 KiB more.
- `MNIST_MAX_BATCH` (64): the most images one JSON request may carry; a larger batch is a 413.
- `MNIST_METRICS_FLUSH_S` (0.5): custom metrics are summed in the worker and handed to the
  wrapper with the first response after this many seconds (0: every response), which keeps
  the data the wrapper pickles through its multiprocessing Manager on each request small.
- `MNIST_SKIP_EMPTY_METRIC_UPDATES` (1): 0 keeps the wrapper's per-request metrics-store round
  trip even when there is nothing to record (see `model.wrapper_fixes.skip_empty_metric_updates`).

gRPC (`GRPC_WORKERS` ≥ 1, the wrapper's own server on the port the operator declares, 9500)
takes the same `binData` or tensor input; bad input is answered with INVALID_ARGUMENT and the
same message as the REST 400 (see `model.wrapper_fixes.grpc_status_for_bad_input`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonResponse

from model import quantize
from model.artifact import ArtifactError, read_artifact
from model.decode import (
    InputError,
    array_to_pixels,
    decode_image,
)
from model.net import Net
from model.preprocess import normalize
from model.settings import ServingSettings
from model.wrapper_fixes import (
    REQUEST_OVERHEAD_BYTES,
    grpc_status_for_bad_input,
    request_guard,
    skip_empty_metric_updates,
)

log = logging.getLogger(__name__)

CLASS_NAMES = [f"t:{i}" for i in range(10)]


class MnistClassifier:
    """The MNIST CNN behind the Seldon Core v1 Python wrapper."""

    def __init__(self) -> None:
        # Settings come from the environment only (model/settings.py); the wrapper would pass
        # graph `parameters` as keyword arguments, which this class does not take.
        settings = ServingSettings.from_env()
        self.settings = settings
        self.model_uri = settings.model_uri
        self.expected_sha256 = settings.model_sha256 or None
        self.requested_precision = settings.precision
        self.precision = settings.precision  # what load() ends up serving
        self.torch_threads = settings.torch_threads
        self.max_image_bytes = settings.max_image_bytes
        self.max_image_pixels = settings.max_image_pixels
        self.max_batch = settings.max_batch
        self.metrics_flush_s = settings.metrics_flush_s
        self.metadata: dict[str, Any] = {}
        self.sha256: str | None = None
        self._model: torch.nn.Module | None = None
        self._probe: torch.Tensor | None = None
        self._memory_format = torch.contiguous_format
        self._metrics_lock = threading.Lock()
        self._pending_counts = [0] * 10
        self._pending_ms = 0.0
        self._last_flush = 0.0
        # The wrapper registers this blueprint on its Flask app (hook: model_error_handler).
        self.model_error_handler = request_guard(self.max_image_bytes + REQUEST_OVERHEAD_BYTES)
        if settings.skip_empty_metric_updates:
            # Here, in the parent before gunicorn forks, so every worker inherits it.
            skip_empty_metric_updates()
        # The same for the gRPC server process (GRPC_WORKERS), which answers the operator's 9500.
        grpc_status_for_bad_input()

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
        self._model = net
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

    # -- the prediction ----------------------------------------------------------------------

    def predict(self, X: Any, features_names: Any = None, **kwargs: Any) -> SeldonResponse:
        """Classify one digit, or a batch of them.

        Parameters
        ----------
        X : bytes or array-like
            Image bytes from a multipart `binData` file, or MNIST-oriented pixels from a JSON
            `ndarray`/`tensor`: one image shaped (28, 28) or (784,), or N images shaped (N, 784),
            (N, 28, 28) or (N, 1, 28, 28) with N ≤ MNIST_MAX_BATCH, as floats in [0, 1] or
            numbers in 0..255.
        features_names : list of str, optional
            Ignored.

        Returns
        -------
        SeldonResponse
            `.data` is the (N, 10) numpy array of log-probabilities of the digits 0–9; `.tags`
            carries `predicted_class` (the first image's) and `predicted_classes` (every
            image's); `.metrics` the custom metrics due for hand-over.
        """
        model = self._require_model()
        start = time.perf_counter()
        try:
            if isinstance(X, (bytes, bytearray, memoryview)):
                pixels = decode_image(bytes(X), max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)
            elif isinstance(X, str):
                raise InputError(
                    "strData is not accepted: post the image as a multipart file field named "
                    "binData, or pixels as JSON data.ndarray"
                )
            else:
                pixels = array_to_pixels(X, self.max_batch)
        except InputError as e:
            raise SeldonMicroserviceException(e.message, status_code=e.status, reason=e.reason) from None
        with torch.inference_mode():
            rows = model(self._as_input(normalize(pixels))).numpy()
        predicted = rows.argmax(axis=1).tolist()
        metrics = self._record(predicted, (time.perf_counter() - start) * 1000.0)
        return SeldonResponse(
            rows, tags={"predicted_class": predicted[0], "predicted_classes": predicted}, metrics=metrics
        )

    # -- optional wrapper hooks --------------------------------------------------------------

    def tags(self) -> dict[str, Any]:
        """Static meta.tags on every response: the weights' identity. The predicted digit is a
        per-request tag that predict() returns itself (thread-safe under gthread workers)."""
        return {"model_sha256": self.sha256 or "", "model_version": self.version, "precision": self.precision}

    # No metrics() hook on purpose: the wrapper calls it after every request and then updates
    # its multiprocessing-Manager store (several IPC round trips) even for an empty list, which
    # costs more than the inference (bench/README.md). predict() hands its metrics over
    # as SeldonResponse runtime metrics instead, batched (see `_record`).

    def health_status(self) -> dict[str, Any]:
        """A tiny real prediction (a blank image) behind /health/status, usable as a probe."""
        model = self._require_model()
        with torch.inference_mode():
            row = model(self._probe).numpy()
        if not np.isfinite(row).all():
            raise SeldonMicroserviceException(
                "health check: the model answered non-finite scores",
                status_code=500,
                reason="MICROSERVICE_INTERNAL_ERROR",
            )
        return {
            "status": "ok",
            "model_sha256": self.sha256,
            "precision": self.precision,
            "probe_class": int(row.argmax()),
        }

    def init_metadata(self) -> dict[str, Any]:
        """What /metadata answers. Runs in the parent before the fork, so no torch work here."""
        custom = {
            "torch": torch.__version__,
            "model_uri": self.model_uri,
            "precision": self.requested_precision,
            "max_batch": str(self.max_batch),
        }
        versions: list[str] = []
        try:
            metadata = json.loads((Path(self.model_uri) / "metadata.json").read_text())
        except (OSError, ValueError):
            metadata = {}
        if isinstance(metadata, dict):
            for key in ("format", "sha256", "test_accuracy", "training_hash", "created"):
                if key in metadata:
                    custom[key] = str(metadata[key])
            int8 = metadata.get("int8")
            if isinstance(int8, dict) and "test_accuracy" in int8:
                custom["int8_test_accuracy"] = str(int8["test_accuracy"])
            if isinstance(metadata.get("sha256"), str):
                versions = [metadata["sha256"][:12]]
        return {
            "name": "mnist-classifier",
            "versions": versions,
            "platform": "pytorch",
            # -1: a batch of up to MNIST_MAX_BATCH images (model.decode names every shape taken).
            "inputs": [
                {"messagetype": "binData"},
                {"messagetype": "ndarray", "schema": {"shape": [28, 28]}},
                {"messagetype": "ndarray", "schema": {"shape": [-1, 784]}},
            ],
            "outputs": [{"messagetype": "tensor", "schema": {"names": CLASS_NAMES, "shape": [-1, 10]}}],
            "custom": custom,
        }

    # -- helpers -----------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return (self.sha256 or "")[:12]

    def _as_input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=self._memory_format)

    def _require_model(self) -> torch.nn.Module:
        if self._model is None:
            raise SeldonMicroserviceException(
                "the model is not loaded yet", status_code=503, reason="MICROSERVICE_NOT_READY"
            )
        return self._model

    def _record(self, predicted: list[int], ms: float) -> list[dict[str, Any]]:
        """Count this request's predictions; return the metrics due for hand-over (usually none).

        Custom metrics: COUNTER `mnist_predictions_total{digit}` and COUNTER
        `mnist_predict_ms_total` (decode + inference milliseconds; divide by the prediction count
        for the mean). No TIMER: the wrapper stores a histogram as 51 numpy floats that it pickles
        through its Manager on every later request, which costs every request.
        """
        now = time.monotonic()
        with self._metrics_lock:
            for digit in predicted:
                self._pending_counts[digit] += 1
            self._pending_ms += ms
            if now - self._last_flush < self.metrics_flush_s:
                return []
            counts, self._pending_counts = self._pending_counts, [0] * 10
            total_ms, self._pending_ms = self._pending_ms, 0.0
            self._last_flush = now
        out: list[dict[str, Any]] = [
            {"type": "COUNTER", "key": "mnist_predictions_total", "value": n, "tags": {"digit": str(d)}}
            for d, n in enumerate(counts)
            if n
        ]
        out.append({"type": "COUNTER", "key": "mnist_predict_ms_total", "value": total_ms})
        return out
