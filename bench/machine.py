"""What machine a benchmark ran on: the CPU model, the instruction sets that decide which kernels
torch runs (bf16, AMX, VNNI), the CPUs this process may use, and torch's engines. Every benchmark
prints this first, so figures from different machine kinds are never mixed."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# The flags that change which kernels oneDNN and fbgemm pick for this network.
FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu_info() -> dict:
    text = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return {
        "model": model.group(1).strip() if model else platform.processor() or "unknown",
        "cpus": len(os.sched_getaffinity(0)),
        "flags": [f for f in FLAGS if f in present],
    }


def torch_info() -> dict:
    """torch's version and engines; empty where torch does not import."""
    try:
        import torch
    except ImportError:
        return {}
    return {
        "torch": torch.__version__,
        "quantized_engines": [e for e in torch.backends.quantized.supported_engines if e != "none"],
        "quantized_engine": torch.backends.quantized.engine,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkldnn_bf16": bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()),
    }


def describe() -> dict:
    return {"cpu": cpu_info(), **torch_info()}


def headline(info: dict) -> str:
    cpu = info["cpu"]
    engine = f", torch {info['torch']}, int8 engine {info['quantized_engine']}" if "torch" in info else ""
    return f"machine: {cpu['model']}, {cpu['cpus']} CPUs, flags {' '.join(cpu['flags']) or 'none of note'}{engine}"
