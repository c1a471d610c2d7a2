"""What the KServe runtime adds to kserve's FastAPI app, and the process-wide settings around it:
a request-body limit enforced before the body is read, JSON 4xx answers for bad requests,
/metrics summed over every worker (prometheus_client's multiprocess mode), and model.* logs in
kserve's format. runtime/kserve_server.py installs these on kserve's app at import, so in the
server's own process and in every spawned worker.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.logging import KSERVE_LOGGER_DATE_FORMAT, KSERVE_LOGGER_FORMAT
from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.oip import BadRequest, problems
from runtime.settings import REQUEST_OVERHEAD_BYTES, ServingSettings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class BodyLimit:
    """Refuse request bodies over MODEL_MAX_IMAGE_BYTES + 64 KiB with a JSON 413: from the
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
        message = f"request body too large: {size} bytes, the limit is {self.limit} (MODEL_MAX_IMAGE_BYTES + 64 KiB)"
        await JSONResponse({"error": message}, status_code=413, headers={"connection": "close"})(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


async def _bad_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": exc.reason}, status_code=exc.status)


async def _invalid_body(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": f"invalid inference request: {problems(exc.errors())}"}, status_code=400)


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


def install_app_hooks(app: FastAPI, on_startup: Callable[[], None]) -> None:
    """Our additions to kserve's FastAPI app: the body limit, JSON 4xx answers for bad requests,
    the multiprocess-aware /metrics (registered before kserve's, so it answers) and the startup
    handler that loads a spawned worker's model."""
    if getattr(app.state, "runtime_hooks", False):
        return
    app.state.runtime_hooks = True
    app.add_middleware(BodyLimit)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.router.add_event_handler("startup", on_startup)


def log_to_stderr() -> None:
    """runtime.* logs (which weights each process loads) in kserve's format; kserve configures
    its own loggers only."""
    logger = logging.getLogger("runtime")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(KSERVE_LOGGER_FORMAT, KSERVE_LOGGER_DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


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
        folder = tempfile.mkdtemp(prefix="model-prometheus-")
        os.environ[MULTIPROC_ENV] = folder
        atexit.register(shutil.rmtree, folder, True)
        return folder
    return None
