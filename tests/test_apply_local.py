"""`mlctl apply` on the local target, for real: train a small model, start the real Seldon
server, check the sample digit; a second apply changes nothing; status and delete; and
`mlctl serve` + `mlctl predict` end to end; then the same artifact on KServe's server.

The first apply runs once, in a module fixture; a test that needs the server running asks for
`running`, which brings it back when an earlier test stopped it, so each test runs alone (`-k`)
or in any order."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import MNIST_DIR, REPO, SPEC_HEAD, run_mlctl

pytestmark = pytest.mark.slow
DIGIT = REPO / "model" / "examples" / "digit-7.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spec(folder: Path, port: int, workers: int = 2, engine: str = "seldon") -> Path:
    spec = folder / ("spec.yaml" if engine == "seldon" else f"{engine}.yaml")
    spec.write_text(
        SPEC_HEAD + "name: tiny\n"
        f"data: {{dir: {MNIST_DIR}, download: false}}\n"
        "training: {epochs: 1, limitTrain: 2000, limitTest: 500, output: models}\n"
        f"serving: {{engine: {engine}, workers: {workers}, local: {{port: {port}}}}}\n"
    )
    return spec


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_dir_module):
    folder = tmp_path_factory.mktemp("apply")
    spec = write_spec(folder, free_port())
    yield folder, spec
    subprocess.run([sys.executable, "-m", "mlctl", "delete", str(spec)], capture_output=True)


@pytest.fixture(scope="module")
def first_apply(project):
    """The first `mlctl apply` of the project: it trains, serves and checks."""
    _, spec = project
    return run_mlctl("apply", str(spec))


@pytest.fixture
def running(project, first_apply) -> dict:
    """The project's server, running on its spec's settings (started again if a test stopped
    it); its `mlctl status`."""
    _, spec = project
    status = json.loads(run_mlctl("status", str(spec), "--json").stdout)
    if not status.get("running"):
        p = run_mlctl("apply", str(spec))
        assert p.returncode == 0, p.stderr
        status = json.loads(run_mlctl("status", str(spec), "--json").stdout)
    assert status["running"], status
    return status


@pytest.fixture(scope="module")
def mnist_dir_module():
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST files not found in {MNIST_DIR}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_exits(pid: int, within_s: float = 10) -> None:
    """The stopped server's process goes away within `within_s`."""
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_apply_trains_serves_checks_then_is_idempotent(project, first_apply, running, mlctl):
    folder, spec = project
    first = first_apply
    assert first.returncode == 0, first.stderr
    assert "● train" in first.stderr and "● serve" in first.stderr
    assert "digit-7.png → 7 (p=" in first.stderr and "too-many-pixels.png → HTTP 413" in first.stderr
    assert "/api/v1.0/predictions" in first.stdout

    second = mlctl("apply", str(spec), "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["changed"] is False
    assert [s["status"] for s in result["steps"]] == ["ok", "up to date", "up to date", "ok"]
    assert "●" not in second.stderr

    plan = mlctl("apply", str(spec), "--dry-run")
    assert plan.returncode == 0 and "nothing to do" in plan.stdout

    status = json.loads(mlctl("status", str(spec), "--json").stdout)
    assert status["running"] and status["upToDate"]
    assert alive(status["pid"])


def test_changed_serving_settings_restart_the_server(project, running, mlctl):
    folder, spec = project
    before = running
    port = int(before["url"].rsplit(":", 1)[1])
    write_spec(folder, port, workers=1)
    plan = mlctl("apply", str(spec), "--dry-run")
    assert "→ serve" in plan.stderr and "would restart" in plan.stderr
    again = mlctl("apply", str(spec))
    assert again.returncode == 0, again.stderr
    assert "restarted" in again.stderr and "= train" in again.stderr  # no retraining
    after = json.loads(mlctl("status", str(spec), "--json").stdout)
    assert after["pid"] != before["pid"] and not alive(before["pid"])
    write_spec(folder, port)  # the project's own settings again, for the tests after this one


def test_delete_stops_the_server_and_keeps_the_artifact(project, running, mlctl):
    folder, spec = project
    status = running
    gone = mlctl("delete", str(spec))
    assert gone.returncode == 0 and "stopped the local server" in gone.stdout
    assert_exits(status["pid"])
    assert Path(status["artifact"], "model.pt").is_file()
    again = json.loads(mlctl("status", str(spec), "--json").stdout)
    assert again["running"] is False


def test_serve_then_predict_end_to_end(project, first_apply, mlctl):
    folder, spec = project
    assert mlctl("train", str(spec)).returncode == 0  # reuses the artifact the first apply trained
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlctl", "serve", str(spec), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a runner that started the suite in the background
        # hands SIGINT down ignored (POSIX, for `cmd &` without job control), and Python then
        # installs no KeyboardInterrupt handler, so without this the server would never stop.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        url = proc.stdout.readline().strip()  # printed once the server answers a real prediction
        assert url == f"http://127.0.0.1:{port}/api/v1.0/predictions", proc.stderr.read() if not url else url
        base = url.rsplit("/api/", 1)[0]
        p = mlctl("predict", str(DIGIT), str(DIGIT), "--url", base, "--spec", str(spec), "--json")
        assert p.returncode == 0, p.stderr
        answers = json.loads(p.stdout)["predictions"]
        assert [(a["class"], a["index"]) for a in answers] == [("7", 7), ("7", 7)]
        assert abs(sum(answers[0]["scores"]) - 1) < 1e-3  # log-probabilities read as the contract says
        table = mlctl("predict", str(DIGIT), "--url", base, "--endpoint", "/predict", "--spec", str(spec))
        assert table.returncode == 0 and " 7 " in table.stdout and "scores (0–9)" in table.stdout
        bare = mlctl("predict", str(DIGIT), "--url", base, "--json")  # no contract: the row as it came
        assert json.loads(bare.stdout)["predictions"][0]["class"] == "7"
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    assert rc == 0 and "stopped" in proc.stderr.read()
    with socket.socket() as s:  # the port is free again: every worker is gone
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))


