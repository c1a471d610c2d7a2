"""The Seldon Core v1 model class over any package: `seldon-core-microservice runtime.seldon.Model`.

The wrapper builds this object once in the parent process, forks its gunicorn workers, then calls
`load()` in each worker. So `__init__` only reads settings and the contract and imports the
class's module (its libraries' pages are then shared by the workers), and the package's model
(and torch's thread pools) come to life in `load()`: created before the fork, the first
prediction in a worker deadlocks inside Conv2d.

Input, as the contract (model.yaml in MODEL_PACKAGE) declares it: a multipart `binData` file is
the image input (decoded and bounded by `runtime.decode`); a JSON `ndarray`/`tensor` is the first
tensor input: one item or a batch of up to MODEL_MAX_BATCH (any layout with the item's element
count). Output: the (N, labels) score rows, which the wrapper answers as the tutorial's
`{"data": {"names": ["t:0", …], "tensor": {"shape": [N, labels], "values": […]}}, "meta": …}`;
the labels themselves are in /metadata and in each answer's tags.

Settings: the environment only, read through `runtime.settings.ServingSettings` (names,
defaults and allowed values are written there once). What they mean here:
- `MODEL_URI` (default /mnt/models): folder with metadata.json and the weights.
- `MODEL_SHA256`: when set, the only weights this server loads; other weights (a stale or
  swapped model at MODEL_URI) stop every worker at start, with both digests in the log.
- `MODEL_PACKAGE`: the package folder (model.yaml and the model's code; the images set it).
- `TORCH_THREADS` (default 1): intra-op threads per worker, for a model that uses torch.
- `MODEL_MAX_IMAGE_BYTES` / `MODEL_MAX_IMAGE_PIXELS` / `MODEL_MAX_BATCH`: the request bounds,
  by default the contract's; the request body may be 64 KiB more than the image bytes.
- `MODEL_METRICS_FLUSH_S` (0.5): custom metrics are summed in the worker and handed to the
  wrapper with the first response after this many seconds (0: every response), which keeps
  the data the wrapper pickles through its multiprocessing Manager on each request small.
- `MODEL_SKIP_EMPTY_METRIC_UPDATES` (1): 0 keeps the wrapper's per-request metrics-store round
  trip even when there is nothing to record (see `runtime.wrapper_fixes.skip_empty_metric_updates`).

gRPC (`GRPC_WORKERS` ≥ 1, the wrapper's own server on the port the operator declares, 9500)
takes the same `binData` or tensor input; bad input is answered with INVALID_ARGUMENT and the
same message as the REST 400 (see `runtime.wrapper_fixes.grpc_status_for_bad_input`).

The model itself (verifying, loading, the answer's checks, the probe, the metadata facts) is
`runtime.served.ServedModel`, shared with the KServe runtime (runtime/kserve_server.py); this
class adapts it to the wrapper's hooks and errors.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonResponse

from runtime.decode import InputError, decode_image, to_tensor
from runtime.served import BadAnswer, ServedModel, UnhealthyModel, column_names, import_class
from runtime.settings import REQUEST_OVERHEAD_BYTES, ServingSettings
from runtime.wrapper_fixes import (
    grpc_status_for_bad_input,
    request_guard,
    skip_empty_metric_updates,
)


class Model:
    """The package's model behind the Seldon Core v1 Python wrapper."""

    def __init__(self) -> None:
        # Settings come from the environment only (runtime/settings.py); the wrapper would pass
        # graph `parameters` as keyword arguments, which this class does not take.
        settings = ServingSettings.from_env()
        self.settings = settings
        self.model = ServedModel(settings)  # loaded in load(), in each worker
        self.contract = self.model.contract
        # The class's module is imported here, in the parent, before gunicorn forks: the workers
        # then share its libraries' pages (torch's, for a torch model) instead of each loading
        # its own. Importing creates no torch state; load() still runs in each worker.
        import_class(self.contract.cls, self.model.package)
        self.max_image_bytes = settings.max_image_bytes
        self.max_image_pixels = settings.max_image_pixels
        self.max_batch = settings.max_batch
        self.metrics_flush_s = settings.metrics_flush_s
        self._metrics_lock = threading.Lock()
        self._pending_counts = [0] * len(self.contract.labels)
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
        """Answer one item, or a batch of them.

        Parameters
        ----------
        X : bytes or array-like
            Image bytes from a multipart `binData` file (the contract's image input), or numbers
            from a JSON `ndarray`/`tensor` (its first tensor input): one item, or N ≤
            MODEL_MAX_BATCH of them.
        features_names : list of str, optional
            Ignored.

        Returns
        -------
        SeldonResponse
            `.data` is the (N, labels) numpy array of scores; `.tags` carries
            `predicted_class` and `predicted_label` (the first item's) and `predicted_classes`
            (every item's index); `.metrics` the custom metrics due for hand-over.
        """
        self._require_loaded()
        start = time.perf_counter()
        try:
            inputs = self._inputs(X)
        except InputError as e:
            raise SeldonMicroserviceException(e.message, status_code=e.status, reason=e.reason) from None
        try:
            rows = self.model.predict(inputs)
        except BadAnswer as e:
            raise SeldonMicroserviceException(str(e), status_code=500, reason="MICROSERVICE_INTERNAL_ERROR") from None
        predicted = rows.argmax(axis=1).tolist()
        metrics = self._record(predicted, (time.perf_counter() - start) * 1000.0)
        tags = {
            "predicted_class": predicted[0],
            "predicted_label": self.contract.labels[predicted[0]],
            "predicted_classes": predicted,
        }
        return SeldonResponse(rows, tags=tags, metrics=metrics)

    def _inputs(self, X: Any) -> dict[str, Any]:
        """The wrapper's X as the contract's input: bytes are the image, numbers the tensor."""
        image, tensor = self.contract.image_input, self.contract.tensor_input
        if isinstance(X, (bytes, bytearray, memoryview)):
            if image is None:
                raise InputError("this model takes no image: send its numbers as JSON data.ndarray")
            pixels = decode_image(
                bytes(X),
                max_bytes=self.max_image_bytes,
                max_pixels=self.max_image_pixels,
                mode=image.mode,
                min_side=image.min_decode_side,
            )
            return {image.name: [pixels]}
        if isinstance(X, str):
            raise InputError(
                "strData is not accepted: post "
                + ("an image as a multipart file field named binData, or " if image else "")
                + ("numbers as JSON data.ndarray" if tensor else "")
            )
        if tensor is None:
            raise InputError("this model takes an image: post it as a multipart file field named binData")
        return {tensor.name: to_tensor(X, tensor, self.max_batch)}

    # -- optional wrapper hooks --------------------------------------------------------------

    def tags(self) -> dict[str, Any]:
        """Static meta.tags on every response: the weights' identity and the model's facts. The
        predicted class is a per-request tag that predict() returns itself (thread-safe under
        gthread workers)."""
        return {"model_sha256": self.sha256 or "", "model_version": self.version, **self.model.facts}

    # No metrics() hook on purpose: the wrapper calls it after every request and then updates
    # its multiprocessing-Manager store (several IPC round trips) even for an empty list, which
    # costs more than the inference (bench/README.md). predict() hands its metrics over
    # as SeldonResponse runtime metrics instead, batched (see `_record`).

    def health_status(self) -> dict[str, Any]:
        """A tiny real prediction (a blank item) behind /health/status, usable as a probe."""
        self._require_loaded()
        try:
            return self.model.health()
        except UnhealthyModel as e:
            raise SeldonMicroserviceException(str(e), status_code=500, reason="MICROSERVICE_INTERNAL_ERROR") from None

    def init_metadata(self) -> dict[str, Any]:
        """What /metadata answers. Runs in the parent before the fork, so no model code here."""
        described = self.model.describe()
        inputs: list[dict[str, Any]] = []
        if self.contract.image_input is not None:
            inputs.append({"messagetype": "binData"})
        tensor = self.contract.tensor_input
        if tensor is not None:  # -1: a batch of up to MODEL_MAX_BATCH items
            inputs.append({"messagetype": "ndarray", "schema": {"shape": list(tensor.item_shape)}})
            inputs.append({"messagetype": "ndarray", "schema": {"shape": list(tensor.shape)}})
        names = column_names(self.contract.labels)
        return {
            "name": self.model.package.name,
            "versions": described["versions"],
            "platform": "pytorch",
            "inputs": inputs,
            "outputs": [{"messagetype": "tensor", "schema": {"names": names, "shape": [-1, len(names)]}}],
            "custom": described["custom"],
        }

    # -- helpers -----------------------------------------------------------------------------

    @property
    def sha256(self) -> str | None:
        return self.model.sha256

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

        Custom metrics: COUNTER `model_predictions_total{label}` and COUNTER
        `model_predict_ms_total` (decode + inference milliseconds; divide by the prediction count
        for the mean). No TIMER: the wrapper stores a histogram as 51 numpy floats that it pickles
        through its Manager on every later request, which costs every request.
        """
        now = time.monotonic()
        with self._metrics_lock:
            for index in predicted:
                self._pending_counts[index] += 1
            self._pending_ms += ms
            if now - self._last_flush < self.metrics_flush_s:
                return []
            counts, self._pending_counts = self._pending_counts, [0] * len(self.contract.labels)
            total_ms, self._pending_ms = self._pending_ms, 0.0
            self._last_flush = now
        labels = self.contract.labels
        out: list[dict[str, Any]] = [
            {"type": "COUNTER", "key": "model_predictions_total", "value": n, "tags": {"label": labels[i]}}
            for i, n in enumerate(counts)
            if n
        ]
        out.append({"type": "COUNTER", "key": "model_predict_ms_total", "value": total_ms})
        return out
