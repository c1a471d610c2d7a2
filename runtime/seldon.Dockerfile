# The serving image: a model package behind the Seldon Core v1 Python wrapper (1.17.1, Apache-2.0).
#   mlctl build SPEC   (it stages the spec's model package as package/, its import name as PACKAGE)
# Weights are not baked in: the storage initializer (graph.modelUri) or a volume puts
# metadata.json + model.pt at MODEL_URI.
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
# torch alone first, in the same steps as runtime/train.Dockerfile: both images share this layer.
COPY requirements/constraints.txt /tmp/requirements/constraints.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/constraints.txt
COPY requirements/serve.txt /tmp/requirements/serve.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/serve.txt -c /tmp/requirements/constraints.txt

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
RUN useradd --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin seldon \
 && chown -R 10001:0 /app && chmod -R g=u /app
USER 10001

# Defaults for a 2-core pod: one sync worker per core, one torch thread each (the network is
# small; more threads per worker only contend). GRPC_WORKERS=1: one gRPC process (about 40 MB)
# answers Seldon's gRPC API on the port the operator declares. MODEL_PRECISION=int8: the network quantized with the activation ranges
# training recorded (float32 for artifacts without them). Custom metrics go to :6000/metrics,
# not into every response.
ENV MODEL_NAME=runtime.seldon.Model \
    SERVICE_TYPE=MODEL \
    MODEL_URI=/mnt/models \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=1 \
    TORCH_THREADS=1 \
    GRPC_WORKERS=1 \
    INCLUDE_METRICS_IN_CLIENT_RESPONSE=false \
    PYTHONPATH=/app

EXPOSE 9000 6000
CMD ["sh", "-c", "exec seldon-core-microservice \"$MODEL_NAME\" --service-type \"$SERVICE_TYPE\""]
