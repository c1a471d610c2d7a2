"""An HTTP client for the model server: post one image, read the digit, in either engine's protocol.

Standard library only (urllib), so mlctl needs no HTTP dependency. Protocols (`PROTOCOLS`):

- `seldon`: the image as multipart `binData` to `/api/v1.0/predictions`; the answer is Seldon's
  `{"data": {"names": [...], "tensor": {"shape": [1, 10], "values": [...]}}, "meta": {"tags": …}}`
  (or `ndarray`);
- `v2`: the Open Inference Protocol, as KServe serves it: the image bytes as a base64 `BYTES`
  tensor named `image` to `/v2/models/<model>/infer`; the answer's output `t` holds the row;
- `v1`: KServe's V1, `{"instances": [{"b64": …}]}` to `/v1/models/<model>:predict`; the answer is
  `{"predictions": [[…]]}`.

Every answer holds log-probabilities; `Prediction.scores` are those as probabilities, and
`Prediction.model_sha256` the weights the server says it answered with.
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
    """The predicted digit."""
    scores: list[float]
    """Probabilities of the digits 0–9 (they sum to 1)."""
    raw: dict[str, Any]
    """The server's whole JSON answer."""
    model_sha256: str | None = None
    """The weights the server says it answered with (Seldon's model_sha256 tag; V2's
    `parameters.model_sha256`), None when it does not say."""


def endpoint_for(protocol: str, model: str) -> str:
    """The path a protocol posts one prediction to."""
    return {
        "seldon": DEFAULT_ENDPOINT,
        "v2": f"/v2/models/{model}/infer",
        "v1": f"/v1/models/{model}:predict",
    }[protocol]


def cli_flags(protocol: str, model: str) -> str:
    """The `mlctl predict` flags that speak `protocol` to `model` ("" for the default, seldon)."""
    return "" if protocol == "seldon" else f" --protocol {protocol} --model {model}"


def predict_image(
    url: str,
    image: str | os.PathLike[str] | bytes,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    protocol: str = "seldon",
    model: str = "mnist",
) -> Prediction:
    """Post an image file (or its bytes) to `url + endpoint` (default: the protocol's own path
    for `model`) in `protocol`; return the parsed prediction."""
    if isinstance(image, (bytes, bytearray)):
        data, filename = bytes(image), "image"
    else:
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PredictError(f"cannot read {path}: {e.strerror or e}") from e
        filename = path.name
    if protocol == "seldon":
        body, content_type = encode_multipart("binData", filename, data)
    else:
        b64 = base64.b64encode(data).decode("ascii")
        request = (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]}
            if protocol == "v2"
            else {"instances": [{"b64": b64}]}
        )
        body, content_type = json.dumps(request).encode(), "application/json"
    target = url.rstrip("/") + "/" + (endpoint or endpoint_for(protocol, model)).lstrip("/")
    answer = post(target, body, content_type, timeout)
    return parse_prediction(answer, protocol)


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


def _row_and_sha(answer: dict[str, Any], protocol: str) -> tuple[Any, Any]:
    """(the first row of scores, the weights' sha256) as each protocol's answer carries them."""
    if protocol == "v2":
        outputs = answer.get("outputs") if isinstance(answer.get("outputs"), list) else []
        row = next((o.get("data") for o in outputs if isinstance(o, dict) and o.get("name") == "t"), None)
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        return (row[:10] if isinstance(row, list) else None), parameters.get("model_sha256")
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


def parse_prediction(answer: dict[str, Any], protocol: str = "seldon") -> Prediction:
    """Read the ten log-probabilities (and the weights' sha256) from an answer in `protocol`."""
    values, sha = _row_and_sha(answer, protocol)
    if (
        not isinstance(values, list)
        or len(values) != 10
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    ):
        raise PredictError(f"the answer holds no row of 10 scores: {json.dumps(answer)[:300]}")
    # Log-probabilities → probabilities (softmax, which is exp for a log-softmax row).
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    scores = [e / total for e in exps]
    return Prediction(
        cls=max(range(10), key=scores.__getitem__),
        scores=scores,
        raw=answer,
        model_sha256=sha if isinstance(sha, str) else None,
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
