"""KServe's requests → the contract's inputs, as `runtime.served` hands them to the model:
KServe V1 `instances` and Open Inference Protocol (V2) tensors, JSON or the binary tensor
extension.

V1 instances are images `{"b64": …}` / `{"image": {"b64": …}}` (the image input) or one item's
numbers (the first tensor input). V2 takes exactly one input, named as the contract names it: an
image input is BYTES, shape [N] (base64 strings in JSON, length-prefixed raw bytes in binary), a
tensor input one of its declared datatypes, shaped [N, …] with the item's element count. Every
malformation is an InputError (runtime.decode) with its 4xx status, or kserve's InvalidInput
(400); never a 500. kserve 0.21's own binary parser turns BYTES elements into text and lets
short bodies escape as 500s, hence `binary_request`.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from runtime.contract import Contract, Input
from runtime.decode import DTYPES, InputError, check_batch_size, decode_image, to_tensor
from runtime.settings import ServingSettings


class BadRequest(InvalidInput):
    """An InputError as kserve sees it: gRPC answers INVALID_ARGUMENT (kserve's mapping of
    InvalidInput), REST the InputError's own status (runtime/kserve_app.py's handler)."""

    def __init__(self, error: InputError) -> None:
        super().__init__(error.message)
        self.status = error.status


def accepted_inputs(contract: Contract) -> str:
    """The inputs a V2 request may name, as errors word them."""
    words = []
    for spec in contract.inputs:
        if spec.kind == "image":
            words.append(f"`{spec.name}` (BYTES, shape [N])")
        else:
            dims = ", ".join(map(str, spec.item_shape))
            words.append(f"`{spec.name}` ({' or '.join(spec.datatypes)}, shape [N, {dims}])")
    return " or ".join(words)


def _decode_one(data: bytes | str, where: str, spec: Input, settings: ServingSettings) -> np.ndarray:
    """One image, as raw bytes or a base64 string, → its pixels; errors name `where`."""
    try:
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as e:
                raise InputError(f"not base64 ({e}); send the image's bytes base64-encoded") from None
        if not data:
            raise InputError("empty image: no bytes")
        return decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            mode=spec.mode,
            min_side=spec.min_decode_side,
        )
    except InputError as e:
        raise InputError(f"{where}: {e.message}", status=e.status, reason=e.reason) from None


def inputs_from_v1(payload: Any, contract: Contract, settings: ServingSettings) -> dict[str, Any]:
    """KServe V1 `{"instances": [...]}` → {input name: its N items}. The instances are all
    images (the image input) or all numbers (the first tensor input), one item each."""
    image, tensor = contract.image_input, contract.tensor_input
    kinds = " or ".join(
        (['{"b64": "<base64 image>"} or {"image": {"b64": ...}}'] if image else [])
        + ([f"one item's numbers for `{tensor.name}`"] if tensor else [])
    )
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InputError(f'expected a JSON object {{"instances": [...]}}, each instance {kinds}')
    instances = payload["instances"]
    if not instances:
        raise InputError("no instances: send at least one item")
    check_batch_size(len(instances), settings.max_batch)
    images, rows = [], []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if isinstance(instance, dict) and isinstance(instance.get("image"), dict):
            instance = instance["image"]
        if isinstance(instance, dict):
            if image is None:
                raise InputError(f"{where}: this model takes no image; each instance is {kinds}")
            if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
                raise InputError(f'{where}: an image is {{"b64": "<base64 bytes>"}}, got keys {sorted(instance)}')
            images.append(_decode_one(instance["b64"], where, image, settings))
            continue
        if tensor is None:
            raise InputError(f"{where}: this model takes an image; each instance is {kinds}")
        try:
            item = to_tensor(instance, tensor, settings.max_batch)
        except InputError as e:
            raise InputError(f"{where}: {e.message}", status=e.status, reason=e.reason) from None
        if item.shape[0] != 1:
            raise InputError(f"{where}: holds {item.shape[0]} items; send one item per instance")
        rows.append(item)
    if images and rows:
        raise InputError("the instances mix images and numbers: send one kind per request")
    if images:
        assert image is not None
        return {image.name: images}
    assert tensor is not None
    dtypes = {r.dtype for r in rows}
    if len(dtypes) > 1:  # JSON integers in one instance, fractions in another: one type for all
        wider = (
            DTYPES[next(d for d in tensor.datatypes if DTYPES[d].kind == "f")]
            if any(DTYPES[d].kind == "f" for d in tensor.datatypes)
            else max(dtypes, key=lambda d: d.itemsize)
        )
        rows = [r.astype(wider) for r in rows]
    return {tensor.name: np.concatenate(rows)}


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


def _image_tensor(tensor: InferInput, spec: Input, settings: ServingSettings) -> list[np.ndarray]:
    shape = list(tensor.shape)
    if tensor.datatype != "BYTES":
        raise InputError(f"input `{spec.name}` must be BYTES (the encoded images), got {tensor.datatype}")
    if len(shape) != 1 or shape[0] < 1:
        raise InputError(f"input `{spec.name}` must be shaped [N] (N ≥ 1 images), got {shape}")
    check_batch_size(shape[0], settings.max_batch)
    raw = _raw(tensor)
    items: Any = _split_bytes_tensor(raw, spec.name) if raw is not None else tensor.data
    if not isinstance(items, list) or len(items) != shape[0]:
        count = len(items) if isinstance(items, list) else type(items).__name__
        raise InputError(f"input `{spec.name}` shaped {shape} carries {count} elements")
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, (bytes, str)):
            raise InputError(f"{spec.name}[{i}]: expected a base64 string, got {type(item).__name__}")
        images.append(_decode_one(item, f"{spec.name}[{i}]", spec, settings))
    return images


def _numeric_tensor(tensor: InferInput, spec: Input, settings: ServingSettings) -> np.ndarray:
    shape = list(tensor.shape)
    if tensor.datatype not in spec.datatypes:
        raise InputError(f"input `{spec.name}` must be {' or '.join(spec.datatypes)}, got {tensor.datatype}")
    dtype = DTYPES[tensor.datatype]
    dims = ", ".join(map(str, spec.item_shape))
    if len(shape) < 2 or shape[0] < 1 or math.prod(shape[1:]) != spec.item_elements:
        flat = f" or [N, {spec.item_elements}]" if len(spec.item_shape) > 1 else ""
        raise InputError(f"input `{spec.name}` must be shaped [N, {dims}]{flat}, got {shape}")
    n = shape[0]
    check_batch_size(n, settings.max_batch)
    count = n * spec.item_elements
    raw = _raw(tensor)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InputError(
                f"input `{spec.name}` shaped {shape} needs {count * dtype.itemsize} bytes of "
                f"{tensor.datatype}, got {len(raw)}"
            )
        values = np.frombuffer(raw, dtype=dtype)
    else:
        try:
            values = np.asarray(tensor.data, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise InputError(f"input `{spec.name}`: the data are not numbers ({e})") from None
        if values.size != count:
            raise InputError(f"input `{spec.name}` shaped {shape} needs {count} values, got {values.size}")
    try:
        return to_tensor(values.reshape(n, *spec.item_shape), spec, settings.max_batch, datatype=tensor.datatype)
    except InputError as e:
        message = e.message if e.message.startswith(f"input `{spec.name}`") else f"input `{spec.name}`: {e.message}"
        raise InputError(message, status=e.status, reason=e.reason) from None


def inputs_from_v2(request: InferRequest, contract: Contract, settings: ServingSettings) -> dict[str, Any]:
    """An OIP inference request (REST or gRPC) → {input name: its N items}."""
    inputs = request.inputs
    if len(inputs) != 1:
        names = ", ".join(repr(t.name) for t in inputs) or "none"
        raise InputError(f"expected exactly one input tensor, {accepted_inputs(contract)}; got {len(inputs)}: {names}")
    for output in request.request_outputs or []:
        if output.name != contract.output_name:
            raise InputError(f"unknown output {output.name!r}: this model answers one output, `{contract.output_name}`")
    tensor = inputs[0]
    spec = contract.input(tensor.name)
    if spec is None:
        raise InputError(f"unknown input tensor {tensor.name!r}; expected {accepted_inputs(contract)}")
    if spec.kind == "image":
        return {spec.name: _image_tensor(tensor, spec, settings)}
    return {spec.name: _numeric_tensor(tensor, spec, settings)}


def json_request(body: bytes, model_name: str) -> InferRequest:
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
        raise InvalidInput(f"invalid inference request: {problems(e.errors())}") from None
    return InferRequest.from_inference_request(request, model_name)


def binary_request(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """An OIP binary-extension body → InferRequest, every malformation an InvalidInput (400).

    kserve 0.21's own parser turns BYTES elements into UTF-8 text (an image is not: a 500) and
    lets a short body, a bad length or a missing key escape as a 500. Without the header, the
    body is JSON.
    """
    if header_length is None:
        return json_request(body, model_name)
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


def problems(errors: Sequence[Any]) -> str:
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
