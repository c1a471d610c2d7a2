"""model/train.py, the one training entrypoint: it learns, is deterministic, writes its artifact
atomically (checked by SIGKILLing it at the commit point) and fails cleanly on user errors."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from model.net import Net
from model.trainconfig import DEFAULT_FREEZE_CONV2
from runtime import artifact

REPO = Path(__file__).resolve().parents[2]
# Small enough for seconds on 2 cores; "learns" asks for far above chance (10 %).
SMALL = ("--limit-train", "4000", "--limit-test", "1000", "--epochs", "2", "--batch-size", "64", "--no-progress")
TINY = ("--limit-train", "256", "--limit-test", "100", "--epochs", "1", "--batch-size", "64", "--no-progress")


def one_json_line(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="session")
def small_run(mnist_dir, train_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "artifact"
    p = train_cli("--data-dir", str(mnist_dir), "--out", str(out), "--seed", "3", *SMALL)
    assert p.returncode == 0, p.stderr
    return out, one_json_line(p.stdout), p.stderr


@pytest.mark.slow
def test_small_run_learns_and_writes_the_contract(small_run, mnist_dir):
    out, printed, stderr = small_run
    meta = json.loads((out / "metadata.json").read_text())
    assert printed == meta
    assert meta["test_accuracy"] > 0.8, meta
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.pt"]
    assert meta["format"] == artifact.FORMAT and meta["weights"] == "model.pt"
    assert meta["sha256"] == artifact.sha256_file(out / "model.pt")
    assert (meta["train_examples"], meta["test_examples"], meta["epochs"], meta["seed"]) == (4000, 1000, 2, 3)
    assert meta["hyperparameters"]["batch_size"] == 64
    # conv2's share, resolved for the precision the run chose (not left as "default")
    precision = meta["hyperparameters"]["precision"]
    assert meta["hyperparameters"]["freeze_conv2"] == DEFAULT_FREEZE_CONV2[precision]
    # What the run chose: the cheaper training network on CPU, and the CPU it ran on.
    assert meta["hyperparameters"]["network"] == "TrainingNet" and meta["hyperparameters"]["ema"] == 0.0
    assert meta["cpu"]["model"] and isinstance(meta["cpu"]["features"], list)
    assert set(meta["data_sha256"]) == {p.name.removesuffix(".gz") for p in mnist_dir.glob("*.gz")}
    assert meta["torch_version"] == torch.__version__ and meta["device"] == "cpu"
    assert meta["training_hash"] is None and meta["train_seconds"] > 0
    assert meta["created"].endswith("Z")
    # The int8 serving network's activation ranges and its own test accuracy (model/quantize.py).
    int8 = meta["int8"]
    assert int8["engine"] == "x86" and int8["calibration_images"] == 1024
    assert {"conv1_input_scale_0", "conv2.scale", "fc1.zero_point"} <= set(int8["qparams"])
    assert abs(int8["test_accuracy"] - meta["test_accuracy"]) < 0.02, int8
    # Plain per-epoch lines when stderr is not a TTY.
    assert [ln.split()[1] for ln in stderr.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]

    net = Net()
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    weights, read_meta = artifact.read_artifact(out)
    assert read_meta == meta
    assert torch.load(io.BytesIO(weights), weights_only=True).keys() == net.state_dict().keys()


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(mnist_dir, train_cli, tmp_path):
    def sha(seed: str) -> str:
        p = train_cli(
            "--data-dir", str(mnist_dir), "--out", str(tmp_path / seed / "a"), "--seed", seed, "--threads", "1", *TINY
        )
        assert p.returncode == 0, p.stderr
        return one_json_line(p.stdout)["sha256"]

    first = sha("7")
    shutil.move(tmp_path / "7", tmp_path / "7-first")
    assert sha("7") == first
    assert sha("8") != first


@pytest.mark.slow
def test_ema_from_the_command_line_is_recorded_and_saves_other_weights(mnist_dir, train_cli, tmp_path):
    """--ema reaches the recipe and metadata; the average itself: tests/model/test_fit.py."""
    runs = {}
    for ema in ("0", "0.9"):
        out = tmp_path / ema
        p = train_cli(
            "--data-dir", str(mnist_dir), "--out", str(out), "--seed", "4", "--threads", "1", "--ema", ema, *TINY
        )
        assert p.returncode == 0, p.stderr
        runs[ema] = (one_json_line(p.stdout), torch.load(out / "model.pt", weights_only=True))
    (plain_meta, plain), (ema_meta, averaged) = runs["0"], runs["0.9"]
    assert plain_meta["hyperparameters"]["ema"] == 0.0 and ema_meta["hyperparameters"]["ema"] == 0.9
    assert plain.keys() == averaged.keys() == Net().state_dict().keys()
    assert not torch.equal(plain["fc1.weight"], averaged["fc1.weight"])  # the same run, its average saved
    Net().load_state_dict(averaged)


@pytest.mark.slow
def test_freeze_conv1_stops_conv1_at_its_share_of_the_steps(mnist_dir, train_cli, tmp_path):
    torch.manual_seed(6)
    initial = Net().state_dict()  # what the seeded run starts from
    runs = {}
    for share in ("0", "1"):
        out = tmp_path / share
        p = train_cli(
            "--data-dir", str(mnist_dir), "--out", str(out), "--seed", "6", "--threads", "1",
            "--freeze-conv1", share, *TINY,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        runs[share] = (one_json_line(p.stdout), torch.load(out / "model.pt", weights_only=True))
    (frozen_meta, frozen), (_, trained) = runs["0"], runs["1"]
    assert frozen_meta["hyperparameters"]["freeze_conv1"] == 0.0
    # Frozen from the first step: conv1 is exactly its initial weights, the rest trained.
    assert torch.equal(frozen["conv1.weight"], initial["conv1.weight"])
    assert torch.equal(frozen["conv1.bias"], initial["conv1.bias"])
    assert not torch.equal(frozen["conv2.weight"], initial["conv2.weight"])
    # Never frozen: conv1 trains too.
    assert not torch.equal(trained["conv1.weight"], initial["conv1.weight"])


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"trainer exited with {proc.returncode} before the commit point: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("trainer never reached the commit point")
        time.sleep(0.05)


def start_paused(mnist_dir: Path, out: Path, marker: Path) -> subprocess.Popen:
    env = {**os.environ, artifact.PAUSE_ENV: str(marker)}
    return subprocess.Popen(
        [sys.executable, "-m", "model.train", "--data-dir", str(mnist_dir), "--out", str(out), "--seed", "5", *TINY],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("previous", [True, False], ids=["over-previous", "fresh"])
def test_sigkill_at_commit_leaves_previous_artifact_or_none(small_run, mnist_dir, tmp_path, previous):
    out = tmp_path / "artifact"
    if previous:
        shutil.copytree(small_run[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if previous else None
    marker = tmp_path / "paused"
    proc = start_paused(mnist_dir, out, marker)
    wait_for(marker, proc)
    # The new artifact is complete in its temp folder right now: the most dangerous moment.
    assert [p.name for p in tmp_path.glob(".artifact.tmp-*")], "expected the temp folder beside OUT"
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    if previous:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        artifact.read_artifact(out)  # consistent: model.pt matches its metadata
    else:
        assert not out.exists()

    # The next writer removes the dead writer's leftovers and commits normally.
    artifact.write_artifact(out, lambda p: p.write_bytes(b"next"), {"format": artifact.FORMAT})
    assert artifact.read_artifact(out)[0] == b"next"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "paused"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-fallback"])
def test_readers_never_see_a_mismatched_pair(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(artifact, "_exchange", lambda a, b: False)
    out = tmp_path / "artifact"
    artifact.write_artifact(out, lambda p: p.write_bytes(b"0"), {"format": artifact.FORMAT, "n": 0})
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                weights, meta = artifact.read_artifact(out, attempts=50)
                assert weights == str(meta["n"]).encode()
                seen.append(meta["n"])
            except BaseException as e:  # noqa: BLE001 - surfaced in the main thread
                errors.append(e)
                return

    t = threading.Thread(target=reader)
    t.start()
    for n in range(1, 60):
        artifact.write_artifact(out, lambda p, n=n: p.write_bytes(str(n).encode()), {"format": artifact.FORMAT, "n": n})
    stop.set()
    t.join()
    assert not errors, errors[0]
    assert seen == sorted(seen) and seen, seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_read_artifact_rejects_a_mismatched_pair(tmp_path):
    out = tmp_path / "artifact"
    artifact.write_artifact(out, lambda p: p.write_bytes(b"weights"), {"format": artifact.FORMAT})
    (out / "model.pt").write_bytes(b"other weights")
    with pytest.raises(artifact.ArtifactError, match="SHA-256 does not match metadata.json"):
        artifact.read_artifact(out, attempts=2)


# --- what a user can get wrong: one line on stderr, exit 2, no traceback ---------------------------


def corrupt_data_dir(mnist_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for p in mnist_dir.glob("*.gz"):
        (d / p.name).symlink_to(p)
    bad = d / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(bad.read_bytes()))
    content[50] ^= 1
    bad.unlink()
    bad.write_bytes(gzip.compress(bytes(content)))
    return d


ERROR_CASES = {
    "missing-data-dir": (
        lambda m, t: ["--data-dir", str(t / "nope"), "--out", str(t / "o")],
        "directory does not exist (pass --download",
    ),
    "bad-checksum": (
        lambda m, t: ["--data-dir", str(corrupt_data_dir(m, t)), "--out", str(t / "o")],
        "t10k-labels-idx1-ubyte.gz: SHA-256",
    ),
    "zero-epochs": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t / "o"), "--epochs", "0"],
        "argument --epochs: 0 must be ≥ 1",
    ),
    "missing-out": (lambda m, t: ["--data-dir", str(m)], "the following arguments are required: --out"),
    "bad-lr": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t / "o"), "--lr", "abc"],
        "argument --lr: 'abc' is not a number",
    ),
    "freeze-share-above-one": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t / "o"), "--freeze-conv1", "1.5"],
        "argument --freeze-conv1: 1.5 must be in [0, 1]",
    ),
    "freeze-conv2-share-negative": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t / "o"), "--freeze-conv2", "-0.1"],
        "argument --freeze-conv2: -0.1 must be in [0, 1]",
    ),
    "bad-hash": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t / "o"), "--training-hash", "xyz"],
        "is not a hex digest",
    ),
    "out-is-a-file": (lambda m, t: ["--data-dir", str(m), "--out", str(t / "f")], "exists and is not a folder"),
    # The swap would delete the folder's contents: refused before training.
    "out-is-a-foreign-folder": (
        lambda m, t: ["--data-dir", str(m), "--out", str(t)],
        "exists and is not an artifact folder",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_user_errors_exit_2_with_one_line(mnist_dir, train_cli, tmp_path, case):
    (tmp_path / "f").write_text("a file")
    make_args, message = ERROR_CASES[case]
    p = train_cli(*make_args(mnist_dir, tmp_path), "--no-progress")
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("python -m model.train: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "o").exists()
    assert (tmp_path / "f").read_text() == "a file"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda(mnist_dir, train_cli, tmp_path):
    p = train_cli("--data-dir", str(mnist_dir), "--out", str(tmp_path / "o"), "--device", "cuda", *TINY)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no CUDA device" in p.stderr, p.stderr
