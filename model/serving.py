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

The network itself (loading, the checks, int8 or float32, the probe, the metadata facts) is
`model.inference.MnistModel`, shared with the KServe runtime (model/kserve_server.py); this class
adapts it to the wrapper's hooks and errors.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonResponse

from model.decode import (
    InputError,
    array_to_pixels,
    decode_image,
)
from model.inference import OUTPUT_NAMES, MnistModel, UnhealthyModel
from model.settings import REQUEST_OVERHEAD_BYTES, ServingSettings
from model.wrapper_fixes import (
    grpc_status_for_bad_input,
    request_guard,
    skip_empty_metric_updates,
)

CLASS_NAMES = list(OUTPUT_NAMES)


class MnistClassifier:
    """The MNIST CNN behind the Seldon Core v1 Python wrapper."""

    def __init__(self) -> None:
        # Settings come from the environment only (model/settings.py); the wrapper would pass
        # graph `parameters` as keyword arguments, which this class does not take.
        settings = ServingSettings.from_env()
        self.settings = settings
        self.model = MnistModel(settings)  # loaded in load(), in each worker
        self.max_image_bytes = settings.max_image_bytes
        self.max_image_pixels = settings.max_image_pixels
        self.max_batch = settings.max_batch
        self.metrics_flush_s = settings.metrics_flush_s
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
        self.model.load()

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
        self._require_loaded()
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
        rows = self.model.predict(pixels)
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
        self._require_loaded()
        try:
            return self.model.health()
        except UnhealthyModel as e:
            raise SeldonMicroserviceException(str(e), status_code=500, reason="MICROSERVICE_INTERNAL_ERROR") from None

    def init_metadata(self) -> dict[str, Any]:
        """What /metadata answers. Runs in the parent before the fork, so no torch work here."""
        described = self.model.describe()
        return {
            "name": "mnist-classifier",
            "versions": described["versions"],
            "platform": "pytorch",
            # -1: a batch of up to MNIST_MAX_BATCH images (model.decode names every shape taken).
            "inputs": [
                {"messagetype": "binData"},
                {"messagetype": "ndarray", "schema": {"shape": [28, 28]}},
                {"messagetype": "ndarray", "schema": {"shape": [-1, 784]}},
            ],
            "outputs": [{"messagetype": "tensor", "schema": {"names": CLASS_NAMES, "shape": [-1, 10]}}],
            "custom": described["custom"],
        }

    # -- helpers -----------------------------------------------------------------------------

    @property
    def sha256(self) -> str | None:
        return self.model.sha256

    @property
    def precision(self) -> str:
        return self.model.precision

    @property
    def version(self) -> str:
        return self.model.version

    def _require_loaded(self) -> None:
        if not self.model.loaded:
            raise SeldonMicroserviceException(
                "the model is not loaded yet", status_code=503, reason="MICROSERVICE_NOT_READY"
            )

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
