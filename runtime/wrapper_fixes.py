"""What the seldon-core 1.17.1 wrapper lacks or gets wrong, fixed from outside it.

The wrapper is frozen (1.17.1 is the last Apache-2.0 release), so each fix wraps or hooks it:
- `skip_empty_metric_updates`: no multiprocessing-Manager round trips for empty metric updates;
- `grpc_status_for_bad_input`: a bad gRPC request gets INVALID_ARGUMENT, not UNKNOWN;
- `request_guard`: a Flask blueprint (the wrapper's `model_error_handler` hook) with a request
  size limit and 4xx JSON answers where the wrapper would answer 500.
runtime/seldon.py installs all three; each is idempotent.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Blueprint, jsonify, request
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.utils import extract_request_parts_json
from werkzeug.exceptions import HTTPException

PREDICT_PATHS = ("/predict", "/api/v1.0/predictions", "/api/v0.1/predictions")


def skip_empty_metric_updates() -> bool:
    """Make the wrapper's `SeldonMetrics.update` return at once when it has nothing to record.

    seldon-core 1.17.1 calls it after every prediction, usually with an empty list, and it then
    reads and rewrites this worker's entry in its multiprocessing-Manager dict under a
    Manager lock: six blocking IPC round trips to one shared process, which all gunicorn
    workers queue on. Profiled under load that was about half of each worker's time (for the
    constant model too). An empty update changes nothing the /metrics endpoint shows, so
    skipping it is exact. Returns False if it was already installed.
    """
    from seldon_core.metrics import SeldonMetrics

    original = SeldonMetrics.update
    if getattr(original, "skips_empty", False):
        return False

    @functools.wraps(original)
    def update(self: Any, custom_metrics: list[dict[str, Any]], method: str) -> None:
        if custom_metrics:
            original(self, custom_metrics, method)

    update.skips_empty = True  # type: ignore[attr-defined]
    SeldonMetrics.update = update  # type: ignore[method-assign]
    return True


# gRPC status for the HTTP status a SeldonMicroserviceException carries.
_GRPC_CODES = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


def grpc_status_for_bad_input() -> bool:
    """Answer a bad gRPC request with its own status, as the REST side answers a 4xx.

    seldon-core 1.17.1's gRPC servicer calls the model unguarded, so an undecodable image comes
    back as UNKNOWN ("Exception calling application") with a traceback in the log. This wraps
    `SeldonModelGRPC.Predict` to abort with INVALID_ARGUMENT (400), RESOURCE_EXHAUSTED (413),
    UNAVAILABLE (503, not loaded yet) or INTERNAL and the exception's message; anything else
    propagates as before. Returns False if it was already installed.
    """
    import grpc
    from seldon_core.wrapper import SeldonModelGRPC

    original = SeldonModelGRPC.Predict
    if getattr(original, "maps_bad_input", False):
        return False

    @functools.wraps(original)
    def predict(self: Any, request: Any, context: Any) -> Any:
        try:
            return original(self, request, context)
        except SeldonMicroserviceException as e:
            code = getattr(grpc.StatusCode, _GRPC_CODES.get(e.status_code, "INTERNAL"))
            context.abort(code, str(e.message))

    predict.maps_bad_input = True  # type: ignore[attr-defined]
    SeldonModelGRPC.Predict = predict  # type: ignore[method-assign]
    return True


def _error_body(message: str, reason: str) -> dict[str, Any]:
    # The shape SeldonMicroserviceException.to_dict() gives, so clients parse one error format.
    return {"status": {"status": 1, "info": message, "code": -1, "reason": reason}}


def _parse_json(text: str, what: str) -> Any:
    """json.loads, every failure a 400: malformed, or nested past what the decoder recurses into."""
    try:
        return json.loads(text)
    except RecursionError:
        raise SeldonMicroserviceException(f"{what} nests too deeply") from None
    except ValueError as e:
        raise SeldonMicroserviceException(f"{what} is not JSON: {e}") from None


def _check_message(body: Any) -> None:
    """A SeldonMessage's data the wrapper would parse unguarded: a 400 here instead of its 500."""
    if not isinstance(body, dict):
        return
    try:
        extract_request_parts_json(body)
    except SeldonMicroserviceException:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is the client's data
        raise SeldonMicroserviceException(f"malformed SeldonMessage data: {e}") from None


def request_guard(max_request_bytes: int) -> Blueprint:
    """Flask hooks the wrapper lacks: a request size limit, and 4xx answers for malformed forms
    and JSON that the 1.17.1 wrapper would otherwise turn into 500s (a non-binData file is
    utf-8-decoded, a form field json-parsed, a tensor reshaped, all unguarded)."""
    bp = Blueprint("request_guard", __name__)

    @bp.record_once
    def _limit(state: Any) -> None:
        state.app.config["MAX_CONTENT_LENGTH"] = max_request_bytes

    @bp.before_app_request
    def _check() -> None:
        if request.method != "POST" or request.path not in PREDICT_PATHS:
            return
        content_type = request.content_type or ""
        if "multipart/form-data" in content_type:
            files, fields = sorted(request.files), sorted(request.form)
            if files != ["binData"] or set(fields) - {"meta"}:
                raise SeldonMicroserviceException(
                    "expected a multipart file field named binData (and optionally a meta JSON "
                    f"field); got file fields {files} and text fields {fields}"
                )
            if "meta" in fields:
                _parse_json(request.form["meta"], "meta field")
            return
        # The wrapper's other channels, in its order (flask_utils.get_request): a `json` form
        # field or query argument, then the body.
        field = request.form.get("json") or request.args.get("json")
        if field:
            _check_message(_parse_json(field, "json field"))
        elif request.is_json:
            try:  # malformed JSON is left to the wrapper's own 400; nesting is not
                body = request.get_json(silent=True)
            except RecursionError:
                raise SeldonMicroserviceException("JSON body nests too deeply") from None
            _check_message(body)

    @bp.app_errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        reason = "MICROSERVICE_PAYLOAD_TOO_LARGE" if e.code == 413 else "MICROSERVICE_BAD_REQUEST"
        message = e.description or e.name
        if e.code == 413:
            message = f"request body too large: the limit is {max_request_bytes} bytes"
        response = jsonify(_error_body(message, reason))
        response.status_code = e.code or 400
        return response

    return bp
