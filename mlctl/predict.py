"""An HTTP client for the model server: post one input, read the scores, in either engine's protocol.

Standard library only (urllib), so mlctl needs no HTTP dependency. Protocols (`PROTOCOLS`):

- `seldon`: an image as multipart `binData` (a tensor as JSON `{"data": {"ndarray": …}}`) to
  `/api/v1.0/predictions`; the answer is Seldon's `{"data": {"names": [...], "tensor": {"shape":
  [1, N], "values": [...]}}, "meta": {"tags": …}}` (or `ndarray`);
- `v2`: the Open Inference Protocol, as KServe serves it: an image as a base64 `BYTES` tensor
  (a tensor as numbers) under the model's input name to `/v2/models/<model>/infer`; the answer's
  output (the contract's output name) holds the row;
- `v1`: KServe's V1, `{"instances": [{"b64": …}]}` (or the tensor's rows) to
  `/v1/models/<model>:predict`; the answer is `{"predictions": [[…]]}`.

How to read the row is the model contract's output (`mlctl.contract.Output`: its name, labels and
what the scores are); without one, the first output's row is read as probabilities of classes
named by their index. `Prediction.model_sha256` is the weights the server says it answered with.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.contract import Contract, Output, TensorInput, kind_of
from mlctl.errors import MlctlError

DEFAULT_ENDPOINT = "/api/v1.0/predictions"
DEFAULT_TIMEOUT_S = 10.0
PROTOCOLS = ("seldon", "v2", "v1")
ENGINE_PROTOCOL = {"seldon": "seldon", "kserve": "v2"}
"""The protocol mlctl speaks to each engine's server (its smoke tests, `mlctl predict`'s default)."""


class PredictError(MlctlError):
    """The server could not be reached, or answered with an error."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


@dataclass(frozen=True)
class Prediction:
    cls: int
    """The predicted class: the index of the highest score."""
    scores: list[float]
    """The row of scores, as probabilities when the output says what its scores are."""
    raw: dict[str, Any]
    """The server's whole JSON answer."""
    model_sha256: str | None = None
    """The weights the server says it answered with (Seldon's model_sha256 tag; V2's
    `parameters.model_sha256`), None when it does not say."""
    labels: tuple[str, ...] = ()
    """The class labels (the contract's), or the indices as text."""

    @property
    def label(self) -> str:
        return self.labels[self.cls]


def endpoint_for(protocol: str, model: str) -> str:
    """The path a protocol posts one prediction to."""
    return {
        "seldon": DEFAULT_ENDPOINT,
        "v2": f"/v2/models/{model}/infer",
        "v1": f"/v1/models/{model}:predict",
    }[protocol]


def cli_flags(protocol: str, spec: str | os.PathLike[str]) -> str:
    """The `mlctl predict` flags that read answers with `spec`'s model contract and speak
    `protocol` to its model (the spec names it)."""
    return f" --spec {spec}" + ("" if protocol == "seldon" else f" --protocol {protocol}")


def predict_file(
    url: str,
    file: Path,
    contract: Contract | None = None,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    protocol: str = "seldon",
    model: str = "model",
) -> Prediction:
    """Post a file as the model contract's input of its kind (`mlctl.contract.kind_of`: a `.json`
    file is a tensor, any other an image), read as its output says; without a contract, as the
    input `image` or `input-0` (FP32), the answer's first output."""
    declared = contract.input_for(file) if contract is not None else None
    if contract is not None and declared is None:
        raise PredictError(f"{file}: the model takes no {kind_of(file)} input (its model.yaml declares none)")
    output = contract.output if contract is not None else None
    common = {"endpoint": endpoint, "timeout": timeout, "protocol": protocol, "model": model, "output": output}
    if isinstance(declared, TensorInput) or (declared is None and kind_of(file) == "tensor"):
        if declared is not None:
            name, datatype, rank = declared.name, declared.datatype[0], declared.item_rank
        else:
            name, datatype, rank = "input-0", "FP32", 1
        return predict_tensor(url, file, input_name=name, datatype=datatype, item_rank=rank, **common)
    return predict_image(url, file, input_name=declared.name if declared else "image", **common)


def predict_image(
    url: str,
    image: str | os.PathLike[str] | bytes,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    protocol: str = "seldon",
    model: str = "model",
    input_name: str = "image",
    output: Output | None = None,
) -> Prediction:
    """Post an image file (or its bytes) to `url + endpoint` (default: the protocol's own path
    for `model`) in `protocol`, as the input `input_name`; return the parsed prediction."""
    data, filename = _read(image)
    if protocol == "seldon":
        body, content_type = encode_multipart("binData", filename, data)
    else:
        b64 = base64.b64encode(data).decode("ascii")
        request = (
            {"inputs": [{"name": input_name, "datatype": "BYTES", "shape": [1], "data": [b64]}]}
            if protocol == "v2"
            else {"instances": [{"b64": b64}]}
        )
        body, content_type = json.dumps(request).encode(), "application/json"
    target = url.rstrip("/") + "/" + (endpoint or endpoint_for(protocol, model)).lstrip("/")
    return parse_prediction(post(target, body, content_type, timeout), protocol, output)


