"""An HTTP client for the model server: post one image as multipart `binData`, read the digit.

Standard library only (urllib), so mlctl needs no HTTP dependency. The server answers the
Seldon v1 shape `{"data": {"names": [...], "tensor": {"shape": [1, 10], "values": [...]}}}` (or
`ndarray`) holding log-probabilities; `Prediction.scores` are those as probabilities.
"""

from __future__ import annotations

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


def predict_image(
    url: str,
    image: str | os.PathLike[str] | bytes,
    endpoint: str = DEFAULT_ENDPOINT,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Prediction:
    """Post an image file (or its bytes) to `url + endpoint`; return the parsed prediction."""
    if isinstance(image, (bytes, bytearray)):
        data, filename = bytes(image), "image"
    else:
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PredictError(f"cannot read {path}: {e.strerror or e}") from e
        filename = path.name
    body, content_type = encode_multipart("binData", filename, data)
    target = url.rstrip("/") + "/" + endpoint.lstrip("/")
    answer = post(target, body, content_type, timeout)
    return parse_prediction(answer)


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


def parse_prediction(answer: dict[str, Any]) -> Prediction:
    """Read the ten log-probabilities from a Seldon v1 answer (tensor or ndarray)."""
    data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
    values: Any = None
    if isinstance(data.get("tensor"), dict):
        values = data["tensor"].get("values")
    elif "ndarray" in data:
        values = data["ndarray"]
        while isinstance(values, list) and len(values) == 1 and isinstance(values[0], list):
            values = values[0]
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
    return Prediction(cls=max(range(10), key=scores.__getitem__), scores=scores, raw=answer)


def _server_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
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
