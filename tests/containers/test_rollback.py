"""One model, one folder, under podman: model A, then B (one hyper-parameter changed), then a
rollback serves A again, proven by the digest in the pod's answers; the store keeps every model
and `mlctl models` says which revision serves which."""

from __future__ import annotations

import json

import pytest

from mlctl.predict import predict_image
from tests.containers.conftest import mlctl, write_spec
from tests.helpers import REPO

SAMPLE = REPO / "model" / "examples" / "digit-7.png"
QUICK = {
    "  epochs: 5": "  epochs: 1\n  limitTrain: 10000\n  limitTest: 2000",
    "  release: mnist": "  release: quick",
    "  namespace: models": "  namespace: rollback",
}


def _spec(folder, seed: int):
    return write_spec(folder, **QUICK, **{"  seed: 1": f"  seed: {seed}"})


def _apply(spec) -> dict:
    p = mlctl("apply", str(spec), "--target", "podman", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)["summary"]


def _served(url: str) -> str:
    return predict_image(url.rsplit("/api/", 1)[0], SAMPLE).raw["meta"]["tags"]["model_sha256"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory, shipped, s3):
    folder = tmp_path_factory.mktemp("quick")
    yield folder
    mlctl("delete", str(_spec(folder, 1)), "--target", "podman")


def test_rollback_serves_the_earlier_weights_again(quick, s3):
    a = _apply(_spec(quick, 1))
    assert _served(a["url"]) == a["modelSha256"]
    b = _apply(_spec(quick, 2))
    assert b["modelSha256"] != a["modelSha256"] and b["modelUri"] != a["modelUri"]
    assert _served(b["url"]) == b["modelSha256"]

    p = mlctl("rollback", str(_spec(quick, 2)), "--target", "podman", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    back = json.loads(p.stdout)
    assert (back["to"], back["revision"]) == (1, 3)
    assert back["modelSha256"] == a["modelSha256"] and _served(back["url"]) == a["modelSha256"]
    print(
        f"\nrollback: model A {a['modelSha256'][:12]} → B {b['modelSha256'][:12]} → rollback → "
        f"{_served(back['url'])[:12]} served, from {back['modelUri']}"
    )

    c = _apply(_spec(quick, 3))  # a third model: the store keeps all three
    models = mlctl(
        "models",
        str(_spec(quick, 3)),
        "--target",
        "podman",
        "--json",
        env={"MLCTL_S3_ENDPOINT": f"http://127.0.0.1:{s3.port}"},
    )
    assert models.returncode == 0, models.stderr
    listing = json.loads(models.stdout)
    stored = {m["sha256"] for m in listing["stored"] if isinstance(listing["stored"], list)}
    assert {a["modelSha256"], b["modelSha256"], c["modelSha256"]} <= stored, listing["stored"]
    assert [r["modelSha256"] for r in listing["revisions"]] == [
        a["modelSha256"],
        b["modelSha256"],
        a["modelSha256"],
        c["modelSha256"],
    ]
    text = mlctl(
        "models", str(_spec(quick, 3)), "--target", "podman", env={"MLCTL_S3_ENDPOINT": f"http://127.0.0.1:{s3.port}"}
    ).stdout
    print("\n" + text)
