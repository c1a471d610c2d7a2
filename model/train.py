"""Train the MNIST `Net` and write an artifact folder: `python -m model.train --data-dir D --out O`.

The one training entrypoint: mlctl's local runner and the Kubernetes Job (model/train.Dockerfile)
both run exactly this. Output contract:

- `OUT/model.pt`: `Net().state_dict()` (`torch.load(p, weights_only=True)` loads it);
- `OUT/metadata.json`: format `mlctl.mnist/v1`, the SHA-256 of model.pt, test accuracy and loss,
  the int8 serving qparams and their test accuracy, hyperparameters, data checksums, torch
  version, device, timings (see `build_metadata`);
- stdout: exactly one line, the metadata as JSON; stderr: progress (a rich bar on a TTY, else
  one line per epoch) and errors;
- exit 0 on success, 2 with one line on stderr for what a user can cause (missing or corrupt
  data, bad arguments, an unwritable OUT), a traceback only for bugs.

OUT is replaced atomically (model/artifact.py explains how and how to read it safely).

The recipe (fast on a 2-core CPU, ≥ 99 % test accuracy): the whole training set normalised once
with `model.preprocess.normalize` and held as one tensor; no DataLoader; AdamW under a one-cycle
schedule; label smoothing; channels_last; bfloat16 autocast where the CPU has native bf16
(AVX512-BF16/AMX) and on CUDA, float32 otherwise. Evaluation is float32; then the int8 serving
network (model/quantize.py) is calibrated on the first 1,024 training images, evaluated too, and
its activation ranges and accuracy recorded under `int8` in metadata.json.

Deterministic for a fixed seed on the same device, thread count and torch build: seeded
torch RNG for init and dropout, a seeded generator for shuffling, deterministic algorithms.

Test hook: with `MNIST_TRAIN_TEST_PAUSE_BEFORE_COMMIT=PATH` in the environment, the writer
creates PATH once the new artifact is complete in its temp folder and waits (until PATH is
deleted) just before swapping it into OUT, so tests can SIGKILL it there deterministically.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

# Defaults: the fastest recipe found to reach ≥ 99.0 % on the full test set (bench/README.md).
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 5e-3
DEFAULT_SEED = 1
DEFAULT_LABEL_SMOOTHING = 0.1
DEFAULT_WEIGHT_DECAY = 0.01
EVAL_BATCH_SIZE = 1000
PCT_START = 0.25


class UsageError(Exception):
    """Something the user can fix: shown as one line on stderr, exit 2."""


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str
    out: str
    download: bool = False
    mirrors: tuple[str, ...] = ()
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    seed: int = DEFAULT_SEED
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    training_hash: str | None = None
    progress: bool = True


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, not usage + error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _number(parse: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse type: `parse` the text, then demand `ok` (described by `rule`) and finiteness."""
    noun = "an integer" if parse is int else "a number"

    def convert(s: str) -> Any:
        try:
            v = parse(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not {noun}") from None
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"{s} must be {rule}")
        return v

    return convert


_positive_int = _number(int, lambda v: v >= 1, "≥ 1")
_positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
_fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
_non_negative_float = _number(float, lambda v: v >= 0, "a finite number ≥ 0")


