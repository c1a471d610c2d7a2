"""The training recipe itself: the device and precision, determinism, the one-cycle AdamW loop
over one normalised tensor, float32 evaluation, and the int8 serving network's calibration.
model/train.py runs it and writes the artifact."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.trainconfig import TrainConfig, UsageError, freeze_conv2_share

EVAL_BATCH_SIZE = 100  # the frozen graph's fastest here (bench/README.md)
# Images per forward pass when the frozen convolutions' output is cached: small enough that
# conv1's output stays in cache for the ReLU, conv2 and max-pool after it (bench/README.md).
FEATURE_BATCH_SIZE = 64
PCT_START = 0.25


# The CPU features that decide which kernels oneDNN picks here; recorded in metadata.json.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_description() -> dict[str, Any]:
    """The CPU training ran on: its model name and the CPU_FEATURES it has."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return {
        "model": model.group(1).strip() if model else "unknown",
        "features": [f for f in CPU_FEATURES if f in present],
    }


def _cpu_has_native_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_description()["features"]))


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


def autocast(device: str, amp_dtype: Any) -> Any:
    """The training autocast: `amp_dtype` (bf16 or fp16) on `device`, or off when it is None."""
    import torch

    return torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def set_determinism(seed: int, device: str) -> None:
    import torch

    if device == "cuda":
        # cuBLAS needs this before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # warn_only: CUDA max-pool backward has no deterministic kernel.
        torch.use_deterministic_algorithms(True, warn_only=True)
    # On CPU every kernel this recipe runs is deterministic already (there the switch changes
    # only a few indexing and scatter ops, none of which it runs; same seed, same weights:
    # tests/model/test_train.py), so the switch stays off: it costs 0.9 s of importing
    # torch._inductor and fills every new tensor with NaN, ~9 % of a step (bench/README.md).
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
    from model.trainnet import TrainingNet, as_net, head

    n = len(data.train_y) if cfg.limit_train is None else min(cfg.limit_train, len(data.train_y))
    x = normalize(data.train_x[:n]).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(data.train_y[:n], dtype=torch.long, device=device)

    # On CPU the same network, computed more cheaply (model/trainnet.py); CUDA runs Net itself.
    model = (TrainingNet() if device == "cpu" else Net()).to(device).to(memory_format=torch.channels_last)
    # fused: one kernel per parameter instead of a dozen elementwise passes (bench/README.md).
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = _schedule(opt, cfg.lr, total)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    averaged = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)

    # FreezeOut (Brock et al., 2017): conv1 (320 weights) settles early, and once it stops
    # training no step needs conv2's gradient with respect to its input. Once conv2 stops too,
    # everything before the first dropout is a fixed function of the image: it is computed once
    # for the whole training set, and the remaining steps train only the fully connected layers
    # on it (the savings, measured: bench/README.md). AdamW leaves a parameter without a
    # gradient alone.
    freeze_conv1_at = round(total * cfg.freeze_conv1)
    freeze_convs_at = round(total * freeze_conv2_share(cfg.freeze_conv2, precision))
    cached = None  # the frozen convolutions' output for every training image
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            if step == freeze_conv1_at:
                model.conv1.requires_grad_(False)
            if step == freeze_convs_at:
                cached = frozen_features(model, x, device, amp_dtype)
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            with autocast(device, amp_dtype):
                out = model(x[idx]) if cached is None else head(model, cached[idx])
            # The Net ends in log_softmax; cross_entropy re-normalises log-probabilities to themselves,
            # which lets it add label smoothing (nll_loss cannot).
            loss = F.cross_entropy(out.float(), y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += loss.detach()
            step += 1
            if on_step is not None and (step % 20 == 0 or i == steps_per_epoch - 1):
                done = min((i + 1) * cfg.batch_size, n)
                on_step(epoch, step, total, loss.item(), done / (time.perf_counter() - t0))
        if on_epoch is not None:
            seconds = time.perf_counter() - t0
            on_epoch(epoch, step, total, loss_sum.item() / steps_per_epoch, n / seconds)
    return as_net(model if averaged is None else averaged.module)


def frozen_features(model: Any, x: Any, device: str, amp_dtype: Any) -> Any:
    """Stop conv1 and conv2 training and return `model.trainnet.features` of every image in `x`,
    flattened to (N, 9216), computed under the training autocast (so the values the steps would
    have computed themselves), FEATURE_BATCH_SIZE images at a time into one preallocated tensor."""
    import torch

    from model.trainnet import features

    model.conv1.requires_grad_(False)
    model.conv2.requires_grad_(False)
    out = None
    with torch.no_grad(), autocast(device, amp_dtype):
        for i in range(0, len(x), FEATURE_BATCH_SIZE):
            chunk = features(model, x[i : i + FEATURE_BATCH_SIZE]).flatten(1)
            if out is None:
                out = torch.empty((len(x), chunk.shape[1]), dtype=chunk.dtype, device=chunk.device)
            out[i : i + len(chunk)] = chunk
    return out


def evaluate(model: Any, images: Any, labels: Any, channels_last: bool = True) -> tuple[float, float]:
    """Accuracy and mean NLL loss of `model` (float32 or int8) on uint8 images, in batches of
    EVAL_BATCH_SIZE through a frozen TorchScript trace of it, the graph serving runs (about twice
    as fast as the module here; the same outputs to float rounding). Float32 inputs go in
    channels-last layout as serving's, int8 ones (`channels_last=False`) contiguous."""
    import torch
    import torch.nn.functional as F

    from model.preprocess import normalize

    layout = torch.channels_last if channels_last else torch.contiguous_format
    batches = [
        (
            normalize(images[i : i + EVAL_BATCH_SIZE]).contiguous(memory_format=layout),
            torch.as_tensor(labels[i : i + EVAL_BATCH_SIZE], dtype=torch.long),
        )
        for i in range(0, len(labels), EVAL_BATCH_SIZE)
    ]
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        graph = torch.jit.freeze(torch.jit.trace(model.eval(), batches[0][0], check_trace=False))
    correct, loss = 0, 0.0
    with torch.no_grad():
        for x, y in batches:
            out = graph(x)
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
        accuracy, loss = evaluate(quantize.build(model, qparams), test_x, test_y, channels_last=False)
    log(f"int8 test accuracy {accuracy:.4f}  loss {loss:.4f}")
    return {
        "engine": quantize.ENGINE,
        "calibration_images": int(images.shape[0]),
        "qparams": qparams,
        "test_accuracy": accuracy,
        "test_loss": round(loss, 6),
    }