def test_predict_against_a_dead_url_is_a_clear_error(mlctl):
    p = mlctl("predict", str(DIGIT), "--url", f"http://127.0.0.1:{free_port()}")
    assert p.returncode == 1
    assert "cannot reach" in p.stderr and "Traceback" not in p.stderr


def test_serve_without_a_trained_model_says_what_to_do(tmp_path, mlctl):
    spec = write_spec(tmp_path, free_port())
    p = mlctl("serve", str(spec))
    assert p.returncode == 2 and "no trained model" in p.stderr and "mlctl train" in p.stderr


def test_serve_on_a_busy_port_says_so(project, first_apply, mlctl):
    folder, spec = project
    assert mlctl("train", str(spec)).returncode == 0  # reuses the artifact the first apply trained
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        p = mlctl("serve", str(spec), "--port", str(busy.getsockname()[1]))
    assert p.returncode == 1
    assert "is already in use" in p.stderr and "Traceback" not in p.stderr


def test_engine_kserve_serves_the_same_artifact_through_v2(project, first_apply, mlctl):
    """The one-line switch: no retraining (the training hash ignores the engine), KServe's real
    server on the same artifact, the smoke test through V2, `mlctl predict --protocol v2`."""
    folder, _ = project
    spec = write_spec(folder, free_port(), engine="kserve")
    try:
        p = mlctl("apply", str(spec))
        assert p.returncode == 0, p.stderr
        assert "= train" in p.stderr and "KServe ModelServer at" in p.stderr
        assert "digit-7.png → 7 (p=" in p.stderr and "not-an-image.txt → HTTP 400" in p.stderr
        assert "/v2/models/tiny/infer" in p.stdout and f"--spec {spec} --protocol v2" in p.stdout
        status = json.loads(mlctl("status", str(spec), "--json").stdout)
        assert status["running"] and status["upToDate"] and alive(status["pid"])
        base = status["url"]
        v2 = mlctl("predict", str(DIGIT), "--url", base, "--protocol", "v2", "--spec", str(spec), "--json")
        v1 = mlctl("predict", str(DIGIT), "--url", base, "--protocol", "v1", "--spec", str(spec), "--json")
        assert v2.returncode == 0 and v1.returncode == 0, v2.stderr + v1.stderr
        (a,), (b,) = json.loads(v2.stdout)["predictions"], json.loads(v1.stdout)["predictions"]
        assert a["class"] == b["class"] == "7"
        assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"], strict=True)) < 1e-6
        again = json.loads(mlctl("apply", str(spec), "--json").stdout)
        assert again["changed"] is False
    finally:
        gone = mlctl("delete", str(spec))
    assert gone.returncode == 0 and "stopped the local server" in gone.stdout
    assert_exits(status["pid"])


def test_a_spec_that_brings_its_weights_serves_them_without_training(project, first_apply, mlctl, tmp_path):
    """The tutorial's `generate-deployment IMAGE MODEL_URI`: another project takes the trained
    folder by its digest, and apply serves it (no training step runs) and passes the examples."""
    folder, spec = project
    trained = json.loads(mlctl("train", str(spec), "--json").stdout)  # the artifact first_apply trained
    byo = tmp_path / "byo.yaml"
    byo.write_text(
        SPEC_HEAD + "name: byo\n"
        f"weights: {{dir: {trained['artifact']}, sha256: '{trained['sha256']}'}}\n"
        f"training: {{output: {tmp_path / 'models'}}}\n"
        f"serving: {{workers: 1, local: {{port: {free_port()}}}}}\n"
    )
    try:
        p = mlctl("apply", str(byo), "--json")
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout)
        train = next(s for s in result["steps"] if s["name"] == "train")
        assert train["status"] == "changed" and "the spec's weights from" in train["detail"]
        assert result["summary"]["modelSha256"] == trained["sha256"]
        assert [e["input"] for e in result["summary"]["prediction"]["examples"]][0] == "digit-7.png"
        (imported,) = (tmp_path / "models").glob("byo-*")  # the trained folder's files, as they were
        for name in ("model.pt", "metadata.json"):
            assert (imported / name).read_bytes() == (Path(trained["artifact"]) / name).read_bytes()
    finally:
        mlctl("delete", str(byo))
