# A stand-in for docker.io/kserve/storage-initializer:v0.20.0 (Docker Hub is out of reach here),
# built the way KServe builds it (kserve/kserve v0.20.0, python/storage-initializer.Dockerfile):
# a virtual environment at /prod_venv with the `kserve-storage` package, KServe's own
# entrypoint script, user kserve (uid 1000), workdir /work, /mnt owned by that user. Differences:
# the wheels come from the build context (resolved by the host's pip, built with --network
# none), kserve-storage is installed without its GCS/Azure/Hugging Face/git clients (it imports
# them only for those schemes; see kserve-initializer.requirements.txt), and neither the
# Kerberos/HDFS extras nor the third-party licence files are added.
ARG VENV_PATH=/prod_venv

FROM python:3.11-slim AS builder
ARG VENV_PATH
COPY wheels /wheels
RUN python -m venv ${VENV_PATH} \
 && ${VENV_PATH}/bin/pip install --no-index --find-links /wheels --no-deps --no-cache-dir --quiet \
      -r /wheels/requirements.txt

FROM python:3.11-slim AS prod
ARG VENV_PATH
ENV VIRTUAL_ENV=${VENV_PATH}
ENV PATH="${VENV_PATH}/bin:$PATH"
RUN useradd kserve -m -u 1000 -d /home/kserve
COPY --from=builder --chown=kserve:kserve ${VENV_PATH} ${VENV_PATH}
COPY storage-initializer /storage-initializer
RUN chmod +x /storage-initializer/scripts/initializer-entrypoint
RUN mkdir /work
WORKDIR /work
RUN chown -R kserve:kserve /mnt
USER 1000
ENTRYPOINT ["/storage-initializer/scripts/initializer-entrypoint"]
