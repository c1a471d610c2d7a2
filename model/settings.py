"""The model server's settings: each environment variable, its default and its allowed values,
written once (standard library only: the serving image has no pydantic).

The server reads its settings from the environment only (`ServingSettings.from_env`; the
SeldonDeployment's graph `parameters` are not used). mlctl builds a local server's environment
from the same object (`to_env`), its spec and the chart's values take their defaults from
`DEFAULTS`, and tests check the chart's container env and the serving Dockerfile's ENV
against it. Some variables are read by the Seldon wrapper itself, not by model/serving.py
(`wrapper` below): the server cannot check those, so mlctl's spec does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

PRECISIONS = ("int8", "float32")
"""int8: the network quantized with the activation ranges training recorded; float32: as trained."""
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


def _setting(
    default: Any,
    env: str,
    doc: str,
    *,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    wrapper: bool = False,
) -> Any:
    meta = {"env": env, "doc": doc, "minimum": minimum, "choices": choices, "wrapper": wrapper}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServingSettings:
    """What one model server runs with."""

    model_uri: str = _setting("/mnt/models", "MODEL_URI", "folder with metadata.json and the weights")
    model_sha256: str = _setting(
        "", "MODEL_SHA256", "the only weights to load (64 hex digits); empty: any consistent artifact"
    )
    precision: str = _setting("int8", "MNIST_PRECISION", "network arithmetic", choices=PRECISIONS)
    torch_threads: int = _setting(1, "TORCH_THREADS", "torch intra-op threads per worker", minimum=1)
    workers: int = _setting(2, "GUNICORN_WORKERS", "gunicorn worker processes", minimum=1, wrapper=True)
    threads: int = _setting(1, "GUNICORN_THREADS", "threads per gunicorn worker", minimum=1, wrapper=True)
    grpc_workers: int = _setting(1, "GRPC_WORKERS", "gRPC server processes (0: none)", minimum=0, wrapper=True)
    max_image_bytes: int = _setting(
        DEFAULT_MAX_BYTES, "MNIST_MAX_IMAGE_BYTES", "largest accepted image, in bytes", minimum=1
    )
    max_image_pixels: int = _setting(
        DEFAULT_MAX_PIXELS, "MNIST_MAX_IMAGE_PIXELS", "largest accepted width × height", minimum=1
    )
    metrics_flush_s: float = _setting(
        0.5, "MNIST_METRICS_FLUSH_S", "seconds custom metrics are summed before they are handed on", minimum=0
    )
    skip_empty_metric_updates: bool = _setting(
        True, "MNIST_SKIP_EMPTY_METRIC_UPDATES", "skip the wrapper's metrics round trip when nothing is recorded"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """The settings an environment gives; unset or empty variables take the defaults.

        Raises SettingsError naming the variable, its value and what it accepts.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _parse(f, raw)
        return replace(DEFAULTS, **values)

    def to_env(self) -> dict[str, str]:
        """The environment that gives these settings (every variable, as text)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.metadata["env"]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


def env_name(setting: str) -> str:
    """The environment variable of a ServingSettings field."""
    return {f.name: f.metadata["env"] for f in fields(ServingSettings)}[setting]


def _parse(f: Any, raw: str) -> Any:
    env, kind = f.metadata["env"], type(f.default)
    accepted = ""
    try:
        if kind is bool:
            if raw not in ("0", "1"):
                raise ValueError
            return raw == "1"
        if kind in (int, float):
            accepted = f"a {'whole ' if kind is int else ''}number"
            value = kind(raw)
            if f.metadata["minimum"] is not None and value < f.metadata["minimum"]:
                accepted += f" ≥ {f.metadata['minimum']:g}"
                raise ValueError
            return value
        value = raw.lower() if f.metadata["choices"] or f.name == "model_sha256" else raw
        if f.metadata["choices"] and value not in f.metadata["choices"]:
            raise ValueError
        if f.name == "model_sha256" and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError
        return value
    except ValueError:
        if kind is bool:
            accepted = "0 or 1"
        elif f.metadata["choices"]:
            accepted = "one of " + ", ".join(f.metadata["choices"])
        elif f.name == "model_sha256":
            accepted = "64 hex digits"
        raise SettingsError(f"{env}={raw!r}: expected {accepted or 'a value'}") from None


DEFAULTS = ServingSettings()
"""The defaults, for the spec, the chart values and the local server."""
