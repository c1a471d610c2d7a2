"""Typed results: each command's outcome is a dataclass, and its JSON comes from one function.

`to_json` turns a result (and the results inside it) into plain data with camelCase keys, the
casing of every `--json` output and of the spec; maps that are data rather than fields (chart
values, a smoke test's answer) keep their keys. A result subclasses `Result` to get `as_dict`;
fields marked `internal()` stay out of the JSON.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel


def internal(**kwargs: Any) -> Any:
    """A dataclass field kept out of the JSON (an object for the text view, a path for later)."""
    return dataclasses.field(metadata={"json": False}, **kwargs)


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            to_camel(f.name): to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Result:
    """Mixin of the result dataclasses: `as_dict()` is `to_json(self)`."""

    def as_dict(self) -> dict[str, Any]:
        return to_json(self)
