"""`mlctl apply --target podman` with `serving.engine: kserve`: the chart's training Job in the
training image → the model in a real S3 server → KServe's own storage initializer (the
`kserve-storage` package behind KServe's entrypoint) with the rendered Secret → the KServe
predictor under its securityContext, answering the Open Inference Protocol (V2) from the weights
the release names; the chart's `helm test` pod through the Service's port 80; status, delete.

The training is small (one epoch on 10 000 images, the settings of test_rollback.py's first
model, so both put the same folder in the session's store).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from mlctl.predict import predict_image
from mlctl.specload import load_contract
from tests.containers.conftest import CREDS, KSERVE_INITIALIZER, mlctl, podman_json, run, write_spec
from tests.helpers import MNIST_DIR, REPO

NAMESPACE = "kserve"
KSERVE = {
    "  engine: seldon": "  engine: kserve",
    "  epochs: 5": "  epochs: 1\n  limitTrain: 10000\n  limitTest: 2000",
    "  namespace: models": f"  namespace: {NAMESPACE}",
}
SAMPLE = REPO / "model" / "examples" / "digit-7.png"
N_IMAGES = 200


def summary(p) -> dict:
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return json.loads(p.stdout)


def steps(result: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in result["steps"]:
        out.setdefault(s["name"], []).append(s["status"])
    return out


def messages(result: dict, step: str) -> list[str]:
    return [s["detail"] for s in result["steps"] if s["name"] == step]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return write_spec(tmp_path_factory.mktemp("kserve"), **KSERVE)


def _release_pods() -> list[dict]:
    return podman_json("pod", "ps", "--format", "json", "--filter", f"label=io.mlctl.namespace={NAMESPACE}") or []


@pytest.fixture(scope="module")
def applied(spec, base_image, kserve_initializer_image, s3):
    """The first apply: builds the images, trains in the image, serves, checks (V2, helm test)."""
    mlctl("delete", str(spec), "--target", "podman")  # pods an interrupted run left: this apply starts its own
    try:
        started = time.monotonic()
        result = summary(mlctl("apply", str(spec), "--target", "podman", "--json"))
        result["wall_s"] = time.monotonic() - started
        print(f"\nfirst apply --target podman (engine kserve): {result['wall_s']:.0f} s")
        for step in result["steps"]:
            print(f"  {step['name']}: {step['status']}: {step['detail']}")
        yield result
    finally:
        mlctl("delete", str(spec), "--target", "podman")


def _pod() -> dict:
    (pod,) = [p for p in _release_pods() if p["Labels"].get("io.mlctl.role") == "predictor"]
    return pod


def _container(suffix: str) -> dict:
    (name,) = [c["Names"] for c in _pod()["Containers"] if c["Names"].endswith(f"-{suffix}")]
    return podman_json("inspect", name)[0]


def test_the_job_trained_in_the_image_and_uploaded_the_model(applied, s3):
    s = applied["summary"]
    assert [st["name"] for st in applied["steps"]][:6] == ["validate", "store", "images", "images", "train", "serve"]
    assert any(i.startswith("ghcr.io/example/mnist-kserve:") for i in s["images"]), s["images"]
    assert (steps(applied)["train"], steps(applied)["serve"]) == (["changed"], ["changed"])
    assert s["testAccuracy"] >= 0.9
    folder = s["modelUri"].removeprefix("s3://mlctl-models/")
    assert folder.startswith("mnist/mnist-")
    assert {f"{folder}/model.pt", f"{folder}/metadata.json"} <= set(s3.objects("mlctl-models"))
    assert json.loads((s3.data / "mlctl-models" / folder / "metadata.json").read_text())["sha256"] == s["modelSha256"]


def test_kserves_storage_initializer_downloaded_the_model(applied, s3):
    """KServe's own code did it: its entrypoint's and kserve_storage's log lines, in the image the
    chart names, under the init container's securityContext; the bytes in /mnt/models are the
    store's."""
    uri = applied["summary"]["modelUri"]
    folder = uri.removeprefix("s3://mlctl-models/")
    init = _container("storage-initializer")
    assert init["ImageName"] == KSERVE_INITIALIZER
    image = podman_json("image", "inspect", KSERVE_INITIALIZER)[0]["Config"]
    assert image["Entrypoint"] == ["/storage-initializer/scripts/initializer-entrypoint"] and image["User"] == "1000"
    # The image's entrypoint with the chart's args, as the pod's runAsUser (not the image's 1000).
    assert [init["Path"], *init["Args"]] == [*image["Entrypoint"], uri, "/mnt/models"]
    assert init["State"]["ExitCode"] == 0 and init["State"]["Status"] == "exited"
    assert init["Config"]["User"] == "10001:10001" and init["HostConfig"]["ReadonlyRootfs"] is True
    assert init["EffectiveCaps"] in (None, []) and "no-new-privileges" in init["HostConfig"]["SecurityOpt"]
    log = run("podman", "logs", init["Name"]).stderr + run("podman", "logs", init["Name"]).stdout
    print(f"\nthe storage initializer's log:\n{log}")
    for line in (
        f"storage.initializer INFO [initializer-entrypoint:<module>():34] Initializing, args: (src_uri, dest_path): "
        f"[('{uri}', '/mnt/models')]",
        f"[kserve_storage.py:download():168] Copying contents of {uri} to local",
        f"[kserve_storage.py:_download_s3():538] Found S3 object: {folder}/model.pt",
        f"[kserve_storage.py:_download_s3():590] Downloaded object {folder}/model.pt",
        f"[kserve_storage.py:download():243] Successfully copied {uri} to /mnt/models",
    ):
        assert line in log, line
    assert CREDS["MLCTL_S3_SECRET_ACCESS_KEY"] not in log
    # The emptyDir the initializer wrote and kserve-container reads: the store's bytes.
    (mount,) = [m for m in _container("kserve-container")["Mounts"] if m["Destination"] == "/mnt/models"]
    assert mount["RW"] is False
    for name in ("model.pt", "metadata.json"):
        served = hashlib.sha256((Path(mount["Source"]) / name).read_bytes()).hexdigest()
        stored = hashlib.sha256((s3.data / "mlctl-models" / folder / name).read_bytes()).hexdigest()
        assert served == stored, name


