"""The KServe runtime: the same network behind KServe's ModelServer (V1 and Open Inference Protocol).

    python -m model.kserve_server --model_name mnist --http_port 8080 --grpc_port 8081 --workers 2

The flags are kserve's own (`kserve.model_server.parser`, extended here as KServe's custom
predictors do); the model's settings come from the environment exactly as for the Seldon server
(`model.settings.ServingSettings`: MODEL_URI, MODEL_SHA256, MNIST_PRECISION, TORCH_THREADS,
MNIST_MAX_IMAGE_BYTES, MNIST_MAX_IMAGE_PIXELS, MNIST_MAX_BATCH); a bad value stops the server
before anything loads, naming the variable. The network is `model.inference.MnistModel`, the
decoding `model.decode`, both shared with model/serving.py.

Processes. kserve 0.21 starts only with a ready model, so the parent checks the artifact first
(sha256, MODEL_SHA256); a bad one stops the server there, exit 1. With `--workers 1` the parent
serves HTTP (and gRPC) itself, so it loads the weights. With `--workers N > 1` kserve's
RESTServerMultiProcess starts N uvicorn workers with multiprocessing's *spawn* context (fresh
interpreters, not forks) that share the parent's listening socket, and hands each one the model
by pickling it. The pickled model carries its settings only (no torch state, and unpickling
imports no torch); each worker loads the weights and creates torch's thread pools itself, at its
app's startup, before its uvicorn accepts a connection (`load_pending_models`). The parent then
loads a copy of its own only for gRPC (`--enable_grpc`, on by default; the chart turns it off),
else it imports no torch at all (its PSS: about 95 MiB instead of 250). A worker that cannot load stops the
whole server (SIGUSR1 to the parent, which stops and exits 1) instead of being restarted by
kserve in a loop. (kserve's parent also kills a worker that has not answered its liveness ping
5 s after it was spawned; without torch, unpickling takes well under that on an idle machine,
and the ping thread runs while the weights load. On a starved CPU kserve may still kill and
respawn a worker or two before they all come up.)

Endpoints (kserve's routes; the request shapes are this module's):
- V1 `POST /v1/models/<name>:predict` `{"instances": [I, …]}`, each I an image `{"b64": …}` or
  `{"image": {"b64": …}}`, or one image's MNIST-oriented pixels (28×28 or 784 numbers, floats in
  [0, 1] or 0..255); answers `{"predictions": [[10 log-probabilities], …]}`.
- V2 `POST /v2/models/<name>/infer` with exactly one input: `image`, BYTES, shape [N] (base64
  strings in JSON; raw bytes with the binary tensor extension, Inference-Header-Content-Length),
  or `pixels`, UINT8 or FP32, shape [N, 28, 28] or [N, 784] (JSON or binary). Answers one FP32
  output `t`, shape [N, 10], parameters `{"names": "t:0,…,t:9"}` (Seldon's column names), with
  the response's `model_version` (sha256[:12]) and `parameters` `{"model_sha256", "precision"}`;
  binary when asked (`binary_data_output`, or an output's `binary_data`).
- `/v2/health/live`, `/v2/health/ready`, `/v2/models/<name>/ready` (a worker that loaded, with a
  real blank-image prediction at most once a second), `GET /v2/models/<name>` (platform pytorch,
  versions [sha256[:12]], the inputs and output above). OIP's metadata has no field for output
  names or custom facts, so those travel in each infer response.
- `/metrics`: kserve's histograms plus `mnist_predictions_total{digit}`, summed over every worker
  through prometheus_client's multiprocess mode (see `prepare_metrics_folder`).

Bad input is a 4xx with `{"error": "…"}` (never a 500) and the worker goes on: model.decode's
InputError keeps its status (400; 413 for too many bytes, pixels or images); a malformed or
invalid request body is a 400; a body over MNIST_MAX_IMAGE_BYTES + 64 KiB is refused with 413
from its Content-Length header, before it is read (chunked bodies: as soon as they pass it). So a
base64 image in JSON can be at most about 3/4 of MNIST_MAX_IMAGE_BYTES; the binary extension
carries the full size.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import binascii
import logging
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kserve
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import model_server
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotReady
from kserve.logging import KSERVE_LOGGER_DATE_FORMAT, KSERVE_LOGGER_FORMAT
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, exposition, multiprocess
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.artifact import ArtifactError, read_artifact
from model.decode import SIDE, InputError, array_to_pixels, check_batch_size, decode_image
from model.settings import REQUEST_OVERHEAD_BYTES, ServingSettings, SettingsError

if TYPE_CHECKING:  # torch comes with it: imported where a model loads (see __setstate__)
    from model.inference import MnistModel

log = logging.getLogger("model.kserve_server")  # not __name__: that is __main__ under python -m

IMAGE_INPUT = "image"
PIXELS_INPUT = "pixels"
OUTPUT = "t"
PIXEL_DTYPES = {"UINT8": np.dtype(np.uint8), "FP32": np.dtype("<f4")}
ACCEPTED_INPUTS = (
    f"`{IMAGE_INPUT}` (BYTES, shape [N]) or `{PIXELS_INPUT}` (UINT8 or FP32, shape [N, 28, 28] or [N, 784])"
)
PROBE_EVERY_S = 1.0
"""Readiness runs a real (blank-image) prediction at most this often; V2 asks on every request."""
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_FAILED = signal.SIGUSR1
"""What a worker that cannot load sends the parent: stop the server, exit 1."""

PREDICTIONS = Counter("mnist_predictions", "Images classified, by predicted digit.", ["digit"])


class BadRequest(InvalidInput):
    """An InputError as kserve sees it: gRPC answers INVALID_ARGUMENT (kserve's mapping of
    InvalidInput), REST the InputError's own status (the handler installed below)."""

    def __init__(self, error: InputError) -> None:
        super().__init__(error.message)
        self.status = error.status


