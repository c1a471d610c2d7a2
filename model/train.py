"""Train the MNIST `Net` and write an artifact folder: `python -m model.train --data-dir D --out O`.

The one training entrypoint: mlctl's local runner and the Kubernetes Job (runtime/train.Dockerfile)
both run exactly this. Output contract:

- `OUT/model.pt`: `Net().state_dict()` (`torch.load(p, weights_only=True)` loads it);
- `OUT/metadata.json`: format `mlctl.model/v1`, the SHA-256 of model.pt, test accuracy and loss,
  the int8 serving qparams and their test accuracy, hyperparameters, data checksums, torch
  version, device, timings (see `build_metadata`);
- stdout: exactly one line, the metadata as JSON; stderr: progress (a rich bar on a TTY, else
  one line per epoch) and errors;
- exit 0 on success, 2 with one line on stderr for what a user can cause (missing or corrupt
  data, bad arguments, an unwritable OUT), a traceback only for bugs.

OUT is replaced atomically (runtime/artifact.py explains how and how to read it safely). The
command line is model/trainconfig.py; the recipe below, model/fit.py; this module runs them.

The recipe (fast on a 2-core CPU, ≥ 99 % test accuracy): the whole training set normalised once
with `model.preprocess.normalize` and held as one tensor; no DataLoader; AdamW under a one-cycle
schedule; label smoothing; channels_last; bfloat16 autocast where the CPU has native bf16
(AVX512-BF16/AMX) and on CUDA, float32 otherwise; on CPU the same network computed more cheaply
(`model.trainnet.TrainingNet`); conv1 stops training after a share of the steps (`--freeze-conv1`),
which spares the rest conv2's input gradient, and conv2 after a later share (`--freeze-conv2`),
after which the convolutions' output is computed once per training image and the remaining steps
train only the fully connected layers on it. metadata.json records what was chosen (precision,
network, the CPU's model and features). Evaluation is float32, through the
frozen graph serving runs; then the int8 serving network (model/quantize.py) is calibrated on
the first 1,024 training images, evaluated too, and its activation ranges and accuracy
recorded under `int8` in metadata.json.

Deterministic for a fixed seed on the same device, thread count and torch build: seeded
torch RNG for init and dropout, a seeded generator for shuffling, deterministic kernels (on
CUDA by torch's switch; on CPU every kernel the recipe runs is; model/fit.py).

Test hook: with `MLCTL_TRAIN_TEST_PAUSE_BEFORE_COMMIT=PATH` in the environment, the writer
creates PATH once the new artifact is complete in its temp folder and waits (until PATH is
deleted) just before swapping it into OUT, so tests can SIGKILL it there deterministically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from model.fit import (
    ProgressFn,
    cpu_description,
    evaluate,
    fit,
    pct_start,
    quantize_for_serving,
    resolve_device,
    set_determinism,
)
from model.trainconfig import EXIT_USAGE, TrainConfig, UsageError, config_from_args, freeze_conv2_share


def run(cfg: TrainConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Load data, train, evaluate, write the artifact; return its metadata."""
    import torch

    from model.data import MIRRORS, load_mnist
    from runtime import artifact

    out = Path(cfg.out)
    try:  # before training, so a wrong --out costs nothing
        artifact.check_replaceable(out)
    except artifact.ArtifactError as e:
        raise UsageError(f"--out {e}") from None
    threads = cfg.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device, precision = resolve_device(cfg.device, cfg.precision)
    cfg = replace(cfg, freeze_conv2=freeze_conv2_share(cfg.freeze_conv2, precision))  # as recorded
    set_determinism(cfg.seed, device)

    data = load_mnist(cfg.data_dir, download=cfg.download, mirrors=cfg.mirrors or MIRRORS)
    n_test = len(data.test_y) if cfg.limit_test is None else min(cfg.limit_test, len(data.test_y))

    on_step, on_epoch, finish = _progress(cfg, log)
    t0 = time.perf_counter()
    try:
        model = fit(cfg, data, device, precision, on_step, on_epoch)
    finally:
        finish()
    train_seconds = time.perf_counter() - t0
    accuracy, loss = evaluate(model, data.test_x[:n_test], data.test_y[:n_test])
    log(f"test accuracy {accuracy:.4f}  loss {loss:.4f}  ({n_test} images)")

    n_train = len(data.train_y) if cfg.limit_train is None else min(cfg.limit_train, len(data.train_y))
    int8 = quantize_for_serving(model, data.train_x[:n_train], data.test_x[:n_test], data.test_y[:n_test], log)
    recorded = ("batch_size", "lr", "label_smoothing", "weight_decay", "ema", "freeze_conv1", "freeze_conv2")
    hyper = {k: v for k, v in asdict(cfg).items() if k in (*recorded, "limit_train", "limit_test")}
    total_steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    hyper.update(
        optimizer="adamw",
        schedule="onecycle" if total_steps >= 4 else "constant",
        pct_start=round(pct_start(total_steps), 4),
        precision=precision,
        threads=threads,
        channels_last=True,
        network="TrainingNet" if device == "cpu" else "Net",
    )
    metadata = {
        "format": artifact.FORMAT,
        "test_accuracy": accuracy,
        "test_loss": round(loss, 6),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "hyperparameters": hyper,
        "data_sha256": dict(data.sha256),
        "torch_version": torch.__version__,
        "device": device,
        "cpu": cpu_description() if device == "cpu" else None,
        "training_hash": cfg.training_hash,
        "train_seconds": round(train_seconds, 3),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "train_examples": n_train,
        "test_examples": n_test,
    }
    if int8 is not None:
        metadata["int8"] = int8
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    try:
        return artifact.write_artifact(out, lambda p: torch.save(state, p), metadata)
    except artifact.ArtifactError as e:
        raise UsageError(f"--out {e}") from None
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write the artifact ({e.strerror or e})") from None


def _progress(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[ProgressFn | None, ProgressFn, Callable[[], None]]:
    """(on_step, on_epoch, finish): a rich bar on a TTY, otherwise one plain line per epoch."""
    if not cfg.progress:

        def plain(epoch: int, step: int, total: int, loss: float, rate: float) -> None:
            log(f"epoch {epoch}/{cfg.epochs}  step {step}/{total}  loss {loss:.4f}  {rate:,.0f} img/s")

        return None, plain, lambda: None

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("epoch {task.fields[epoch]}/" + str(cfg.epochs)),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:,.0f} img/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task("train", total=None, epoch=1, loss=float("nan"), rate=0.0)
    bar.start()

    def step(epoch: int, done: int, total: int, loss: float, rate: float) -> None:
        bar.update(task, total=total, completed=done, epoch=epoch, loss=loss, rate=rate)

    def epoch_done(epoch: int, done: int, total: int, loss: float, rate: float) -> None:
        bar.console.print(f"epoch {epoch}/{cfg.epochs}  mean loss {loss:.4f}  {rate:,.0f} img/s")

    return step, epoch_done, bar.stop


def main(argv: list[str] | None = None) -> int:
    from model.data import DataError

    cfg = config_from_args(argv)
    prog = "python -m model.train"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        metadata = run(cfg, log)
    except (UsageError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    print(json.dumps(metadata, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
