"""The model contract: `model.yaml` beside a model package, what mlctl knows about a model
without running it.

A model package is a folder of Python code with one `model.yaml`. The contract names the model
class (`module:Class`, importable from the package folder's parent, with `load` and `predict`),
the inputs it takes in Open Inference Protocol terms (few content kinds: an `image` with its
byte, pixel and mode bounds, a numeric `tensor` with its datatypes and shape), its one output
(the class labels and what the scores are), the batch bound, the training command, and the
**examples**: input files with the label the model must answer, and bad inputs with the 4xx
status a server must answer. The examples are what every target's smoke test and the chart's
`helm test` pod post (`mlctl.targets.shared.check`). Like the spec: camelCase keys, unknown keys are errors,
relative paths are relative to the contract file, and every problem is reported with its file,
line and field (`mlctl.specload.load_contract`).

Checked here without importing the package (it may import torch): the class's module file, the
class and its two methods are found in the source itself (`ast`), each failure naming the file
and line it was looked for in (`find_class`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlctl.spec import SPEC_VERSION, Problem, SpecPath, Strict
from runtime.settings import DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

CONTRACT_FILE = "model.yaml"
DATATYPES = ("FP32", "FP64", "INT32", "INT64", "UINT8")
"""Open Inference Protocol datatypes a `tensor` input may declare."""
REQUIRED_METHODS = ("load", "predict")
_CLASS_REF = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def kind_of(file: Path) -> Literal["image", "tensor"]:
    """What a file holds: a `.json` file is a tensor (a JSON array of numbers), any other an
    encoded image."""
    return "tensor" if file.suffix == ".json" else "image"


class ImageInput(Strict):
    """An encoded image (PNG, JPEG, …) in the request: Seldon's multipart `binData`, V2 `BYTES`."""

    name: Annotated[str, Field(pattern=_NAME)]
    """The input's name in Open Inference Protocol requests."""
    kind: Literal["image"]
    """`image`: the bytes of one encoded image per item."""
    mode: Literal["L", "RGB"] = "L"
    """The pixels the model is given: `L` (8-bit grey) or `RGB`."""
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=256 * 1024 * 1024)
    """The largest encoded image accepted (413 above it), checked before decoding. The server
    enforces what this says (it reads the bounds from model.yaml)."""
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, le=400_000_000)
    """The most pixels (width × height) accepted, read from the header before decoding (413)."""
    min_decode_side: int | None = Field(None, ge=1, le=65536)
    """For a model that shrinks its images anyway: a large JPEG may be decoded at 1/2, 1/4 or
    1/8 scale while each side stays at least this long (much faster). Empty: full size."""


class TensorInput(Strict):
    """A numeric tensor in the request (JSON numbers, or V2's binary tensor extension)."""

    name: Annotated[str, Field(pattern=_NAME)]
    """The input's name in Open Inference Protocol requests."""
    kind: Literal["tensor"]
    """`tensor`: numbers, one array of `shape` per item."""
    datatype: list[Literal[DATATYPES]] = Field(min_length=1)  # type: ignore[valid-type]
    """The datatypes accepted, e.g. [FP32] or [UINT8, FP32]; the first is the metadata's."""
    shape: list[int] = Field(min_length=2, max_length=8)
    """The shape with the batch first, as -1: [-1, 4] is a batch of rows of four numbers. A
    request may send any shape holding the same number of elements per item."""
    range: tuple[float, float] | None = None
    """The smallest and largest value accepted, e.g. [0, 255]; others are a 400 before the model
    sees them. Empty: any finite number."""

    @model_validator(mode="after")
    def _batch_first(self) -> TensorInput:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise Problem("the range is [smallest, largest], smallest first", "range")
        if self.shape[0] != -1:
            raise Problem("the first dimension is the batch: write it as -1", "shape", 0)
        for i, size in enumerate(self.shape[1:], start=1):
            if size < 1:
                raise Problem(f"dimension {i} must be a size ≥ 1 (only the batch, first, is -1)", "shape", i)
        return self

    @property
    def item_rank(self) -> int:
        """How many dimensions one item has (the shape after the batch)."""
        return len(self.shape) - 1


Input = Annotated[ImageInput | TensorInput, Field(discriminator="kind")]


class Output(Strict):
    """The model's one output: a row of scores per item, one score per class label."""

    name: Annotated[str, Field(pattern=_NAME)] = "scores"
    """The output's name in Open Inference Protocol answers."""
    labels: list[Annotated[str, Field(min_length=1)]] = Field(min_length=2)
    """The class labels, in the order of the scores."""
    scores: Literal["probabilities", "log-probabilities", "logits"] = "probabilities"
    """What the scores are (clients turn log-probabilities and logits into probabilities)."""

    @model_validator(mode="after")
    def _unique(self) -> Output:
        seen: set[str] = set()
        for i, label in enumerate(self.labels):
            if label in seen:
                raise Problem(f"label {label!r} appears twice", "labels", i)
            seen.add(label)
        return self