def predict_tensor(
    url: str,
    tensor: str | os.PathLike[str] | bytes,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    protocol: str = "seldon",
    model: str = "model",
    input_name: str = "input-0",
    datatype: str = "FP32",
    output: Output | None = None,
    item_rank: int = 1,
) -> Prediction:
    """Post a tensor (a JSON file or its bytes: one item's numbers, nested `item_rank` deep, or a
    batch of them) to the server in `protocol`, as the input `input_name` of `datatype`; return
    the parsed prediction."""
    data, filename = _read(tensor)
    try:
        values = json.loads(data)
    except ValueError:
        values = None  # sent as it is: the server's 4xx is the answer
    if values is None:
        body = data
    else:
        rows = values if _depth(values) > item_rank else [values]
        request = {
            "seldon": {"data": {"ndarray": rows}},
            "v2": {"inputs": [{"name": input_name, "datatype": datatype, "shape": _shape(rows), "data": _flat(rows)}]},
            "v1": {"instances": rows},
        }[protocol]
        body = json.dumps(request).encode()
    target = url.rstrip("/") + "/" + (endpoint or endpoint_for(protocol, model)).lstrip("/")
    return parse_prediction(post(target, body, "application/json", timeout), protocol, output)


def _read(source: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "input"
    path = Path(source)
    try:
        return path.read_bytes(), path.name
    except OSError as e:
        raise PredictError(f"cannot read {path}: {e.strerror or e}") from e


def _depth(values: Any) -> int:
    return 1 + _depth(values[0]) if isinstance(values, list) and values else 0


def _shape(values: Any) -> list[int]:
    return [len(values), *_shape(values[0])] if isinstance(values, list) and values else []


def _flat(values: Any) -> list[Any]:
    return [x for v in values for x in _flat(v)] if isinstance(values, list) else [values]


def encode_multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """One file field as multipart/form-data; returns (body, Content-Type header)."""
    boundary = f"mlctl-{uuid.uuid4().hex}"
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{safe_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str, timeout: float) -> dict[str, Any]:
    """POST and decode the JSON answer; every failure becomes a PredictError saying what happened."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            payload = r.read()
    except urllib.error.HTTPError as e:
        detail = _server_message(e.read())
        raise PredictError(f"{url} answered HTTP {e.code}: {detail}", status=e.code) from e
    except urllib.error.URLError as e:
        raise _unreachable(url, e.reason, timeout) from e
    except TimeoutError as e:
        raise _unreachable(url, e, timeout) from e
    except (ConnectionError, OSError) as e:
        raise _unreachable(url, e, timeout) from e
    try:
        answer = json.loads(payload)
    except ValueError as exc:
        raise PredictError(f"{url} answered something that is not JSON: {payload[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise PredictError(f"{url} answered JSON that is not an object: {str(answer)[:200]}")
    return answer


def _first_row(values: Any) -> Any:
    while isinstance(values, list) and len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    return values


def _row_and_sha(answer: dict[str, Any], protocol: str, output: Output | None) -> tuple[Any, Any]:
    """(the first row of scores, the weights' sha256) as each protocol's answer carries them."""
    if protocol == "v2":
        outputs = [o for o in answer.get("outputs") or [] if isinstance(o, dict)]
        if output is not None:
            outputs = [o for o in outputs if o.get("name") == output.name]
        row = outputs[0].get("data") if outputs else None
        if isinstance(row, list) and outputs[0].get("shape"):
            row = row[: outputs[0]["shape"][-1]]
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        return row, parameters.get("model_sha256")
    if protocol == "v1":
        predictions = answer.get("predictions")
        return (_first_row(predictions[:1]) if isinstance(predictions, list) else None), None
    data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
    values: Any = None
    if isinstance(data.get("tensor"), dict):
        values = data["tensor"].get("values")
    elif "ndarray" in data:
        values = _first_row(data["ndarray"])
    tags = (answer.get("meta") or {}).get("tags") if isinstance(answer.get("meta"), dict) else None
    return values, (tags or {}).get("model_sha256")


def parse_prediction(answer: dict[str, Any], protocol: str = "seldon", output: Output | None = None) -> Prediction:
    """Read the first row of scores (and the weights' sha256) from an answer in `protocol`, as
    `output` describes it (its name, labels and kind of scores)."""
    values, sha = _row_and_sha(answer, protocol, output)
    width = len(output.labels) if output is not None else None
    if (
        not isinstance(values, list)
        or not values
        or (width is not None and len(values) != width)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    ):
        wanted = f"{width} scores" if width else "scores"
        raise PredictError(f"the answer holds no row of {wanted}: {json.dumps(answer)[:300]}")
    scores = [float(v) for v in values]
    if output is not None and output.scores != "probabilities":
        # Log-probabilities or logits → probabilities (softmax; exp for a log-softmax row).
        top = max(scores)
        exps = [math.exp(v - top) for v in scores]
        total = sum(exps)
        scores = [e / total for e in exps]
    return Prediction(
        cls=max(range(len(scores)), key=scores.__getitem__),
        scores=scores,
        raw=answer,
        model_sha256=sha if isinstance(sha, str) else None,
        labels=tuple(output.labels) if output is not None else tuple(str(i) for i in range(len(scores))),
    )


def _server_message(body: bytes) -> str:
    """Seldon's `{"status": {"info", "reason"}}` or KServe's `{"error": …}`, else the text."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
        info = parsed["status"]["info"]
        reason = parsed["status"].get("reason")
        return f"{info} ({reason})" if reason else str(info)
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or "(empty body)"


def _unreachable(url: str, reason: object, timeout: float) -> PredictError:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return PredictError(
            f"{url} did not answer within {timeout:g} s",
            hint="the server may be overloaded or still starting; try a longer --timeout",
        )
    if isinstance(reason, ConnectionRefusedError):
        return PredictError(
            f"cannot reach {url}: connection refused",
            hint="is the model server running? `mlctl serve` starts one locally",
        )
    return PredictError(f"cannot reach {url}: {reason}", hint="check the URL and that the server is up")
