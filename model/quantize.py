"""Post-training static int8 quantization of `Net` for CPU serving.

Why: almost all of the float32 network's time is conv2, which already runs near a CPU core's
float32 FMA peak; int8 kernels (x86 engine: fbgemm/oneDNN, VNNI where present) cut the network's
time about threefold (bench/README.md, "Where the time went", names the CPUs and figures).
conv1, conv2 and fc1 run in int8; fc2 (1,280 multiply-adds) and the log-softmax stay float32,
which keeps the log-probabilities close to float32's (tests/serving/test_quantize.py demands
the same prediction on ≥ 99.8 % of the test set).

What is stored: nothing but numbers. Weights are quantized per output channel from the float32
weights in model.pt whenever the network is built, which is deterministic; the only
data-dependent values are the activation ranges ("qparams": a scale and zero point at the
input and after conv1, conv2 and fc1). Training measures them on `CALIBRATION_IMAGES`
training images (`calibrate`) and records them in metadata.json; serving rebuilds the same int8
network from model.pt plus those numbers (`build`). Training evaluates the network `build`
returns, so the int8 accuracy it records is that of the network that is served.

Uses torch's FX graph-mode quantization (`torch.ao.quantization`), which torch marks deprecated
in favour of torchao's pt2e flow but still ships in 2.13; its warnings are silenced here only.
If a later torch names the qparams differently, `build` raises QuantizationError (tests catch
it; the server then serves float32 with a warning). `available()` says whether this torch build
has the x86 engine (not on arm64, which would need qnnpack).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

ENGINE = "x86"
CALIBRATION_IMAGES = 1024
CALIBRATION_BATCH = 256
# Layers kept in float32: fc2 is tiny and sits right before the log-softmax.
FLOAT_LAYERS = ("fc2",)


class QuantizationError(ValueError):
    """The recorded qparams do not fit the int8 network this torch build makes."""


def available() -> bool:
    """True if this torch build has the x86 quantized engine."""
    return ENGINE in torch.backends.quantized.supported_engines


@contextmanager
def quiet() -> Iterator[None]:
    """Run torch.ao quantization code (or an int8 network) without its warnings."""
    # torch.ao.quantization warns on import of each entry point (deprecation) and per observer
    # (reduce_range), and CUDA training's deterministic mode flags quantized tensor allocation
    # (`quantized_resize_cpu_`, which computes nothing): noise, nothing actionable here.
    # Only touched when set: torch.use_deterministic_algorithms imports torch._inductor (~1.4 s
    # of a server's cold start).
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        if deterministic:
            torch.use_deterministic_algorithms(False)
        try:
            yield
        finally:
            if deterministic:
                torch.use_deterministic_algorithms(True, warn_only=warn_only)


def _prepare(net: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    mapping = get_default_qconfig_mapping(ENGINE)
    for name in FLOAT_LAYERS:
        mapping = mapping.set_module_name(name, None)
    example = torch.zeros(1, 1, 28, 28)
    # FX records a symbolised Python stack per node for error messages; symbolising the first
    # one imports torch._dynamo, most of a server worker's cold start (bench/README.md).
    fx_config = torch.fx.config
    saved = getattr(fx_config, "do_not_emit_stack_traces", None)
    if saved is not None:
        fx_config.do_not_emit_stack_traces = True
    try:
        return prepare_fx(net.eval(), mapping, (example,))
    finally:
        if saved is not None:
            fx_config.do_not_emit_stack_traces = saved


_QPARAM = re.compile(r"(?:^|[._])(?:scale|zero_point)(?:_\d+)?$")


def _is_qparam(key: str) -> bool:
    """A scale or zero point: `conv1.scale`, `fc1.zero_point`, `conv1_input_scale_0`, …"""
    return bool(_QPARAM.search(key))


def _converted(net: torch.nn.Module, batches: Iterable[torch.Tensor]) -> torch.nn.Module:
    """A copy of float32 `net` (left unchanged), observed on `batches`, converted to int8."""
    import copy

    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet():
        prepared = _prepare(copy.deepcopy(net).cpu().float())
        with torch.inference_mode():
            for batch in batches:
                prepared(batch.contiguous())
        return convert_fx(prepared)


def calibrate(net: torch.nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Activation qparams of `net` (float32, left unchanged) measured on normalised `images`
    shaped (N, 1, 28, 28); a JSON-ready {name: number} mapping for `build`."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"calibration images must be shaped (N, 1, 28, 28), got {tuple(images.shape)}")
    converted = _converted(net, images.split(CALIBRATION_BATCH))
    return {k: (v.item() if torch.is_tensor(v) else v) for k, v in converted.state_dict().items() if _is_qparam(k)}


def build(net: torch.nn.Module, qparams: dict[str, Any]) -> torch.nn.Module:
    """The int8 network for float32 `net` (left unchanged) and `calibrate`'s qparams."""
    # The observers need one pass to convert; the ranges they saw are replaced below.
    converted = _converted(net, [torch.zeros(1, 1, 28, 28)])
    state = converted.state_dict()
    expected = {k for k in state if _is_qparam(k)}
    if not isinstance(qparams, dict) or set(qparams) != expected:
        got = sorted(qparams) if isinstance(qparams, dict) else type(qparams).__name__
        raise QuantizationError(f"int8 qparams {got} do not match this network's {sorted(expected)}")
    for key in expected:
        value = qparams[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise QuantizationError(f"int8 qparam {key} is {value!r}, not a number")
        if "scale" in key and not value > 0:
            raise QuantizationError(f"int8 qparam {key} is {value!r}, not a positive scale")
        old = state[key]
        state[key] = torch.tensor(value, dtype=old.dtype) if torch.is_tensor(old) else type(old)(value)
    converted.load_state_dict(state)
    return converted.eval()