class Example(Strict):
    """An input file and what a server must answer to it: a label, or a 4xx status."""

    input: SpecPath
    """The file posted (an image's bytes, or a tensor as a JSON array). Relative to model.yaml."""
    expect: str | None = None
    """The label the model must predict."""
    status: int | None = Field(None, ge=400, le=499)
    """The HTTP status a bad input must be answered with (e.g. 400, 413)."""

    @model_validator(mode="after")
    def _one_answer(self) -> Example:
        if (self.expect is None) == (self.status is None):
            raise Problem("give exactly one of `expect` (a label) or `status` (a 4xx)", "expect")
        if not self.input.is_file():
            raise Problem(f"{self.input} does not exist (or is not a file)", "input")
        if not re.match(_FILE_NAME, self.input.name):
            raise Problem(
                f"{self.input.name!r}: an example's file name is letters, digits, '.', '_' and '-' "
                "(the helm test ConfigMap keys its files by name)",
                "input",
            )
        return self

    @property
    def kind(self) -> Literal["image", "tensor"]:
        return kind_of(self.input)


class Training(Strict):
    """How the model is trained: a command mlctl runs with the spec's training settings."""

    command: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    """The training command, run in the package folder's parent (the training image's working
    folder): mlctl appends the data folder, the hyper-parameters and `--out FOLDER`, the one
    folder it writes model.pt and metadata.json to. `python` is the runner's own interpreter."""


class Contract(Strict):
    """A model package's contract (model.yaml)."""

    api_version: Literal["mlctl/v1"] = Field(SPEC_VERSION, alias="apiVersion")
    """Contract format version."""
    kind: Literal["Model"] = "Model"
    """What this file describes."""
    model_class: Annotated[str, Field(pattern=_CLASS_REF, alias="class")]
    """The model class as `module:Class`, importable from the package folder's parent, with
    `load(folder)` and `predict(inputs)`."""
    inputs: list[Input] = Field(min_length=1)
    """What a request may carry: one of these inputs."""
    output: Output
    """The answer: one score per class label."""
    max_batch: int = Field(DEFAULT_MAX_BATCH, ge=1, le=4096)
    """The most items one request may carry (413 above it), as the server enforces it."""
    training: Training
    """How the model is trained."""
    examples: list[Example] = Field(min_length=1)
    """Inputs with their expected answers, posted by every smoke test and `helm test`."""

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        names = [i.name for i in self.inputs]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise Problem(f"input {name!r} is declared twice", "inputs", i, "name")
        for i, example in enumerate(self.examples):
            if example.expect is not None and example.expect not in self.output.labels:
                raise Problem(
                    f"{example.expect!r} is not one of output.labels ({', '.join(self.output.labels)})",
                    "examples",
                    i,
                    "expect",
                )
        files = [e.input.name for e in self.examples]
        for i, name in enumerate(files):
            if name in files[:i]:
                raise Problem(f"two examples are named {name} (one file name each)", "examples", i, "input")
        kinds = {i.kind for i in self.inputs}
        for i, example in enumerate(self.examples):
            if example.kind not in kinds:
                raise Problem(
                    f"{example.input.name} is {'a tensor (.json)' if example.kind == 'tensor' else 'an image'}, "
                    f"but no input is of kind {example.kind}",
                    "examples",
                    i,
                    "input",
                )
        if all(e.expect is None for e in self.examples):
            raise Problem("needs at least one example with `expect` (an input the model must get right)", "examples")
        return self

    def input_for(self, file: Path) -> ImageInput | TensorInput | None:
        """The input a file is posted as: the first declared input of its kind (`kind_of`)."""
        return next((i for i in self.inputs if i.kind == kind_of(file)), None)

    @property
    def labelled_examples(self) -> list[Example]:
        return [e for e in self.examples if e.expect is not None]


def contract_json_schema() -> dict:
    """The JSON Schema of model.yaml (by alias: its camelCase keys)."""
    return Contract.model_json_schema(by_alias=True)


@dataclass(frozen=True)
class Located:
    """A problem found in a source file, at a line."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.message}"


def find_class(package: Path, reference: str) -> list[Located]:
    """Check that `module:Class` is defined in `package`'s source with load() and predict(),
    without importing it; returns the problems found (none when all is well)."""
    module, _, name = reference.partition(":")
    parts = module.split(".")
    if parts[0] != package.name:
        return [
            Located(
                package / CONTRACT_FILE,
                1,
                f"class: {module} is not in this package: its module must start with `{package.name}.`",
            )
        ]
    base = package.parent.joinpath(*parts)
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        return [Located(package / CONTRACT_FILE, 1, f"class: no module {module} ({candidates[0]} does not exist)")]
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except SyntaxError as exc:
        return [Located(source, exc.lineno or 1, f"syntax error: {exc.msg}")]
    found = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if found is None:
        return [Located(source, 1, f"no class {name} at the top level of {module}")]
    methods = {n.name: n for n in found.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return [
        Located(source, found.lineno, f"class {name} has no `{method}` method (the contract's two: load, predict)")
        for method in REQUIRED_METHODS
        if method not in methods
    ]
