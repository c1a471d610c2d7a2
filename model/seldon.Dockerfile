# The serving image: the MNIST CNN behind the Seldon Core v1 Python wrapper (1.17.1, Apache-2.0).
# Build from the repository root:  docker build -f model/seldon.Dockerfile -t mnist-seldon .
# Weights are not baked in: the operator's storage initializer (graph.modelUri) or a volume puts
# metadata.json + model.pt at MODEL_URI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/serve.txt /tmp/serve.txt
# CPU-only torch: the plain PyPI wheel would pull several GB of CUDA libraries.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/serve.txt \
 && rm /tmp/serve.txt

COPY model/ /app/model/
RUN useradd --uid 8888 --no-create-home --home-dir /app --shell /usr/sbin/nologin seldon \
 && chown -R 8888:0 /app && chmod -R g=u /app
USER 8888

# Defaults for a 2-core pod: one sync worker per core, one torch thread each (the network is
# small; more threads per worker only contend). GRPC_WORKERS=0: no gRPC process loading the
# model a second time. MNIST_PRECISION=int8: the network quantized with the activation ranges
# training recorded (float32 for artifacts without them). Custom metrics go to :6000/metrics,
# not into every response.
ENV MODEL_NAME=model.serving.MnistClassifier \
    SERVICE_TYPE=MODEL \
    MODEL_URI=/mnt/models \
    GUNICORN_WORKERS=2 \
    GUNICORN_THREADS=1 \
    TORCH_THREADS=1 \
    MNIST_PRECISION=int8 \
    GRPC_WORKERS=0 \
    INCLUDE_METRICS_IN_CLIENT_RESPONSE=false \
    PYTHONPATH=/app

EXPOSE 9000 6000
CMD ["sh", "-c", "exec seldon-core-microservice \"$MODEL_NAME\" --service-type \"$SERVICE_TYPE\""]