# -- requests → 28×28 uint8 grids -------------------------------------------------------------


def _decode_one(data: bytes | str, where: str, settings: ServingSettings) -> np.ndarray:
    """One image, as raw bytes or a base64 string, → a (28, 28) grid; errors name `where`."""
    try:
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as e:
                raise InputError(f"not base64 ({e}); send the image's bytes base64-encoded") from None
        if not data:
            raise InputError("empty image: no bytes")
        return decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    except InputError as e:
        raise InputError(f"{where}: {e.message}", status=e.status, reason=e.reason) from None


def pixels_from_v1(payload: Any, settings: ServingSettings) -> np.ndarray:
    """KServe V1 `{"instances": [...]}` → (N, 28, 28) uint8."""
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InputError(
            'expected a JSON object {"instances": [...]}, each instance {"b64": "<base64 image>"}, '
            '{"image": {"b64": ...}} or one image\'s 28×28 or 784 pixels'
        )
    instances = payload["instances"]
    if not instances:
        raise InputError("no instances: send at least one image")
    check_batch_size(len(instances), settings.max_batch)
    grids = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if isinstance(instance, dict) and isinstance(instance.get("image"), dict):
            instance = instance["image"]
        if isinstance(instance, dict):
            if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
                raise InputError(f'{where}: an image is {{"b64": "<base64 bytes>"}}, got keys {sorted(instance)}')
            grids.append(_decode_one(instance["b64"], where, settings))
            continue
        try:
            pixels = array_to_pixels(instance, settings.max_batch)
        except InputError as e:
            raise InputError(f"{where}: {e.message}", status=e.status, reason=e.reason) from None
        if pixels.shape[0] != 1:
            raise InputError(f"{where}: holds {pixels.shape[0]} images; send one image per instance")
        grids.append(pixels[0])
    return np.stack(grids)


def _raw(tensor: InferInput) -> bytes | None:
    # The binary extension's (and gRPC raw_input_contents') bytes: kserve keeps them here, where
    # its own as_numpy reads them.
    return tensor._raw_data