def _hex(s: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{8,128}", s):
        raise argparse.ArgumentTypeError(f"{s!r} is not a hex digest (8-128 hex digits)")
    return s.lower()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m model.train",
        description="Train the MNIST CNN and write OUT/model.pt + OUT/metadata.json atomically.",
    )
    p.add_argument("--data-dir", required=True, help="folder with the four MNIST IDX .gz files")
    p.add_argument("--download", action="store_true", help="download missing files from the mirrors")
    p.add_argument(
        "--mirror",
        action="append",
        default=None,
        metavar="URL",
        help="mirror base URL (repeatable; default: the standard MNIST mirrors)",
    )
    p.add_argument("--out", required=True, help="artifact folder to write (replaced atomically)")
    p.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS)
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=_positive_float, default=DEFAULT_LR, help="peak one-cycle learning rate")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--label-smoothing", type=_fraction, default=DEFAULT_LABEL_SMOOTHING)
    p.add_argument("--weight-decay", type=_non_negative_float, default=DEFAULT_WEIGHT_DECAY)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="training autocast precision (auto: bf16 on CUDA and on CPUs with native "
        "bf16, else fp32); evaluation is always fp32",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="CPU threads (default: the CPUs this process may run on)"
    )
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use the first N training images")
    p.add_argument("--limit-test", type=_positive_int, default=None, help="evaluate on the first N test images")
    p.add_argument("--training-hash", type=_hex, default=None, help="recorded in metadata.json as is")
    p.add_argument("--no-progress", action="store_true", help="plain per-epoch log lines on stderr")
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    a = build_parser().parse_args(argv)
    return TrainConfig(
        data_dir=a.data_dir,
        out=a.out,
        download=a.download,
        mirrors=tuple(a.mirror or ()),
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        label_smoothing=a.label_smoothing,
        weight_decay=a.weight_decay,
        device=a.device,
        precision=a.precision,
        threads=a.threads,
        limit_train=a.limit_train,
        limit_test=a.limit_test,
        training_hash=a.training_hash,
        progress=not a.no_progress and sys.stderr.isatty(),
    )


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_device(requested: str, precision: str) -> tuple[str, str]:
    """Return (device, precision) with 'auto' resolved."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to this torch build")
    device = requested if requested != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if _cpu_has_native_bf16() else "fp32"
    if device == "cpu" and precision == "fp16":
        raise UsageError("--precision fp16 needs --device cuda (use bf16 or fp32 on CPU)")
    return device, precision


def _set_determinism(seed: int, device: str) -> None:
    import torch

    if device == "cuda":
        # cuBLAS needs this before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    # warn_only: CUDA max-pool backward has no deterministic kernel; CPU kernels all are.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


ProgressFn = Callable[[int, int, int, float, float], None]


def pct_start(total_steps: int) -> float:
    """Warm-up share of the one-cycle schedule: 25 %, but at least two steps (OneCycleLR divides
    by the warm-up length minus one)."""
    return max(PCT_START, 2 / total_steps)


def _schedule(opt: Any, lr: float, total: int) -> Any:
    import torch

    if total < 4:  # too short to warm up and anneal: constant rate
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct_start(total))


def fit(
    cfg: TrainConfig,
    data: Any,
    device: str,
    precision: str,
    on_step: ProgressFn | None = None,
    on_epoch: ProgressFn | None = None,
) -> Any:
    """Train a fresh Net on `data` (an MnistData); return the model (on CPU, eval mode)."""
    import torch
    import torch.nn.functional as F

    from model.net import Net
    from model.preprocess import normalize

    n = len(data.train_y) if cfg.limit_train is None else min(cfg.limit_train, len(data.train_y))
    x = normalize(data.train_x[:n]).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(data.train_y[:n], dtype=torch.long, device=device)

    model = Net().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = _schedule(opt, cfg.lr, total)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            with torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(x[idx])
            # The Net ends in log_softmax; cross_entropy re-normalises log-probabilities to themselves,
            # which lets it add label smoothing (nll_loss cannot).
            loss = F.cross_entropy(out.float(), y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += loss.detach()
            step += 1
            if on_step is not None and (step % 20 == 0 or i == steps_per_epoch - 1):
                done = min((i + 1) * cfg.batch_size, n)
                on_step(epoch, step, total, loss.item(), done / (time.perf_counter() - t0))
        if on_epoch is not None:
            seconds = time.perf_counter() - t0
            on_epoch(epoch, step, total, loss_sum.item() / steps_per_epoch, n / seconds)
    return model.to("cpu").eval()


def evaluate(model: Any, images: Any, labels: Any) -> tuple[float, float]:
    """Accuracy and mean NLL loss of `model` (float32 or int8) on uint8 images."""
    import torch
    import torch.nn.functional as F

    from model.preprocess import normalize

    correct, loss = 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(labels), EVAL_BATCH_SIZE):
            x = normalize(images[i : i + EVAL_BATCH_SIZE]).contiguous(memory_format=torch.channels_last)
            y = torch.as_tensor(labels[i : i + EVAL_BATCH_SIZE], dtype=torch.long)
            out = model(x)
            loss += F.nll_loss(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum())
    return correct / len(labels), loss / len(labels)


def quantize_for_serving(
    model: Any, train_x: Any, test_x: Any, test_y: Any, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any] | None:
    """Calibrate the int8 serving network (model/quantize.py) on the first training images and
    evaluate the network serving will build; None where this torch has no x86 int8 engine."""
    from model import quantize
    from model.preprocess import normalize

    if not quantize.available():
        log("int8: this torch build has no x86 quantized engine; serving will use float32")
        return None
    images = normalize(train_x[: quantize.CALIBRATION_IMAGES])
    qparams = quantize.calibrate(model, images)
    with quantize.quiet():
        accuracy, loss = evaluate(quantize.build(model, qparams), test_x, test_y)
    log(f"int8 test accuracy {accuracy:.4f}  loss {loss:.4f}")
    return {
        "engine": quantize.ENGINE,
        "calibration_images": int(images.shape[0]),
        "qparams": qparams,
        "test_accuracy": accuracy,
        "test_loss": round(loss, 6),
    }


def run(cfg: TrainConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Load data, train, evaluate, write the artifact; return its metadata."""
    import torch

    from model import artifact
    from model.data import MIRRORS, load_mnist

    out = Path(cfg.out)
    try:  # before training, so a wrong --out costs nothing
        artifact.check_replaceable(out)
    except artifact.ArtifactError as e:
        raise UsageError(f"--out {e}") from None
    threads = cfg.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device, precision = resolve_device(cfg.device, cfg.precision)
    _set_determinism(cfg.seed, device)

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
    hyper = {
        k: v
        for k, v in asdict(cfg).items()
        if k in ("batch_size", "lr", "label_smoothing", "weight_decay", "limit_train", "limit_test")
    }
    total_steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    hyper.update(
        optimizer="adamw",
        schedule="onecycle" if total_steps >= 4 else "constant",
        pct_start=round(pct_start(total_steps), 4),
        precision=precision,
        threads=threads,
        channels_last=True,
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
