"""The README's podman path as a newcomer takes it: a fresh clone, the README's commands as
written (their dummy keys, no registry password), nothing set up by hand. The shipped spec's
store is an S3 endpoint inside the cluster; mlctl starts the S3 server that answers it, the
training Job uploads into it, the storage initializer downloads from it, the pod serves.

The README's one-time system step (scripts/setup-containers.sh) is what `.ci/run`'s test command
has already run on this machine; the test checks the README names it and leaves it at that."""

from __future__ import annotations

import json
import subprocess

import pytest

from mlctl.targets.podman import store as podman_store
from tests.containers.conftest import SHIPPED_S3_HOST, podman_json, run
from tests.helpers import fresh_clone, readme_commands

pytestmark = [pytest.mark.slow, pytest.mark.registries]
SECTION = "Running the release's pods here (podman)"
STORE = podman_store.StoreEndpoint(SHIPPED_S3_HOST, 9000, "mlctl-models").container


def _remove_store() -> None:
    for c in podman_json("ps", "-a", "--format", "json", "--filter", f"name={STORE}") or []:
        run("podman", "rm", "--force", "--time", "1", c["Names"][0], check=False)
    for secret in run("podman", "secret", "ls", "--format", "{{.Name}}").stdout.split():
        if secret.startswith(f"{STORE}-keys-"):
            run("podman", "secret", "rm", secret, check=False)


def test_the_shipped_spec_on_podman_from_a_fresh_clone(tmp_path, standin_images):
    system, newcomer = readme_commands(SECTION)
    assert system.strip() == "bash scripts/setup-containers.sh"
    assert "REGISTRY_PASSWORD" not in newcomer and "--target podman" in newcomer
    _remove_store()  # nothing stands where the spec points until mlctl starts it
    clone, env = fresh_clone(tmp_path / "ws")
    env.pop("REGISTRY_PASSWORD", None)
    env.pop("MLCTL_S3_ACCESS_KEY_ID", None)
    env.pop("MLCTL_S3_SECRET_ACCESS_KEY", None)
    try:
        p = subprocess.run(["bash", "-c", newcomer], cwd=clone, env=env, capture_output=True, text=True, timeout=2400)
        print(f"\nthe newcomer's apply --target podman:\n{p.stderr[-4000:]}")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert f"started {STORE} as {SHIPPED_S3_HOST}" in p.stderr
        assert "digit-7.png → 7 (p=" in p.stderr and "not-an-image.txt → HTTP 400" in p.stderr
        stored = clone / ".mlctl" / "podman" / "stores" / SHIPPED_S3_HOST / "mlctl-models" / "mnist"
        (model,) = list(stored.iterdir())  # the model's own folder, <name>-<hash12>
        assert sorted(f.name for f in model.iterdir()) == ["metadata.json", "model.pt"]
        # The keys reach the store as a file: no container configuration holds them.
        secret = newcomer.split("MLCTL_S3_SECRET_ACCESS_KEY=", 1)[1].split()[0]
        assert secret not in json.dumps(podman_json("inspect", STORE))

        again = subprocess.run(
            ["bash", "-c", newcomer.splitlines()[0] + " && .venv/bin/mlctl apply spec/mnist.yaml --target podman"],
            cwd=clone, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"= store     container {STORE} answers {SHIPPED_S3_HOST}" in again.stderr
        assert "= train" in again.stderr
    finally:
        subprocess.run(
            [str(clone / ".venv" / "bin" / "mlctl"), "delete", "spec/mnist.yaml", "--target", "podman"],
            cwd=clone,
            env=env,
            capture_output=True,
        )
        _remove_store()