def test_the_predictor_runs_as_the_rendered_security_context_says(applied):
    c = _container("kserve-container")
    config, host = c["Config"], c["HostConfig"]
    print(
        "\nkserve-container: "
        + json.dumps(
            {
                "User": config["User"],
                "ReadonlyRootfs": host["ReadonlyRootfs"],
                "SecurityOpt": host["SecurityOpt"],
                "EffectiveCaps": c["EffectiveCaps"],
                "CapDrop": host.get("CapDrop"),
                "GroupAdd": host["GroupAdd"],
                "command": [c["Path"], *c["Args"]],
            }
        )
    )
    assert config["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert c["EffectiveCaps"] in (None, [])  # capabilities: drop ALL
    assert "10001" in [str(g) for g in host["GroupAdd"]]  # fsGroup
    assert [c["Path"], *c["Args"]] == [
        "python", "-m", "runtime.kserve_server", "--model_name=mnist", "--http_port=8080", "--workers=2",
        "--enable_grpc=false",
    ]  # fmt: skip
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["MODEL_SHA256"] == applied["summary"]["modelSha256"] and env["MODEL_URI"] == "/mnt/models"
    assert CREDS["MLCTL_S3_SECRET_ACCESS_KEY"] not in json.dumps(c)


def test_the_sample_check_and_the_helm_test_pod_speak_v2(applied):
    s = applied["summary"]
    assert steps(applied)["check"] == ["ok", "ok"]
    sample, helm_test = messages(applied, "check")
    assert sample.startswith("digit-7.png → 7 (p="), sample
    assert sample.endswith("not-an-image.txt → HTTP 400, too-many-pixels.png → HTTP 413"), sample
    n = len(load_contract(REPO / "model").examples)
    assert helm_test == f"helm test pod mnist-test-predict: {n} examples answered as the model contract says", helm_test
    assert (s["protocol"], s["url"]) == ("v2", s["baseUrl"] + "/v2/models/mnist/infer")
    answer = predict_image(s["baseUrl"], SAMPLE, protocol="v2", model="mnist")
    assert (answer.cls, answer.model_sha256) == (7, s["modelSha256"])
    assert answer.raw["model_name"] == "mnist" and answer.raw["model_version"] == s["modelSha256"][:12]


def test_the_pod_answers_mnist_through_v2(applied):
    import io

    from PIL import Image

    from model.data import load_mnist

    data, base = load_mnist(MNIST_DIR), applied["summary"]["baseUrl"]
    idx = range(0, 10_000, 10_000 // N_IMAGES)
    correct = 0
    for i in idx:
        buf = io.BytesIO()
        Image.fromarray(data.test_x[i]).save(buf, format="PNG")
        correct += predict_image(base, buf.getvalue(), protocol="v2", model="mnist").cls == int(data.test_y[i])
    print(f"\nthe KServe pod answered {correct}/{len(idx)} MNIST test images (PNG, V2) correctly")
    assert correct / len(idx) >= 0.9


def test_a_second_apply_changes_nothing(applied, spec):
    again = summary(mlctl("apply", str(spec), "--target", "podman", "--json"))
    assert not again["changed"], steps(again)
    assert steps(again) == {
        "validate": ["ok"],
        "store": ["up to date"],  # the suite's S3 server answers the spec's endpoint
        "images": ["up to date", "up to date"],
        "train": ["up to date"],
        "serve": ["up to date"],
        "check": ["ok", "ok"],
    }


def test_a_dry_run_plans_from_what_is_there(applied, spec):
    plan = summary(mlctl("apply", str(spec), "--target", "podman", "--dry-run", "--json"))
    assert steps(plan) == {
        "validate": ["ok"],
        "store": ["up to date"],  # the suite's S3 server answers the spec's endpoint
        "images": ["up to date", "up to date"],
        "train": ["up to date"],
        "serve": ["up to date"],
        "check": ["planned"],
    }


def test_status_reads_the_served_digest_through_v2(applied, spec):
    status = summary(mlctl("status", str(spec), "--target", "podman", "--json"))
    print(f"\nmlctl status: {json.dumps(status)}")
    assert status["servingSha256"] == status["trainedSha256"] == applied["summary"]["modelSha256"]
    assert status["url"] == applied["summary"]["url"]
    (pod,) = status["pods"]
    assert pod["role"] == "predictor" and pod["containers"]["kserve-container"] == "running"


def test_delete_removes_the_pods_and_keeps_the_store(applied, spec, s3):
    p = mlctl("delete", str(spec), "--target", "podman")
    assert p.returncode == 0, p.stderr
    assert "removed 1 pod(s)" in p.stdout
    assert not _release_pods()
    folder = applied["summary"]["modelUri"].removeprefix("s3://mlctl-models/")
    assert f"{folder}/model.pt" in s3.objects("mlctl-models")
    status = summary(mlctl("status", str(spec), "--target", "podman", "--json"))
    assert status["pods"] == [] and "trainedSha256" not in status
