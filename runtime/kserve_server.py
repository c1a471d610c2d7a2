"""The KServe runtime: any package's model behind KServe's ModelServer (V1 and Open Inference Protocol).

    python -m runtime.kserve_server --model_name model --http_port 8080 --grpc_port 8081 --workers 2

The flags are kserve's own (`kserve.model_server.parser`, extended here as KServe's custom
predictors do); the model's settings come from the environment exactly as for the Seldon server
(`runtime.settings.ServingSettings`: MODEL_URI, MODEL_SHA256, MODEL_PACKAGE, TORCH_THREADS,
MODEL_MAX_IMAGE_BYTES, MODEL_MAX_IMAGE_PIXELS, MODEL_MAX_BATCH); a bad value stops the server
before anything loads, naming the variable. The model is `runtime.served.ServedModel` (the
contract's class behind it), the decoding `runtime.decode`, both shared with runtime/seldon.py;
the request formats are runtime/oip.py's, what this runtime adds to kserve's app (body limit, JSON
errors, /metrics over workers, logs) runtime/kserve_app.py's.

Processes. kserve 0.21 starts only with a ready model, so the parent checks the artifact first
(sha256, MODEL_SHA256); a bad one stops the server there, exit 1. With `--workers 1` the parent
serves HTTP (and gRPC) itself, so it loads the weights. With `--workers N > 1` kserve's
RESTServerMultiProcess starts N uvicorn workers with multiprocessing's *spawn* context (fresh
interpreters, not forks) that share the parent's listening socket, and hands each one the model
by pickling it. The pickled model carries its settings only (no model state, and unpickling
imports no torch); each worker loads the weights and creates torch's thread pools itself, at its
app's startup, before its uvicorn accepts a connection (`load_pending_models`). The parent then
loads a copy of its own only for gRPC (`--enable_grpc`, on by default; the chart turns it off),
else it runs no model code at all (its PSS: about 95 MiB instead of 250). A worker that cannot
load stops the whole server (SIGUSR1 to the parent, which stops and exits 1) instead of being
restarted by kserve in a loop. (kserve's parent also kills a worker that has not answered its
liveness ping 5 s after it was spawned; without torch, unpickling takes well under that on an
idle machine, and the ping thread runs while the weights load. On a starved CPU kserve may still
kill and respawn a worker or two before they all come up.)

Endpoints (kserve's routes; the request shapes are runtime/oip.py's, from the contract):
- V1 `POST /v1/models/<name>:predict` `{"instances": [I, …]}`, each I an image `{"b64": …}` or
  `{"image": {"b64": …}}`, or one item's numbers; answers `{"predictions": [[scores], …]}`.
- V2 `POST /v2/models/<name>/infer` with exactly one of the contract's inputs (JSON or binary).
  Answers one FP32 output named as the contract's output, shape [N, labels], parameters
  `{"names": "t:0,…"}` (Seldon's column names) and `{"labels": "…"}`, with the response's
  `model_version` (sha256[:12]) and `parameters` `{"model_sha256", …the model's facts}`;
  binary when asked (`binary_data_output`, or an output's `binary_data`).
- `/v2/health/live`, `/v2/health/ready`, `/v2/models/<name>/ready` (a worker that loaded, with a
  real blank-item prediction at most once a second), `GET /v2/models/<name>` (platform pytorch,
  versions [sha256[:12]], the contract's inputs and output). OIP's metadata has no field for
  output names or custom facts, so those travel in each infer response.
- `/metrics`: kserve's histograms plus `model_predictions_total{label}`, summed over every worker
  through prometheus_client's multiprocess mode (see `kserve_app.prepare_metrics_folder`).

Bad input is a 4xx with `{"error": "…"}` (never a 500) and the worker goes on: runtime.decode's
InputError keeps its status (400; 413 for too many bytes, pixels or items); a malformed or
invalid request body is a 400; a body over MODEL_MAX_IMAGE_BYTES + 64 KiB is refused with 413
from its Content-Length header, before it is read (chunked bodies: as soon as they pass it). So a
base64 image in JSON can be at most about 3/4 of MODEL_MAX_IMAGE_BYTES; the binary extension
carries the full size.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import uuid
from typing import Any

import kserve
import numpy as np
from kserve import model_server
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter

from runtime import contract as contracts
from runtime import oip
from runtime.artifact import ArtifactError
from runtime.decode import InputError
from runtime.kserve_app import install_app_hooks, log_to_stderr, prepare_metrics_folder
from runtime.oip import BadRequest, inputs_from_v1, inputs_from_v2
from runtime.served import BadAnswer, ServedModel, UnhealthyModel, column_names
from runtime.settings import ServingSettings, SettingsError, package_folder

log = logging.getLogger("runtime.kserve_server")  # not __name__: that is __main__ under python -m

PROBE_EVERY_S = 1.0
"""Readiness runs a real (blank-image) prediction at most this often; V2 asks on every request."""
WORKER_FAILED = signal.SIGUSR1
"""What a worker that cannot load sends the parent: stop the server, exit 1."""

PREDICTIONS = Counter("model_predictions", "Items answered, by predicted label.", ["label"])


# -- the model ----------------------------------------------------------------------------------


_PENDING: list[KServeModel] = []
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


class KServeModel(kserve.Model):
    """`runtime.served.ServedModel` as a kserve.Model."""

    def __init__(self, name: str, settings: ServingSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.contract = contracts.read(package_folder())
        self.core: ServedModel | None = None  # made by load(), in the process that serves
        self._output_parameters = {
            "names": ",".join(column_names(self.contract.labels)),  # Seldon's column names
            "labels": ",".join(self.contract.labels),
        }
        self._probed_at = 0.0

    def load(self) -> bool:
        core = ServedModel(self.settings)
        core.load()
        self.core, self._probed_at, self.ready = core, time.monotonic(), True
        return self.ready

    def check(self) -> bool:
        """The parent's part when it serves no model itself (workers > 1, no gRPC): the artifact
        and MODEL_SHA256 checked without model code; each worker then loads it."""
        metadata = ServedModel(self.settings).verify()
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
        # model does not (NOTES.md: torch state created in another process deadlocks), and
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
        now = time.monotonic()
        if now - self._probed_at >= PROBE_EVERY_S:
            try:
                self.core.health()
            except (UnhealthyModel, BadAnswer) as e:
                log.error("%s", e)
                return False
            self._probed_at = now
        return True

    def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        try:
            if isinstance(payload, InferRequest):
                inputs = inputs_from_v2(payload, self.contract, self.settings)
            else:
                inputs = inputs_from_v1(payload, self.contract, self.settings)
        except InputError as e:
            raise BadRequest(e) from None
        core = self._loaded()
        rows = core.predict(inputs)
        labels = self.contract.labels
        for index, n in enumerate(np.bincount(rows.argmax(axis=1), minlength=len(labels)).tolist()):
            if n:
                PREDICTIONS.labels(label=labels[index]).inc(n)
        if not isinstance(payload, InferRequest):
            return {"predictions": rows.tolist()}
        parameters = dict(self._output_parameters)  # a copy: kserve adds binary_data_size to it
        # A list, not the array: kserve 0.21's to_grpc takes an ndarray's truth value (a 500) when
        # a gRPC request came as raw_input_contents.
        data = rows.astype(np.float32).ravel().tolist()
        output = InferOutput(
            name=self.contract.output_name, shape=list(rows.shape), datatype="FP32", data=data, parameters=parameters
        )
        return InferResponse(
            response_id=payload.id if isinstance(payload.id, str) and payload.id else uuid.uuid4().hex,
            model_name=self.name,
            model_version=core.version,
            infer_outputs=[output],
            parameters={"model_sha256": core.sha256 or "", **core.facts},
            use_binary_outputs=bool(payload.use_binary_outputs),
            requested_outputs=payload.request_outputs,
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        # OIP metadata has one datatype and shape per input: a tensor input's first datatype.
        return [
            {"name": i.name, "datatype": "BYTES", "shape": [-1]}
            if i.kind == "image"
            else {"name": i.name, "datatype": i.datatypes[0], "shape": list(i.shape)}
            for i in self.contract.inputs
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": self.contract.output_name, "datatype": "FP32", "shape": [-1, len(self.contract.labels)]}]

    @property
    def versions(self) -> list[str]:
        return [self.core.version] if self.core is not None else []

    def _loaded(self) -> ServedModel:
        if self.core is None:
            raise ModelNotReady(self.name)
        return self.core


# -- kserve's data plane, server and app, adjusted ----------------------------------------------


class ContractDataPlane(DataPlane):
    """kserve's DataPlane with our model's platform and versions in its metadata, and binary
    requests parsed without 500s."""

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, KServeModel):
            metadata.update(platform="pytorch", versions=model.versions)
        return metadata

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if isinstance(body, bytes):
            return oip.binary_request(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), model_name)
        return super().decode_inference_request(body, headers, model_name)


class ContractModelServer(kserve.ModelServer):
    """kserve's ModelServer on `ContractDataPlane` (handed to the REST workers and the gRPC server)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataplane = ContractDataPlane(model_registry=self.registered_models)


# On import, so in the server's own process (python -m) and in every spawned worker, which
# imports this module as __mp_main__ before it unpickles the model and builds kserve's app.
log_to_stderr()
install_app_hooks(model_server.app, on_startup=load_pending_models)


# -- the command --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m runtime.kserve_server",
        description="Serve the model package in MODEL_PACKAGE with KServe (V1 and Open Inference Protocol "
        "REST, OIP gRPC). Model settings come from the environment (MODEL_URI, MODEL_SHA256, ...).",
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
    try:
        model = KServeModel(args.model_name, settings)
    except contracts.ContractError as e:
        log.error("%s", e)
        return 2
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
    server = ContractModelServer(
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
