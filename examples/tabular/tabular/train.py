"""Train the pump-fault classifier and write an artifact folder: `python -m tabular.train --out O`.

mlctl runs this (the contract's training.command) with the spec's training settings appended,
the same flags it gives the MNIST trainer; the ones that mean nothing here are accepted and
ignored (`--data-dir`, `--download`, `--mirror`: the data is generated, tabular/data.py;
`--no-progress`: progress is always one plain line per epoch). Output contract:

- `OUT/model.pt`: `TabularNet().state_dict()`, standardisation included;
- `OUT/metadata.json`: runtime.artifact's format, the SHA-256 of model.pt, test accuracy and
  loss, hyperparameters, torch version, device, timings (`run`);
- stdout: exactly one line, the metadata as JSON; stderr: one line per epoch, and errors;
- exit 0 on success, 2 with one line on stderr for what a user can cause (bad flags, an --out
  that is not an artifact folder or cannot be written), a traceback only for bugs.

Deterministic: the same flags give a bitwise-identical model.pt on the same torch build and
thread count (seeded initialisation and shuffling, deterministic kernels). `--device auto`
trains on the CPU: a 2,000-weight network on 4,000 rows is faster there than a GPU's kernel
launches, and the CPU's answer is the same on every machine; `--device cuda` is honoured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

EXIT_USAGE = 2
PROG = "python -m tabular.train"


class UsageError(Exception):
    """Something the user can fix: shown as one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, not usage + error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _number(parse: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse type: `parse` the text, then demand `ok` (described by `rule`) and finiteness."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if parse is int else 'a number'}"
            ) from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"{text} must be {rule}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "≥ 1")
_positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
_fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
_non_negative_float = _number(float, lambda v: v >= 0, "a finite number ≥ 0")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Train the pump-fault classifier; write OUT/model.pt + OUT/metadata.json.")
    p.add_argument("--out", required=True, help="artifact folder to write (replaced atomically)")
    p.add_argument("--data-dir", help="ignored: the data is generated (tabular/data.py)")
    p.add_argument("--download", action="store_true", help="ignored: nothing is downloaded")
    p.add_argument("--mirror", action="append", metavar="URL", help="ignored: nothing is downloaded")
    p.add_argument("--epochs", type=_positive_int, default=5)
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--lr", type=_positive_float, default=5e-3, help="AdamW's starting rate, decayed to 0 (cosine)")
    p.add_argument("--label-smoothing", type=_fraction, default=0.1)
    p.add_argument("--weight-decay", type=_non_negative_float, default=0.01)
    p.add_argument("--seed", type=int, default=1, help="initialisation and shuffling (not the data)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the CPU")
    p.add_argument("--limit-train", type=_positive_int, help="train on the first N training rows")
    p.add_argument("--limit-test", type=_positive_int, help="evaluate on the first N test rows")
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: the CPUs this process may use)")
    p.add_argument("--training-hash", help="recorded in metadata.json as is")
    p.add_argument("--no-progress", action="store_true", help="ignored: progress is one plain line per epoch")
    return p


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Generate the data, train, evaluate, write the artifact; return its metadata."""
    import torch
    import torch.nn.functional as F

    from runtime import artifact
    from tabular.data import load_splits
    from tabular.net import TabularNet

    try:  # before training, so a wrong --out costs nothing
        artifact.check_replaceable(args.out)
    except artifact.ArtifactError as e:
        raise UsageError(f"--out {e}") from None
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)

    train_split, test_split = load_splits()
    train_split, test_split = train_split.head(args.limit_train), test_split.head(args.limit_test)
    train_x, train_y = torch.from_numpy(train_split.x).to(device), torch.from_numpy(train_split.y).to(device)
    net = TabularNet().to(device)
    net.fit_standardisation(train_x)
    steps_per_epoch = math.ceil(len(train_split) / args.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # Decayed to 0 over the run, so the last steps settle instead of leaving the weights where
    # a full-rate step happened to put them.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * args.epochs)
    shuffle = torch.Generator().manual_seed(args.seed)

    started = time.perf_counter()
    net.train()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(train_split), generator=shuffle).to(device)
        total = 0.0
        for batch in order.split(args.batch_size):
            loss = F.cross_entropy(net(train_x[batch]), train_y[batch], label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        log(
            f"epoch {epoch}/{args.epochs}  loss {total / len(train_split):.4f}  ({time.perf_counter() - started:.2f} s)"
        )
    train_seconds = time.perf_counter() - started

    net.eval()
    with torch.inference_mode():
        logits = net(torch.from_numpy(test_split.x).to(device))
        test_y = torch.from_numpy(test_split.y).to(device)
        accuracy = (logits.argmax(dim=1) == test_y).sum().item() / len(test_split)
        test_loss = F.cross_entropy(logits, test_y).item()
    log(f"test accuracy {accuracy:.4f}  loss {test_loss:.4f}  ({len(test_split)} rows)")

    metadata = {
        "format": artifact.FORMAT,
        "test_accuracy": accuracy,
        "test_loss": round(test_loss, 6),
        "epochs": args.epochs,
        "seed": args.seed,
        "hyperparameters": {
            "batch_size": args.batch_size,
            "lr": args.lr,
            "label_smoothing": args.label_smoothing,
            "weight_decay": args.weight_decay,
            "limit_train": args.limit_train,
            "limit_test": args.limit_test,
            "optimizer": "adamw",
            "schedule": "cosine",
            "threads": threads,
            "network": "TabularNet 8-32-32-3",
        },
        "torch_version": torch.__version__,
        "device": device,
        "training_hash": args.training_hash,
        "train_seconds": round(train_seconds, 3),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "train_examples": len(train_split),
        "test_examples": len(test_split),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    try:
        return artifact.write_artifact(args.out, lambda p: torch.save(state, p), metadata)
    except artifact.ArtifactError as e:
        raise UsageError(f"--out {e}") from None
    except OSError as e:
        raise UsageError(f"--out {args.out}: cannot write the artifact ({e.strerror or e})") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        metadata = run(args, log)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    print(json.dumps(metadata, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
