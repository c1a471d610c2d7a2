# syntax=docker/dockerfile:1
# The training image: runs `python -m model.train`, the same entrypoint mlctl's local runner uses.
#   docker build -f model/train.Dockerfile -t mnist-train .
#   docker run --rm -v "$PWD/data:/data" -v "$PWD/out:/out" mnist-train \
#       --data-dir /data --download --out /out/artifact
#
# CPU build (default): torch 2.13.0 from the CPU wheel index, ~200 MB instead of several GB.
# GPU variant: use a CUDA runtime base (e.g. nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 with
# python3.11 installed) and build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128;
# the entrypoint then picks CUDA + autocast by itself (--device auto).
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements/train.txt requirements/constraints.txt /tmp/requirements/
RUN pip install --extra-index-url "${TORCH_INDEX}" \
        -r /tmp/requirements/train.txt -c /tmp/requirements/constraints.txt \
    && rm -rf /tmp/requirements

# Only the model package: it never imports mlctl.
COPY model/ /app/model/

# uid 10001: non-root, and above the range host users usually have.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app trainer
USER 10001

ENTRYPOINT ["python", "-m", "model.train"]
