"""`mlctl apply --target podman` of a spec that brings its own weights (`weights: {dir, sha256}`):
no training Job runs, the folder lands in the claim the predictor's storage initializer reads
(pvc://), and the release's pods serve exactly those weights and answer the model's examples,
the chart's helm test pod included."""

from __future__ import annotations

import json

import pytest

from tests.containers.conftest import mlctl, write_spec


@pytest.fixture(scope="module")
def brought(tmp_path_factory) -> dict:
    """A small model trained here (one epoch on a few thousand images, seconds)."""
    spec = write_spec(
        tmp_path_factory.mktemp("brought"), **{"epochs: 5": "epochs: 1\n  limitTrain: 3000\n  limitTest: 500"}
    )
    p = mlctl("train", str(spec), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_brought_weights_are_what_the_release_pods_serve(brought, shipped, tmp_path):
    spec = write_spec(
        tmp_path,
        **{
            "release: mnist": "release: byo",
            "uri: s3://mlctl-models/mnist": "uri: pvc://byo-models/byo",
            "name: mnist\n": f"name: byo\nweights: {{dir: {brought['artifact']}, sha256: '{brought['sha256']}'}}\n",
        },
    )
    try:
        p = mlctl("apply", str(spec), "--target", "podman", "--json")
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        result = json.loads(p.stdout)
        names = [s["name"] for s in result["steps"]]
        train = next(s for s in result["steps"] if s["name"] == "train")
        assert "the spec's weights from" in train["detail"] and "pvc://byo-models/byo/byo-" in train["detail"]
        assert result["summary"]["modelSha256"] == brought["sha256"]
        assert names.count("check") == 2  # the examples, then the helm test pod
        status = json.loads(mlctl("status", str(spec), "--target", "podman", "--json").stdout)
        assert status["servingSha256"] == brought["sha256"]
        again = mlctl("apply", str(spec), "--target", "podman", "--json")
        assert json.loads(again.stdout)["changed"] is False, again.stderr[-2000:]
    finally:
        mlctl("delete", str(spec), "--target", "podman")