def _split_bytes_tensor(raw: bytes, where: str) -> list[bytes]:
    """The OIP binary BYTES layout (each element: 4-byte little-endian length, then its bytes)."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InputError(f"{where}: truncated BYTES tensor (a length prefix is cut off)")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InputError(f"{where}: truncated BYTES tensor (element {len(items)} claims {length} bytes)")
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    return items


def _image_tensor(tensor: InferInput, settings: ServingSettings) -> np.ndarray:
    shape = list(tensor.shape)
    if tensor.datatype != "BYTES":
        raise InputError(f"input `{IMAGE_INPUT}` must be BYTES (the encoded images), got {tensor.datatype}")
    if len(shape) != 1 or shape[0] < 1:
        raise InputError(f"input `{IMAGE_INPUT}` must be shaped [N] (N ≥ 1 images), got {shape}")
    check_batch_size(shape[0], settings.max_batch)
    raw = _raw(tensor)
    items: Any = _split_bytes_tensor(raw, IMAGE_INPUT) if raw is not None else tensor.data
    if not isinstance(items, list) or len(items) != shape[0]:
        count = len(items) if isinstance(items, list) else type(items).__name__
        raise InputError(f"input `{IMAGE_INPUT}` shaped {shape} carries {count} elements")
    grids = []
    for i, item in enumerate(items):
        if not isinstance(item, (bytes, str)):
            raise InputError(f"{IMAGE_INPUT}[{i}]: expected a base64 string, got {type(item).__name__}")
        grids.append(_decode_one(item, f"{IMAGE_INPUT}[{i}]", settings))
    return np.stack(grids)


def _pixel_tensor(tensor: InferInput, settings: ServingSettings) -> np.ndarray:
    shape = list(tensor.shape)
    dtype = PIXEL_DTYPES.get(tensor.datatype)
    if dtype is None:
        raise InputError(f"input `{PIXELS_INPUT}` must be UINT8 or FP32, got {tensor.datatype}")
    if shape[1:] not in ([SIDE, SIDE], [SIDE * SIDE]) or len(shape) < 2 or shape[0] < 1:
        raise InputError(f"input `{PIXELS_INPUT}` must be shaped [N, 28, 28] or [N, 784], got {shape}")
    n = shape[0]
    check_batch_size(n, settings.max_batch)
    count = n * SIDE * SIDE
    raw = _raw(tensor)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InputError(
                f"input `{PIXELS_INPUT}` shaped {shape} needs {count * dtype.itemsize} bytes of "
                f"{tensor.datatype}, got {len(raw)}"
            )
        values = np.frombuffer(raw, dtype=dtype)
    else:
        try:
            values = np.asarray(tensor.data, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise InputError(f"input `{PIXELS_INPUT}`: the data are not numbers ({e})") from None
        if values.size != count:
            raise InputError(f"input `{PIXELS_INPUT}` shaped {shape} needs {count} values, got {values.size}")
        if tensor.datatype == "UINT8":
            if not np.array_equal(values, np.rint(values)):
                raise InputError(f"input `{PIXELS_INPUT}` is UINT8: its values must be whole numbers")
            values = values.astype(np.int64)  # integers: taken as 0..255, never scaled
    try:
        return array_to_pixels(values.reshape(n, SIDE, SIDE), settings.max_batch)
    except InputError as e:
        raise InputError(f"input `{PIXELS_INPUT}`: {e.message}", status=e.status, reason=e.reason) from None


def pixels_from_v2(request: InferRequest, settings: ServingSettings) -> np.ndarray:
    """An OIP inference request (REST or gRPC) → (N, 28, 28) uint8."""
    inputs = request.inputs
    if len(inputs) != 1:
        names = ", ".join(repr(t.name) for t in inputs) or "none"
        raise InputError(f"expected exactly one input tensor, {ACCEPTED_INPUTS}; got {len(inputs)}: {names}")
    for output in request.request_outputs or []:
        if output.name != OUTPUT:
            raise InputError(f"unknown output {output.name!r}: this model answers one output, `{OUTPUT}`")
    tensor = inputs[0]
    if tensor.name == IMAGE_INPUT:
        return _image_tensor(tensor, settings)
    if tensor.name == PIXELS_INPUT:
        return _pixel_tensor(tensor, settings)
    raise InputError(f"unknown input tensor {tensor.name!r}; expected {ACCEPTED_INPUTS}")


# -- the model ----------------------------------------------------------------------------------


_PENDING: list[MnistKServeModel] = []
"""Models unpickled in this worker, waiting for its app's startup to load them."""


