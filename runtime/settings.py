"""The model server's settings: each environment variable, its default and its allowed values,
written once (standard library and PyYAML only: the serving image has no pydantic).

The request bounds (image bytes and pixels, batch) default to what the package's contract,
model.yaml in the package folder (MODEL_PACKAGE), declares (`contract_bounds`): mlctl validates that file, the server
reads those numbers from it, so the contract's bounds are the ones enforced.

The server reads its settings from the environment only (`ServingSettings.from_env`; the
SeldonDeployment's graph `parameters` are not used). mlctl builds a local server's environment
from the same object (`to_env`), its spec and the chart's values take their defaults from
`DEFAULTS`, and tests check the chart's container env and the serving Dockerfile's ENV
against it. Some variables are read by the Seldon wrapper itself, not by runtime/seldon.py
(`wrapper` below): the server cannot check those, so mlctl's spec does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PRECISIONS = ("int8", "float32")
"""int8: the network quantized with the activation ranges training recorded; float32: as trained."""
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_BATCH = 64
PACKAGE_ENV = "MODEL_PACKAGE"
"""The model package's folder (the one holding model.yaml): the images set it, so does mlctl's
local server; without it, the repository's own package beside this runtime."""


def package_folder(environ: Mapping[str, str] | None = None) -> Path:
    """The model package this server serves (its folder)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(PACKAGE_ENV) or Path(__file__).resolve().parent.parent / "model")


CONTRACT_FILE = package_folder() / "model.yaml"


def contract_bounds(path: Path = CONTRACT_FILE) -> dict[str, int]:
    """The request bounds a contract declares, as ServingSettings fields: its image input's
    maxBytes and maxPixels, its maxBatch. What it leaves out (or a missing file) keeps the
    defaults above. (Read from the YAML itself, not `runtime.contract.read`: a contract that
    does not load still must not stop the settings from loading.)"""
    import yaml  # PyYAML: every serving image has it (seldon-core and kserve depend on it)

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    doc = doc if isinstance(doc, dict) else {}
    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), list) else []
    image = next((i for i in inputs if isinstance(i, dict) and i.get("kind") == "image"), {})
    found = {
        "max_image_bytes": image.get("maxBytes"),
        "max_image_pixels": image.get("maxPixels"),
        "max_batch": doc.get("maxBatch"),
    }
    return {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 1}


_BOUNDS = contract_bounds()
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart envelope or a JSON array around an image: a request body may be this much
more than MODEL_MAX_IMAGE_BYTES (both engines refuse a larger one with 413)."""


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


def _setting(
    default: Any,
    env: str,
    doc: str,
    *,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    pattern: tuple[str, str] | None = None,
    wrapper: bool = False,
) -> Any:
    """A field and its variable; `pattern`: (the regex a lower-cased value must match, its wording)."""
    meta = {"env": env, "doc": doc, "minimum": minimum, "choices": choices, "pattern": pattern, "wrapper": wrapper}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServingSettings:
    """What one model server runs with."""

    model_uri: str = _setting("/mnt/models", "MODEL_URI", "folder with metadata.json and the weights")
    model_sha256: str = _setting(
        "",
        "MODEL_SHA256",
        "the only weights to load (64 hex digits); empty: any consistent artifact",
        pattern=(r"[0-9a-f]{64}", "64 hex digits"),
    )
    precision: str = _setting("int8", "MODEL_PRECISION", "network arithmetic", choices=PRECISIONS)
    torch_threads: int = _setting(1, "TORCH_THREADS", "torch intra-op threads per worker", minimum=1)
    workers: int = _setting(2, "GUNICORN_WORKERS", "gunicorn worker processes", minimum=1, wrapper=True)
    threads: int = _setting(1, "GUNICORN_THREADS", "threads per gunicorn worker", minimum=1, wrapper=True)
    grpc_workers: int = _setting(1, "GRPC_WORKERS", "gRPC server processes (0: none)", minimum=0, wrapper=True)
    max_image_bytes: int = _setting(
        _BOUNDS.get("max_image_bytes", DEFAULT_MAX_BYTES),
        "MODEL_MAX_IMAGE_BYTES",
        "largest accepted image, in bytes",
        minimum=1,
    )
    max_image_pixels: int = _setting(
        _BOUNDS.get("max_image_pixels", DEFAULT_MAX_PIXELS),
        "MODEL_MAX_IMAGE_PIXELS",
        "largest accepted width × height",
        minimum=1,
    )
    max_batch: int = _setting(
        _BOUNDS.get("max_batch", DEFAULT_MAX_BATCH),
        "MODEL_MAX_BATCH",
        "most images one JSON request may carry",
        minimum=1,
    )
    metrics_flush_s: float = _setting(
        0.5, "MODEL_METRICS_FLUSH_S", "seconds custom metrics are summed before they are handed on", minimum=0
    )
    skip_empty_metric_updates: bool = _setting(
        True, "MODEL_SKIP_EMPTY_METRIC_UPDATES", "skip the wrapper's metrics round trip when nothing is recorded"
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
    """`raw` as the field's type, or SettingsError saying what the variable accepts."""
    meta, kind = f.metadata, type(f.default)
    value: Any = raw
    if kind is bool:
        ok, value, accepted = raw in ("0", "1"), raw == "1", "0 or 1"
    elif kind in (int, float):
        accepted = f"a {'whole ' if kind is int else ''}number"
        try:
            value = kind(raw)
        except ValueError:
            ok = False
        else:
            ok = meta["minimum"] is None or value >= meta["minimum"]
            accepted += "" if ok else f" ≥ {meta['minimum']:g}"
    elif meta["choices"]:
        value = raw.lower()
        ok, accepted = value in meta["choices"], "one of " + ", ".join(meta["choices"])
    elif meta["pattern"]:
        value = raw.lower()
        ok, accepted = re.fullmatch(meta["pattern"][0], value) is not None, meta["pattern"][1]
    else:
        ok, accepted = True, ""
    if not ok:
        raise SettingsError(f"{meta['env']}={raw!r}: expected {accepted}")
    return value


DEFAULTS = ServingSettings()
"""The defaults, for the spec, the chart values and the local server."""
