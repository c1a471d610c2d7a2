"""The tabular example on the podman target, both engines: `mlctl apply --target podman` builds
the runtime's images with the tabular package staged in, trains in the chart's Job, serves from
the podman stand-in store, posts the contract's examples through the engine's protocol and runs
the chart's `helm test` pod. No registry or storage credential is needed or asked for."""

from __future__ import annotations

import json

import pytest

from tests.containers.conftest import mlctl
from tests.examples.test_tabular_targets import write_spec


@pytest.mark.parametrize("engine", ["seldon", "kserve"])
def test_the_tabular_example_runs_as_the_cluster_would(tmp_path, base_image, initializer_image, engine, request):
    if engine == "kserve":
        request.getfixturevalue("kserve_initializer_image")
    spec = write_spec(tmp_path, engine, namespace=f"tabular-{engine}")
    env = {"REGISTRY_PASSWORD": "", "MLCTL_S3_ACCESS_KEY_ID": "", "MLCTL_S3_SECRET_ACCESS_KEY": ""}
    try:
        p = mlctl("apply", str(spec), "--target", "podman", "--json", env=env)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        result = json.loads(p.stdout)
        checks = [s["detail"] for s in result["steps"] if s["name"] == "check"]
        assert any(
            "normal.json → normal" in c
            and "overheat.json → overheat" in c
            and "vibration.json → vibration" in c
            and "five-features.json → HTTP 400" in c
            for c in checks
        ), checks
        assert any("helm test pod" in c and "4 examples answered" in c for c in checks), checks
        assert any(f"pumps-{engine}:" in i for i in result["summary"]["images"]), result["summary"]["images"]
        assert result["summary"]["testAccuracy"] >= 0.9
    finally:
        mlctl("delete", str(spec), "--target", "podman")
