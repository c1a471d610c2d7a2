"""`mlctl build [--push]`: both images from model/*.Dockerfile, content-tagged, offline from a
wheelhouse; pushed to a real registry with the spec's credentials, and pulled back with the
chart's rendered pull Secret (and refused with a wrong password)."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import yaml

from tests.containers.conftest import mlctl, podman_json, run, write_spec


def test_both_images_are_built_and_a_rebuild_is_a_no_op(shipped):
    p = mlctl("build", str(shipped), "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["engine"] == "podman" and result["deps"] == "host"
    by_role = {i["role"]: i for i in result["images"]}
    assert not any(i["built"] for i in result["images"]), "unchanged content was built again"
    for role, image in by_role.items():
        assert image["reference"].split(":")[-1] == image["content"][:12]
        labels = podman_json("image", "inspect", image["reference"])[0]["Config"]["Labels"]
        assert labels["io.mlctl.content"] == image["content"]
        print(f"\n{role} image {image['reference']}: {image['sizeBytes'] / 1e6:,.0f} MB")
    # Both images start from the same torch layer (built once, pushed once).
    layers = {
        role: podman_json("image", "inspect", i["reference"])[0]["RootFS"]["Layers"] for role, i in by_role.items()
    }
    assert len(set(layers["serving"]) & set(layers["training"])) >= 3


def test_images_run_as_non_root_with_cpu_torch(shipped):
    refs = {i["role"]: i["reference"] for i in json.loads(mlctl("build", str(shipped), "--json").stdout)["images"]}
    for role, ref in refs.items():
        assert podman_json("image", "inspect", ref)[0]["Config"]["User"] == "10001"
        out = run(
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python",
            ref,
            "-c",
            "import torch; print(torch.__version__, torch.cuda.is_available())",
        ).stdout.split()
        assert out == ["2.13.0+cpu", "False"], (role, out)


def _registry_spec(tmp_path, registry):
    return write_spec(
        tmp_path,
        **{
            "image: ghcr.io/example/mnist-train": f"image: {registry.host}/mlctl/mnist-train",
            "image: ghcr.io/example/mnist-seldon": f"image: {registry.host}/mlctl/mnist-seldon",
            "server: ghcr.io": f"server: {registry.host}",
            "username: mlctl-bot": f"username: {registry.user}",
        },
    )


def _rendered_pull_secret(spec, env) -> dict:
    """What the cluster would pull with: the chart's pull Secret, rendered by plain helm from the
    values `mlctl render --include-secrets` writes, decoded."""
    values = spec.with_name("secret-values.yaml")
    p = mlctl("render", str(spec), "--include-secrets", "-o", str(values), env=env)
    assert p.returncode == 0, p.stderr
    from tests.chart.helpers import CHART, find_helm

    out = run(
        find_helm(), "template", "mnist", str(CHART), "-f", str(values), "--show-only", "templates/secret-registry.yaml"
    ).stdout
    values.unlink()
    secret = yaml.safe_load(out)
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def _pull(ref, auth: dict, env) -> subprocess.CompletedProcess:
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"auth-{os.getpid()}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(auth, f)
    try:
        return run("podman", "pull", "--quiet", "--authfile", path, ref, check=False, env={**os.environ, **env})
    finally:
        os.unlink(path)


def test_push_to_a_real_registry_and_pull_with_the_rendered_secret(tmp_path, registry, shipped):
    spec = _registry_spec(tmp_path, registry)
    env = {**registry.env, "REGISTRY_PASSWORD": registry.password}
    p = mlctl("build", str(spec), "--push", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert registry.password not in p.stdout + p.stderr
    pushed = {i["role"]: i for i in json.loads(p.stdout)["images"]}
    for image in pushed.values():
        assert image["digest"].startswith("sha256:")
    # The release is pinned to what was pushed.
    values = yaml.safe_load(mlctl("render", str(spec), env=env).stdout)
    assert values["serving"]["image"]["digest"] == pushed["serving"]["digest"]
    assert values["training"]["image"]["digest"] == pushed["training"]["digest"]

    auth = _rendered_pull_secret(spec, env)
    assert list(auth["auths"]) == [registry.host]
    ref = f"{pushed['serving']['reference']}@{pushed['serving']['digest']}"
    ok = _pull(ref, auth, registry.env)
    assert ok.returncode == 0, ok.stderr
    wrong = json.loads(json.dumps(auth))
    entry = wrong["auths"][registry.host]
    entry["password"] = "not-the-password"
    entry["auth"] = base64.b64encode(f"{registry.user}:not-the-password".encode()).decode()
    refused = _pull(ref, wrong, registry.env)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "authentication required" in refused.stderr.lower()


def test_push_with_a_wrong_password_fails_clearly(tmp_path, registry, shipped):
    spec = _registry_spec(tmp_path, registry)
    p = mlctl("build", str(spec), "--push", env={**registry.env, "REGISTRY_PASSWORD": "wrong-password-1"})
    assert p.returncode == 1
    assert "error: pushing" in p.stderr and "failed" in p.stderr
    assert "wrong-password-1" not in p.stdout + p.stderr