def load_pending_models() -> None:
    """Load the models this worker was handed, in the worker, before uvicorn takes a connection
    (a startup handler of kserve's app). One that cannot load stops the whole server."""
    while _PENDING:
        model = _PENDING.pop()
        try:
            model.load()
        except BaseException:
            log.error("worker pid %d could not load the model: stopping the server", os.getpid())
            os.kill(os.getppid(), WORKER_FAILED)
            raise


class MnistKServeModel(kserve.Model):
    """`model.inference.MnistModel` as a kserve.Model."""

    def __init__(self, name: str, settings: ServingSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.core: MnistModel | None = None  # made by load(), in the process that serves
        self._output_parameters: dict[str, str] = {}
        self._probed_at = 0.0

    def load(self) -> bool:
        from model.inference import OUTPUT_NAMES, MnistModel

        core = MnistModel(self.settings)
        core.load()
        self._output_parameters = {"names": ",".join(OUTPUT_NAMES)}  # Seldon's column names
        self.core, self._probed_at, self.ready = core, time.monotonic(), True
        return self.ready

    def check(self) -> bool:
        """The parent's part when it serves no model itself (workers > 1, no gRPC): the artifact
        and MODEL_SHA256 checked without torch; each worker then loads it."""
        try:
            _, metadata = read_artifact(self.settings.model_uri, expected_sha256=self.settings.model_sha256 or None)
        except ArtifactError as e:
            log.error("not serving %s: %s", self.settings.model_uri, e)  # as MnistModel.load words it
            raise
        log.info(
            "checked %s (sha256 %s) in pid %d; each worker loads it",
            self.settings.model_uri,
            metadata["sha256"],
            os.getpid(),
        )
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for a spawned worker (kserve's workers > 1): the settings travel, the loaded
        # network does not (NOTES.md: torch state created in another process deadlocks), and
        # unpickling imports no torch (the next comment says why that matters).
        return {**self.__dict__, "core": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The worker loads at its app's startup (`load_pending_models`), not here: kserve's
        # parent pings each worker over a pipe that the worker answers only once unpickling is
        # done, and kills one silent for 5 s, less than imports plus a load take on two busy
        # cores.
        self.__dict__.update(state)
        if self.ready:
            self.ready = False
            _PENDING.append(self)

    async def healthy(self) -> bool:
        """Ready once loaded; at most once a second (readiness probes) also a real prediction."""
        if not self.ready or self.core is None:
            return False
        from model.inference import UnhealthyModel

        now = time.monotonic()
        if now - self._probed_at >= PROBE_EVERY_S:
            try:
                self.core.health()
            except UnhealthyModel as e:
                log.error("%s", e)
                return False
            self._probed_at = now
        return True

    def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        try:
            if isinstance(payload, InferRequest):
                pixels = pixels_from_v2(payload, self.settings)
            else:
                pixels = pixels_from_v1(payload, self.settings)
        except InputError as e:
            raise BadRequest(e) from None
        core = self._loaded()
        rows = core.predict(pixels)
        for digit, n in enumerate(np.bincount(rows.argmax(axis=1), minlength=10).tolist()):
            if n:
                PREDICTIONS.labels(digit=str(digit)).inc(n)
        if not isinstance(payload, InferRequest):
            return {"predictions": rows.tolist()}
        names = dict(self._output_parameters)  # a copy: kserve adds binary_data_size to it
        # A list, not the array: kserve 0.21's to_grpc takes an ndarray's truth value (a 500) when
        # a gRPC request came as raw_input_contents.
        data = rows.ravel().tolist()
        output = InferOutput(name=OUTPUT, shape=list(rows.shape), datatype="FP32", data=data, parameters=names)
        return InferResponse(
            response_id=payload.id if isinstance(payload.id, str) and payload.id else uuid.uuid4().hex,
            model_name=self.name,
            model_version=core.version,
            infer_outputs=[output],
            parameters={"model_sha256": core.sha256 or "", "precision": core.precision},
            use_binary_outputs=bool(payload.use_binary_outputs),
            requested_outputs=payload.request_outputs,
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        # OIP metadata has one datatype and shape per input: `pixels` also takes UINT8 and
        # [-1, 28, 28] (module docstring).
        return [
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": PIXELS_INPUT, "datatype": "FP32", "shape": [-1, SIDE * SIDE]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, 10]}]

    @property
    def versions(self) -> list[str]:
        return [self.core.version] if self.core is not None else []

    def _loaded(self) -> MnistModel:
        if self.core is None:
            raise ModelNotReady(self.name)
        return self.core


# -- kserve's data plane, server and app, adjusted ----------------------------------------------


def _json_request(body: bytes, model_name: str) -> InferRequest:
    """A JSON request that came without Content-Type application/json (tritonclient sends none),
    which FastAPI hands over as bytes."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(
            f"the body is not JSON ({e}) and has no Inference-Header-Content-Length header "
            "(the binary tensor extension)"
        ) from None
    try:
        request = InferenceRequest.model_validate(parsed)
    except ValidationError as e:
        raise InvalidInput(f"invalid inference request: {_problems(e.errors())}") from None
    return InferRequest.from_inference_request(request, model_name)


def _binary_request(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """An OIP binary-extension body → InferRequest, every malformation an InvalidInput (400).

    kserve 0.21's own parser turns BYTES elements into UTF-8 text (an image is not: a 500) and
    lets a short body, a bad length or a missing key escape as a 500. Without the header, the
    body is JSON.
    """
    if header_length is None:
        return _json_request(body, model_name)
    try:
        json_length = int(header_length)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} is not a whole number") from None
    if not 0 < json_length <= len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {json_length}, but the body has {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the request's JSON header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput('the request\'s JSON header must be an object with an "inputs" list')
    binary, offset, inputs = memoryview(body)[json_length:], 0, []
    for i, spec in enumerate(header["inputs"]):
        if not isinstance(spec, dict):
            raise InvalidInput(f"inputs[{i}] is not an object")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        parameters = spec.get("parameters") or {}
        if not (
            isinstance(name, str)
            and isinstance(datatype, str)
            and isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            and isinstance(parameters, dict)
        ):
            raise InvalidInput(f"inputs[{i}] needs a name, a datatype and a shape (whole numbers)")
        tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=parameters)
        size = parameters.get("binary_data_size")
        if "data" in spec:
            tensor.data = spec["data"]
        elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r}: binary_data_size {size} runs past the body's end "
                    f"({len(binary) - offset} bytes left)"
                )
            tensor._raw_data = bytes(binary[offset : offset + size])  # where kserve keeps it
            offset += size
        else:
            raise InvalidInput(f"input {name!r} has neither data nor a binary_data_size")
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes after the inputs' binary data belong to no input")
    outputs = header.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
        and all(isinstance(o.get("parameters") or {}, dict) for o in outputs)
    ):
        raise InvalidInput('"outputs" must be a list of objects with a name')
    parameters = header.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    request_id = header.get("id")
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=request_id if isinstance(request_id, str) else None,
        parameters=parameters,
        request_outputs=[RequestedOutput(o["name"], o.get("parameters")) for o in outputs] if outputs else None,
    )


class MnistDataPlane(DataPlane):
    """kserve's DataPlane with our model's platform and versions in its metadata, and binary
    requests parsed without 500s."""

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, MnistKServeModel):
            metadata.update(platform="pytorch", versions=model.versions)
        return metadata

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if isinstance(body, bytes):
            return _binary_request(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), model_name)
        return super().decode_inference_request(body, headers, model_name)


class MnistModelServer(kserve.ModelServer):
    """kserve's ModelServer on `MnistDataPlane` (handed to the REST workers and the gRPC server)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataplane = MnistDataPlane(model_registry=self.registered_models)


class BodyLimit:
    """Refuse request bodies over MNIST_MAX_IMAGE_BYTES + 64 KiB with a JSON 413: from the
    Content-Length header before reading any of it, or, for a chunked body, once it passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limit = ServingSettings.from_env().max_image_bytes + REQUEST_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit():
            if int(declared) > self.limit:
                return await self._refuse(scope, send, int(declared))
            return await self.app(scope, receive, send)  # the server reads no more than declared
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(scope, send, size)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        message = f"request body too large: {size} bytes, the limit is {self.limit} (MNIST_MAX_IMAGE_BYTES + 64 KiB)"
        await JSONResponse({"error": message}, status_code=413, headers={"connection": "close"})(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def _bad_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": exc.reason}, status_code=exc.status)


def _problems(errors: Sequence[Any]) -> str:
    """pydantic's error list, the first few, as `where: what; …` (without the `body.bytes`
    branch of the V2 route's `InferenceRequest | bytes` body, which JSON never matches)."""
    out = []
    for e in errors:
        if e.get("type") == "json_invalid":
            where = e.get("loc", ("body", "?"))[-1]
            out.append(f"the body is not JSON ({(e.get('ctx') or {}).get('error', '')} at character {where})")
            continue
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "InferenceRequest")]
        if loc == ["bytes"]:
            continue
        out.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', '')}")
    return "; ".join(out[:5])


async def _invalid_body(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": f"invalid inference request: {_problems(exc.errors())}"}, status_code=400)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def metrics(request: Request) -> Response:
    """kserve's /metrics, summed over every worker when prometheus_client runs multiprocess."""
    registry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


def install_app_hooks(app: FastAPI) -> None:
    """Our additions to kserve's FastAPI app: the body limit, JSON 4xx answers for bad requests,
    the multiprocess-aware /metrics (registered before kserve's, so it answers) and the startup
    handler that loads a spawned worker's model."""
    if getattr(app.state, "mnist_hooks", False):
        return
    app.state.mnist_hooks = True
    app.add_middleware(BodyLimit)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.router.add_event_handler("startup", load_pending_models)


def _log_to_stderr() -> None:
    """model.* logs (which weights each process loads) in kserve's format; kserve configures its
    own loggers only."""
    logger = logging.getLogger("model")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(KSERVE_LOGGER_FORMAT, KSERVE_LOGGER_DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


# On import, so in the server's own process (python -m) and in every spawned worker, which
# imports this module as __mp_main__ before it unpickles the model and builds kserve's app.
_log_to_stderr()
install_app_hooks(model_server.app)


# -- the command --------------------------------------------------------------------------------


def prepare_metrics_folder(workers: int) -> str | None:
    """Where prometheus_client's multiprocess mode keeps every process's values, emptied.

    PROMETHEUS_MULTIPROC_DIR, when the deployment sets it (the image does), is used by every
    process, this one included; stale files of an earlier run are removed. Otherwise, with more
    than one worker, a fresh folder is made for the workers (spawned after this, they inherit
    it); this process's own metrics, its gRPC requests', then stay out of the sum.
    """
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
        return folder
    if workers > 1:
        folder = tempfile.mkdtemp(prefix="mnist-prometheus-")
        os.environ[MULTIPROC_ENV] = folder
        atexit.register(shutil.rmtree, folder, True)
        return folder
    return None


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m model.kserve_server",
        description="Serve the MNIST CNN with KServe (V1 and Open Inference Protocol REST, OIP gRPC). "
        "Model settings come from the environment (MODEL_URI, MODEL_SHA256, MNIST_PRECISION, ...).",
        parents=[model_server.parser],
    )


def main() -> int:
    # kserve.model_server parsed the same argv on import; this strict parse rejects typos.
    args = build_parser().parse_args()
    try:
        settings = ServingSettings.from_env()
    except SettingsError as e:
        log.error("bad setting: %s", e)
        return 2
    folder = prepare_metrics_folder(args.workers)
    model = MnistKServeModel(args.model_name, settings)
    serves_itself = args.workers == 1 or args.enable_grpc
    try:
        model.load() if serves_itself else model.check()  # kserve starts only with a ready model
    except ArtifactError:
        return 1  # logged
    log.info(
        "serving %r: HTTP :%d, gRPC %s, %d worker(s)%s; metrics %s",
        args.model_name,
        args.http_port,
        f":{args.grpc_port}" if args.enable_grpc else "off",
        args.workers,
        " (each spawned worker loads the weights itself)" if args.workers > 1 else "",
        f"summed over workers in {folder}" if folder else "of this process",
    )
    server = MnistModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers, enable_grpc=args.enable_grpc
    )
    failed: list[int] = []

    def stop_for_worker(signum: int, _: object) -> None:
        if not failed:  # once, however many workers fail
            server.stop(signal.SIGTERM)  # as kserve's own SIGTERM handler does
        failed.append(signum)

    signal.signal(WORKER_FAILED, stop_for_worker)
    server.start([model])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
