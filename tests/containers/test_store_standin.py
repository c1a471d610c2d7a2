"""mlctl's stand-in store for the podman target, for real: started once, reused, recreated with
the spec's new keys (its objects kept), signatures checked against them, the keys in no
container configuration; a container already answering the name is used as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlctl.secrets import Secrets
from mlctl.targets.podman import store as podman_store
from tests.containers.conftest import S3_HOST, podman_json, run
from tests.helpers import shipped_spec

HOST = "minio.standin-test.svc.cluster.local"
RCLONE = str(Path(sys.executable).with_name("rclone"))


def keys(key: str, secret: str) -> Secrets:
    return Secrets(storage_access_key_id=key, storage_secret_access_key=secret)


def put(port: int, secrets: Secrets, source: Path, dest: str) -> subprocess.CompletedProcess:
    """`rclone copyto` into the store through its published port, signed with `secrets`."""
    env = {
        **os.environ,
        "RCLONE_CONFIG_T_TYPE": "s3",
        "RCLONE_CONFIG_T_PROVIDER": "Minio",
        "RCLONE_CONFIG_T_ENDPOINT": f"http://127.0.0.1:{port}",
        "RCLONE_CONFIG_T_ACCESS_KEY_ID": secrets.storage_access_key_id,
        "RCLONE_CONFIG_T_SECRET_ACCESS_KEY": secrets.storage_secret_access_key,
    }
    argv = [RCLONE, "copyto", str(source), f"t:{dest}", "--s3-no-check-bucket", "--retries", "1"]
    return subprocess.run([*argv, "--low-level-retries", "1"], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def spec(tmp_path, base_image, network):
    from mlctl.specload import load_spec

    path = shipped_spec(tmp_path, **{"minio.minio-system.svc.cluster.local": HOST})
    endpoint = podman_store.cluster_endpoint(load_spec(path))
    yield load_spec(path)
    podman_store._remove(endpoint.container)


def test_started_once_reused_and_recreated_with_new_keys(spec, tmp_path):
    endpoint = podman_store.cluster_endpoint(spec)
    first, second = keys("key-one", "secret-one"), keys("key-two", "secret-two")
    assert podman_store.state(spec) == f"would start {endpoint.container}"
    status, detail = podman_store.ensure(spec, first)
    assert status == "changed" and f"as {HOST}" in detail
    assert podman_store.ensure(spec, first)[0] == "up to date"
    assert podman_store.state(spec) == f"container {endpoint.container} answers {HOST}"

    def port() -> int:
        return int(run("podman", "port", endpoint.container, "9000/tcp").stdout.split()[0].rsplit(":", 1)[1])

    (tmp_path / "f.txt").write_text("weights")
    assert put(port(), first, tmp_path / "f.txt", "mlctl-models/mnist/a.txt").returncode == 0
    refused = put(port(), second, tmp_path / "f.txt", "mlctl-models/mnist/b.txt")
    assert refused.returncode != 0 and "403" in refused.stderr

    assert podman_store.ensure(spec, second)[0] == "changed"  # the spec's keys changed
    assert put(port(), second, tmp_path / "f.txt", "mlctl-models/mnist/b.txt").returncode == 0
    assert put(port(), first, tmp_path / "f.txt", "mlctl-models/mnist/c.txt").returncode != 0
    data = spec.training.output.parent / "podman" / "stores" / HOST / "mlctl-models" / "mnist"
    assert sorted(p.name for p in data.iterdir()) == ["a.txt", "b.txt"]  # the objects outlive the container
    config = json.dumps(podman_json("inspect", endpoint.container))
    assert "secret-one" not in config and "secret-two" not in config


def test_a_container_answering_the_name_is_used_as_it_is(s3, tmp_path, base_image):
    from mlctl.specload import load_spec

    spec = load_spec(shipped_spec(tmp_path, **{"minio.minio-system.svc.cluster.local": S3_HOST}))
    assert podman_store.ensure(spec, keys("any", "thing")) == (
        "up to date",
        f"container {s3.container} answers {S3_HOST}",
    )
