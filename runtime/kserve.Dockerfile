# The KServe serving image: a model package behind KServe's ModelServer (kserve 0.21.0, Apache-2.0),
# runtime/kserve_server.py: KServe V1 and Open Inference Protocol (V2) REST on 8080 (and /metrics),
# OIP gRPC on 8081. No seldon-core inside.
#   mlctl build SPEC   (serving.engine: kserve; it stages the spec's model package as package/)
# Weights are not baked in: KServe's storage initializer or a volume puts metadata.json + model.pt
# at MODEL_URI (/mnt/models).
#
# The start command reads these (an InferenceService may instead give the command and flags itself,
# as the chart does):
#   MODEL_NAME (model)      the model's name in /v1/models/<name>:predict and /v2/models/<name>/...
#   HTTP_PORT (8080), GRPC_PORT (8081)   KServe's default ports
#   WORKERS (2)             uvicorn worker processes: one per core of a 2-core pod; each spawned
#                           worker loads the weights itself (the parent does too, for gRPC)
#   ENABLE_GRPC (true)      the OIP gRPC server on GRPC_PORT (false: REST only, one port)
# and the model's settings, as for the Seldon image (runtime/settings.py): MODEL_URI, MODEL_SHA256,
# MODEL_PRECISION, TORCH_THREADS, MODEL_MAX_IMAGE_BYTES, MODEL_MAX_IMAGE_PIXELS, MODEL_MAX_BATCH.
# PROMETHEUS_MULTIPROC_DIR: where every process's metrics go, so /metrics sums the workers; it
# must be writable (the chart mounts an emptyDir at /tmp), and is emptied at start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Where pip finds packages. The default takes the CPU-only torch from PyTorch's index (PyPI's
# wheel would pull several GB of CUDA libraries); `mlctl build` passes
# "--no-index --find-links /wheels" and a wheelhouse resolved on the host, with no network.
ARG PIP_INSTALL_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"

WORKDIR /app
# torch alone first, in the same steps as runtime/train.Dockerfile and runtime/seldon.Dockerfile: the
# images share this layer.
COPY requirements/constraints.txt /tmp/requirements/constraints.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/constraints.txt
COPY requirements/kserve.txt /tmp/requirements/kserve.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/kserve.txt -c /tmp/requirements/constraints.txt

# The model package's own requirements, then the runtime, then the package itself (`mlctl build`
# stages the spec's package as package/ and passes its import name as PACKAGE).
ARG PACKAGE=model
COPY package/requirements.txt /tmp/requirements/package.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/package.txt -c /tmp/requirements/constraints.txt \
 && rm -rf /tmp/requirements
COPY runtime/ /app/runtime/
COPY package/ /app/${PACKAGE}/
ENV MODEL_PACKAGE=/app/${PACKAGE}
# uid 10001: non-root and above the range host users have (the chart runs the pod as it too).
RUN useradd --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin kserve \
 && chown -R 10001:0 /app && chmod -R g=u /app
USER 10001

# Defaults for a 2-core pod: two workers, one torch thread each (the network is small; more
# threads per worker only contend). MODEL_PRECISION=int8: the network quantized with the
# activation ranges training recorded (float32 for artifacts without them).
ENV MODEL_NAME=model \
    HTTP_PORT=8080 \
    GRPC_PORT=8081 \
    WORKERS=2 \
    ENABLE_GRPC=true \
    MODEL_URI=/mnt/models \
    TORCH_THREADS=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc \
    PYTHONPATH=/app

EXPOSE 8080 8081
CMD ["sh", "-c", "exec python -m runtime.kserve_server --model_name \"$MODEL_NAME\" --http_port \"$HTTP_PORT\" --grpc_port \"$GRPC_PORT\" --workers \"$WORKERS\" --enable_grpc \"$ENABLE_GRPC\""]
