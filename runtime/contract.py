"""The model contract as the server reads it: model.yaml in the package folder, already validated.

`mlctl validate` checks model.yaml against its schema (mlctl/contract.py, pydantic, with file and
line for every mistake) before any image is built; the server, which carries neither mlctl nor
pydantic, reads the same file with PyYAML into these small frozen records and trusts its shape.
A test reads every shipped contract both ways and holds them equal. Standard library and
PyYAML only: mlctl reads the bounds through here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT_FILE = "model.yaml"


class ContractError(ValueError):
    """model.yaml is missing or not what mlctl validated."""


@dataclass(frozen=True)
class Input:
    """One input a request may carry: an encoded image or a numeric tensor."""

    name: str
    kind: str
    """`image` or `tensor`."""
    mode: str = "L"
    """image: the pixel mode the model gets (L: (H, W) uint8; RGB: (H, W, 3) uint8)."""
    max_bytes: int | None = None
    max_pixels: int | None = None
    min_decode_side: int | None = None
    """image: a large JPEG may be decoded at a reduced scale keeping each side this long."""
    datatypes: tuple[str, ...] = ()
    """tensor: the OIP datatypes accepted, the preferred first."""
    shape: tuple[int, ...] = ()
    """tensor: the declared shape, batch first as -1."""
    value_range: tuple[float, float] | None = None
    """tensor: the smallest and largest value accepted, when declared."""

    @property
    def item_shape(self) -> tuple[int, ...]:
        """One item's shape: the declared shape without its batch dimension."""
        return self.shape[1:]

    @property
    def item_elements(self) -> int:
        return math.prod(self.item_shape)


@dataclass(frozen=True)
class Contract:
    """What the server needs of model.yaml."""

    cls: str
    """`module:Class`, importable from the package's parent folder."""
    inputs: tuple[Input, ...]
    output_name: str
    labels: tuple[str, ...]
    scores: str
    max_batch: int

    @property
    def image_input(self) -> Input | None:
        return next((i for i in self.inputs if i.kind == "image"), None)

    @property
    def tensor_input(self) -> Input | None:
        """The first tensor input: what a request without input names (Seldon's ndarray) feeds."""
        return next((i for i in self.inputs if i.kind == "tensor"), None)

    def input(self, name: str) -> Input | None:
        return next((i for i in self.inputs if i.name == name), None)


def _input(raw: dict[str, Any]) -> Input:
    value_range = raw.get("range")
    return Input(
        name=str(raw["name"]),
        kind=str(raw["kind"]),
        mode=str(raw.get("mode", "L")),
        max_bytes=raw.get("maxBytes"),
        max_pixels=raw.get("maxPixels"),
        min_decode_side=raw.get("minDecodeSide"),
        datatypes=tuple(raw.get("datatype") or ()),
        shape=tuple(raw.get("shape") or ()),
        value_range=(float(value_range[0]), float(value_range[1])) if value_range else None,
    )


def read(folder: str | Path) -> Contract:
    """The contract of the package in `folder` (ContractError when absent or malformed)."""
    import yaml  # PyYAML: both serving images have it (seldon-core and kserve depend on it)

    path = Path(folder) / CONTRACT_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        output = doc["output"]
        return Contract(
            cls=str(doc["class"]),
            inputs=tuple(_input(i) for i in doc["inputs"]),
            output_name=str(output["name"]),
            labels=tuple(str(label) for label in output["labels"]),
            scores=str(output.get("scores", "probabilities")),
            max_batch=int(doc.get("maxBatch", 64)),
        )
    except OSError as e:
        raise ContractError(f"{path}: {e.strerror or e}") from None
    except (yaml.YAMLError, KeyError, TypeError, ValueError, IndexError) as e:
        raise ContractError(f"{path}: not a valid model contract ({e!r}); run `mlctl validate`") from None
