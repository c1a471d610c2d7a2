"""`mlctl apply --target podman` on the shipped spec: the chart's training Job in the training
image → the model in a real S3 server → Seldon's storage initializer with the rendered Secret →
the model container under its securityContext, answering real MNIST digits; the chart's own
`helm test` pod; status, delete; and the failure paths, each converging on the next apply.

The first apply runs once (`applied`); a test that needs the predictor serving asks for
`serving`, which applies again when an earlier test left it removed or replaced, so each test
runs alone (`-k`) or in any order."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlctl.predict import predict_image
from tests.containers.conftest import CREDS, mlctl, podman_json, run
from tests.helpers import MNIST_DIR

N_IMAGES = 300  # a few hundred per format: a 99 % model cannot fall under 98.5 % by luck here


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def summary(p) -> dict:
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return json.loads(p.stdout)


def steps(p) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in json.loads(p.stdout)["steps"]:
        out.setdefault(s["name"], []).append(s["status"])
    return out


@pytest.fixture(scope="module")
def applied(shipped, s3):
    """The first apply: trains in the image (the shipped spec's 5 epochs), serves, checks."""
    started = time.monotonic()
    p = mlctl("apply", str(shipped), "--target", "podman", "--json")
    result = summary(p)
    result["wall_s"] = time.monotonic() - started
    print(f"\nfirst apply --target podman: {result['wall_s']:.0f} s; steps {steps(p)}")
    return result


@pytest.fixture
def serving(applied, shipped) -> dict:
    """`mlctl status` of the release, its predictor serving the first apply's model (applied
    again when it is not)."""
    wanted = applied["summary"]["modelSha256"]

    def status() -> dict:
        return summary(mlctl("status", str(shipped), "--target", "podman", "--json"))

    now = status()
    if now.get("servingSha256") != wanted:
        again = mlctl("apply", str(shipped), "--target", "podman", "--json")
        assert steps(again)["train"] == ["up to date"], steps(again)
        now = status()
    assert now.get("servingSha256") == wanted, now
    return now


def test_apply_trains_in_the_image_and_puts_the_model_in_the_store(applied, s3):
    s = applied["summary"]
    assert [st["name"] for st in applied["steps"]][:6] == ["validate", "store", "images", "images", "train", "serve"]
    assert {st["name"]: st["status"] for st in applied["steps"]}["train"] == "changed"
    assert s["testAccuracy"] >= 0.99
    folder = f"mnist/{s['modelUri'].rsplit('/', 1)[-1]}"  # the model's own folder, <name>-<hash12>
    assert folder.startswith("mnist/mnist-")
    assert {f"{folder}/model.pt", f"{folder}/metadata.json"} <= set(s3.objects("mlctl-models"))
    meta = json.loads((s3.data / "mlctl-models" / folder / "metadata.json").read_text())
    assert meta["sha256"] == s["modelSha256"]


def test_the_pod_answers_mnist_as_png_and_jpeg(applied, serving):
    from model.data import load_mnist

    data = load_mnist(MNIST_DIR)
    base = serving["url"].rsplit("/api/", 1)[0]
    idx = range(0, 10_000, 10_000 // N_IMAGES)
    for fmt in ("PNG", "JPEG"):
        correct = sum(predict_image(base, encode(data.test_x[i], fmt)).cls == int(data.test_y[i]) for i in idx)
        print(f"\nthe pod answered {correct}/{len(idx)} MNIST test images sent as {fmt} correctly")
        assert correct / len(idx) >= 0.985, f"{correct}/{len(idx)} as {fmt}"
    answer = predict_image(base, encode(data.test_x[0], "PNG")).raw
    assert answer["meta"]["tags"]["model_sha256"] == applied["summary"]["modelSha256"]
    assert answer["data"]["names"] == [f"t:{i}" for i in range(10)]


def release_of(shipped, monkeypatch, model_sha256: str | None = None):
    """The release as the podman target renders it (credentials from CREDS)."""
    from mlctl.secrets import resolve_secrets
    from mlctl.specload import load_spec
    from mlctl.targets.podman import target as podman_target

    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    spec = load_spec(shipped)
    if model_sha256 is None:
        model_sha256 = json.loads(podman_target._record(spec).read_text())["metadata"]["sha256"]
    return podman_target._release(spec, resolve_secrets(spec), model_sha256=model_sha256)


def _predictor_container(name_part: str = "") -> dict:
    pods = podman_json("pod", "ps", "--format", "json", "--filter", "label=io.mlctl.role=predictor")
    assert len(pods) == 1, pods
    (model,) = [
        c
        for c in pods[0]["Containers"]
        if not c["Names"].endswith(("-infra", "-model-initializer")) and name_part in c["Names"]
    ]
    return podman_json("inspect", model["Names"])[0]


def test_the_model_container_runs_as_the_rendered_security_context_says(applied, serving):
    c = _predictor_container()
    config, host = c["Config"], c["HostConfig"]
    assert config["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert c["EffectiveCaps"] in (None, [])  # capabilities: drop ALL
    assert "10001" in [str(g) for g in host["GroupAdd"]]  # fsGroup
    env = dict(e.split("=", 1) for e in config["Env"])
    # What the 1.17.1 operator injects, and no credential anywhere in the container's config.
    assert (env["PREDICTIVE_UNIT_HTTP_SERVICE_PORT"], env["PREDICTIVE_UNIT_GRPC_SERVICE_PORT"]) == ("9000", "9500")
    assert env["MODEL_SHA256"] == applied["summary"]["modelSha256"] and env["GRPC_WORKERS"] == "1"
    assert not any(v in json.dumps(c) for v in (CREDS["MLCTL_S3_SECRET_ACCESS_KEY"],))


def test_a_second_apply_changes_nothing(serving, shipped):
    p = mlctl("apply", str(shipped), "--target", "podman", "--json")
    result = summary(p)
    assert not result["changed"], steps(p)
    assert steps(p)["check"] == ["ok", "ok"]  # the sample digit and the helm test pod


def test_a_dry_run_plans_from_what_is_there(serving, shipped):
    plan = steps(mlctl("apply", str(shipped), "--target", "podman", "--dry-run", "--json"))
    assert plan == {
        "validate": ["ok"],
        "store": ["up to date"],  # the suite's S3 server answers the spec's endpoint
        "images": ["up to date", "up to date"],
        "train": ["up to date"],
        "serve": ["up to date"],
        "check": ["planned"],
    }


def test_status_and_the_serving_digest(applied, serving, shipped):
    status = summary(mlctl("status", str(shipped), "--target", "podman", "--json"))
    assert status["servingSha256"] == status["trainedSha256"] == applied["summary"]["modelSha256"]
    (pod,) = status["pods"]
    assert pod["role"] == "predictor" and pod["containers"]["mnist"] == "running"


def test_the_helm_test_pod_fails_on_a_wrong_answer(applied, serving, shipped, monkeypatch):
    """The chart's own test pod, as rendered, against the running predictor: passes as is (every
    apply above ran it), and fails when the label it demands is not the digit the model sees."""
    release = release_of(shipped, monkeypatch, applied["summary"]["modelSha256"])
    sample = next(o for o in release.objects if o["kind"] == "ConfigMap")
    manifest = json.loads(sample["data"]["examples.json"])
    manifest["examples"][0]["expect"] = "8"
    sample["data"]["examples.json"] = json.dumps(manifest)
    from mlctl.podman import PodmanError

    with pytest.raises(PodmanError, match="exited 1") as failed:
        release.runner.run(release.pods["test"], wait="complete", timeout_s=120)
    assert "FAIL: digit-7.png: answered '7' (HTTP 200), expected '8'" in str(failed.value)
    release.runner.remove(f"models.{release.pods['test'].name}")


def test_other_weights_than_the_release_names_are_never_served(applied, shipped, monkeypatch):
    """MODEL_SHA256 names the weights; a pod whose store folder holds others never gets ready,
    and its log says both digests."""
    from mlctl import podman

    release = release_of(shipped, monkeypatch, applied["summary"]["modelSha256"])
    predictor = release.pods["predictor"]
    model = predictor.manifest["spec"]["containers"][0]
    wanted = "0f" * 32
    for e in model["env"]:
        if e["name"] == "MODEL_SHA256":
            e["value"] = wanted
    name = podman.podman_name("models", predictor.name)
    release.runner.remove(name)
    with pytest.raises(podman.PodmanError, match="while starting") as failed:
        release.runner.run(predictor, publish=[9000], timeout_s=120)
    print(f"\nthe report of a pod given other weights:\n{failed.value}")
    # The reason is quoted however long the shutdown after it (gunicorn, the gRPC process) logs.
    assert wanted in str(failed.value) and applied["summary"]["modelSha256"] in str(failed.value)
    release.runner.remove(name)


def test_a_new_predictor_pod_answers_on_both_ports(applied, shipped, monkeypatch):
    """The rendered pod, started afresh, answers the sample over REST (9000) and gRPC (9500)
    with the release's weights. Its cold start is printed for the log; the figure to compare
    is bench/serve_bench.py's."""
    from mlctl import podman

    release = release_of(shipped, monkeypatch, applied["summary"]["modelSha256"])
    predictor = release.pods["predictor"]
    release.runner.remove(podman.podman_name("models", predictor.name))
    sample = (Path(__file__).resolve().parents[2] / "model/examples/digit-7.png").read_bytes()
    t0 = time.monotonic()
    run_ = release.runner.run(predictor, publish=[9000, 9500], wait="none")
    while True:
        try:
            if predict_image(f"http://127.0.0.1:{run_.ports[9000]}", sample, timeout=2).cls == 7:
                break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.05)
        if time.monotonic() - t0 > 120:
            pytest.fail("the predictor pod gave no correct answer within 120 s of its start")
    cold = time.monotonic() - t0
    print(f"\npredictor pod cold start (pod create → first correct prediction): {cold:.2f} s")
    # The gRPC port the operator declares (9500) answers too, with the same model.
    serve_python = Path(__file__).resolve().parents[2] / ".venv-serve" / "bin" / "python"
    script = (
        "import grpc, sys; from seldon_core.proto import prediction_pb2 as p, prediction_pb2_grpc as g; "
        "s = g.ModelStub(grpc.insecure_channel(sys.argv[1])); "
        "r = s.Predict(p.SeldonMessage(binData=open(sys.argv[2], 'rb').read()), timeout=30); "
        "v = list(r.data.tensor.values); print(v.index(max(v)), r.meta.tags['model_sha256'].string_value)"
    )
    sample_path = Path(__file__).resolve().parents[2] / "model/examples/digit-7.png"
    deadline = time.monotonic() + 60
    while True:  # the gRPC process loads the model beside the REST workers
        out = run(str(serve_python), "-c", script, f"127.0.0.1:{run_.ports[9500]}", str(sample_path), check=False)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out.stdout.split() == ["7", applied["summary"]["modelSha256"]], out.stderr[-1000:]


# --- failure paths: a clear message naming the step, exit 1, and the next apply converges ---------


def test_wrong_storage_credentials_show_the_initializers_log_and_the_next_apply_converges(applied, shipped, s3):
    p = mlctl("apply", str(shipped), "--target", "podman", env={"MLCTL_S3_SECRET_ACCESS_KEY": "wrong-secret"})
    assert p.returncode == 1, p.stderr
    assert "error: serve: pod mnist-default-0-mnist-" in p.stderr
    assert "init container mnist-model-initializer exited 1" in p.stderr
    assert "SignatureDoesNotMatch" in p.stderr or "403" in p.stderr  # the initializer's own log tail
    assert "wrong-secret" not in p.stderr + p.stdout
    again = mlctl("apply", str(shipped), "--target", "podman", "--json")
    assert steps(again)["serve"] == ["changed"] and summary(again)["summary"]["modelSha256"]


def _remove_predictor_pods() -> None:
    for pod in podman_json("pod", "ps", "--format", "json", "--filter", "label=io.mlctl.role=predictor"):
        run("podman", "pod", "rm", "--force", "--time", "1", pod["Name"])


def test_a_container_killed_while_starting_fails_the_apply_and_the_next_converges(applied, shipped):
    _remove_predictor_pods()
    killed: list[str] = []

    def kill_when_it_starts() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            names = run("podman", "ps", "--format", "{{.Names}}", check=False).stdout.split()
            model = [n for n in names if n.startswith("models.mnist-default-0-mnist-") and n.endswith("-mnist")]
            if model:
                run("podman", "kill", model[0], check=False)
                killed.append(model[0])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_it_starts)
    killer.start()
    p = mlctl("apply", str(shipped), "--target", "podman")
    killer.join()
    assert killed, "the model container never started"
    assert p.returncode == 1, p.stdout + p.stderr
    assert "error: serve: pod mnist-default-0-mnist-" in p.stderr
    assert ("while starting" in p.stderr) and ("exited" in p.stderr or "restarted" in p.stderr)
    again = mlctl("apply", str(shipped), "--target", "podman", "--json")
    assert steps(again)["serve"] == ["changed"], steps(again)


def test_a_missing_tmp_volume_is_caught(applied, shipped, monkeypatch):
    """--read-only-tmpfs=false: podman adds no /tmp of its own, so a pod that forgets its /tmp
    volume fails here as it would on a cluster (the wrapper needs /tmp for its metrics socket)."""
    from mlctl import podman

    release = release_of(shipped, monkeypatch)
    predictor = release.pods["predictor"]
    model = predictor.manifest["spec"]["containers"][0]
    model["volumeMounts"] = [m for m in model["volumeMounts"] if m["mountPath"] != "/tmp"]
    name = podman.podman_name("models", predictor.name)
    release.runner.remove(name)
    with pytest.raises(podman.PodmanError, match="container mnist (exited|restarted)"):
        release.runner.run(predictor, publish=[9000], timeout_s=120)
    release.runner.remove(name)
    again = mlctl("apply", str(shipped), "--target", "podman", "--json")
    assert steps(again)["serve"] == ["changed"], steps(again)


def test_delete_removes_the_pods_and_keeps_the_store(applied, serving, shipped, s3):
    p = mlctl("delete", str(shipped), "--target", "podman")
    assert p.returncode == 0, p.stderr
    assert "removed 1 pod(s)" in p.stdout
    assert not podman_json("pod", "ps", "--format", "json", "--filter", "label=io.mlctl.release=mnist")
    folder = applied["summary"]["modelUri"].removeprefix("s3://mlctl-models/")
    assert f"{folder}/model.pt" in s3.objects("mlctl-models")
