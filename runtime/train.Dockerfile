# The training image: a model package's training command (the contract's training.command), the
# same command mlctl's local runner uses.
#   mlctl build SPEC   (it stages the spec's model package as package/, its import name as PACKAGE)
#   docker run --rm -v "$PWD/data:/data:ro" -v "$PWD/out:/out" IMAGE python -m PACKAGE.train \
#       --data-dir /data --out /out/model
#
# CPU build (default): torch 2.13.0 from the CPU wheel index, ~200 MB instead of several GB.
# GPU variant: use a CUDA runtime base (e.g. nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 with
# python3.11 installed) and build with
# --build-arg PIP_INSTALL_ARGS="--extra-index-url https://download.pytorch.org/whl/cu128";
# the entrypoint then picks CUDA + autocast by itself (--device auto).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Where pip finds packages (see runtime/seldon.Dockerfile): `mlctl build` builds offline from a
# wheelhouse.
ARG PIP_INSTALL_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"

WORKDIR /app
# torch alone first, in the same steps as runtime/seldon.Dockerfile: both images share this layer.
COPY requirements/constraints.txt /tmp/requirements/constraints.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/constraints.txt
COPY requirements/train.txt /tmp/requirements/train.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/train.txt -c /tmp/requirements/constraints.txt

# Only the model package: it never imports mlctl.
# The model package's own requirements, then the runtime, then the package itself (`mlctl build`
# stages the spec's package as package/ and passes its import name as PACKAGE).
ARG PACKAGE=model
COPY package/requirements.txt /tmp/requirements/package.txt
RUN pip install $PIP_INSTALL_ARGS -r /tmp/requirements/package.txt -c /tmp/requirements/constraints.txt \
 && rm -rf /tmp/requirements
COPY runtime/ /app/runtime/
COPY package/ /app/${PACKAGE}/
ENV MODEL_PACKAGE=/app/${PACKAGE}

# uid 10001: non-root, and above the range host users usually have. The Job's pod runs it as
# the chart's runAsUser.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app trainer
USER 10001

# No entrypoint: the command is the contract's training.command, which the chart's Job (and
# mlctl's podman target) run with the spec's flags, e.g. [python, -m, PACKAGE.train] --out /out/model.
