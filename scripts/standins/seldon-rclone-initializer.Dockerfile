# A stand-in for seldonio/rclone-storage-initializer:1.17.1 (Docker Hub is out of reach here),
# built the way Seldon builds it (components/rclone-storage-initializer/Dockerfile, v1.17.1):
# the rclone binary, the same environment, uid 8888, entrypoint `rclone copy`. Seldon's carries
# rclone 1.59.1 on UBI 8; this one carries the build context's rclone (Debian's 1.60.1).
FROM python:3.11-slim
COPY rclone /usr/local/bin/rclone
ENV RCLONE_CONFIG_GS_TYPE="google cloud storage" \
    RCLONE_CONFIG_GS_ANONYMOUS=true \
    RCLONE_VERBOSE=1
USER 8888
ENTRYPOINT ["rclone", "copy"]
