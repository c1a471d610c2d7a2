"""Reading a spec file and the model contract it points at: YAML with positions (mlctl/_yaml.py),
the models (mlctl/spec.py, mlctl/contract.py), and every problem rendered as one
`file:line:col field.path: message` line, all reported at once.
"""

from __future__ import annotations

import difflib
import functools
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mlctl import _yaml
from mlctl.contract import CONTRACT_FILE, Contract, find_class
from mlctl.errors import SpecError, UsageError
from mlctl.spec import SPEC_VERSION, Problem, Spec, _models_in


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate a spec file and the model contract it names: the one entry
    point to a Spec (its `contract` is loaded and checked here too).

    Raises SpecError (exit 2) with one `file:line:col field.path: problem` line per problem, or
    UsageError when the file cannot be read.
    """
    spec, doc = _load(Path(path), Spec, str(path), what="spec", hint="pass the path of a spec, e.g. spec/mnist.yaml")
    assert isinstance(spec, Spec)
    if not spec.model.is_dir():
        _, mark = doc.locate(("model",))
        raise SpecError(
            str(path),
            [f"{path}:{mark.line}:{mark.column} model: {spec.model} is not a folder (a model package)"],
        )
    load_contract(spec.model)
    return spec


def load_contract(package: Path) -> Contract:
    """Read and check a model package's `model.yaml`, and find its class and methods in the
    package's source (without importing it). Raises SpecError with every problem's file and line.
    Read once per version of the file (its path, size and modification time)."""
    file = package / CONTRACT_FILE
    try:
        stat = file.stat()
    except OSError:
        return _read_contract(package, file, None)
    return _read_contract(package, file, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _read_contract(package: Path, file: Path, version: tuple[int, int] | None) -> Contract:
    if not file.is_file():
        raise UsageError(
            f"{file}: no such file: a model package holds its contract in {CONTRACT_FILE}",
            hint="docs/model-contract.md describes it; model/model.yaml is an example",
        )
    contract, _ = _load(file, Contract, str(file), what="model contract")
    assert isinstance(contract, Contract)
    problems = find_class(package, contract.model_class)
    if problems:
        raise SpecError(str(file), [str(p) for p in problems], "model package")
    return contract


def _load(
    file: Path, root: type[BaseModel], shown: str, what: str, hint: str | None = None
) -> tuple[BaseModel, _yaml.Document]:
    """The file's document validated as `root`, and the document (for positions)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"{shown}: no such file", hint=hint) from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{shown}: is a directory, not a spec file") from exc
    except PermissionError as exc:
        raise UsageError(f"{shown}: permission denied") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(shown, [f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})"], what) from exc

    try:
        doc = _yaml.parse(text)
    except _yaml.YamlSyntaxError as exc:
        where = f":{exc.mark.line}:{exc.mark.column}" if exc.mark else ""
        raise SpecError(shown, [f"{shown}{where} {exc.message}"], what) from exc
    if doc.data is None:
        raise SpecError(shown, [f"{shown}:1:1 the file is empty; it needs at least `apiVersion: {SPEC_VERSION}`"], what)
    if not isinstance(doc.data, dict):
        keys = ", ".join(f.alias or n for n, f in list(root.model_fields.items())[:3])
        kind = type(doc.data).__name__
        raise SpecError(shown, [f"{shown}:1:1 this file is a mapping of keys ({keys}, …), not a {kind}"], what)

    problems = [
        f"{shown}:{m.line}:{m.column} {_dotted(p)}: duplicate key (an earlier one would be ignored)"
        for p, m in doc.duplicates
    ]
    try:
        loaded = root.model_validate(doc.data, context={"base_dir": file.parent.absolute()})
    except ValidationError as exc:
        problems += sorted((_describe(shown, doc, err, root) for err in exc.errors()), key=_position)
    if problems:
        raise SpecError(shown, problems, what)
    return loaded, doc


def _position(problem: str) -> tuple[int, int]:
    line, col = problem.split(" ", 1)[0].rsplit(":", 2)[1:]
    return int(line), int(col)


def _describe(shown: str, doc, err, root: type[BaseModel]) -> str:
    """One pydantic error as `file:line:col path: message`."""
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, Problem):
        loc += cause.loc
    found, mark = doc.locate(loc)
    # The segments that are YAML keys, plus a final one that is absent (a missing or unknown
    # key); a discriminated union's tag in between is neither.
    shown_path = [*found, *([] if found and found[-1] == loc[-1] else loc[-1:])]
    return f"{shown}:{mark.line}:{mark.column} {_dotted(shown_path) or '(top level)'}: {_message(err, loc, root)}"


def _message(err, loc, root: type[BaseModel]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err["ctx"]
        return f"{ctx['discriminator'].strip(chr(39))}: {ctx['tag']!r} is not one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        tag = err["ctx"]["discriminator"].strip("'")
        return f"required key `{tag}` is missing ({' or '.join(_tags(root, loc, tag))})"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if kind != "value_error" and not isinstance(value, (dict, list)) and "input" in err:
        msg += f" (got {value!r})"
    return msg


def _tags(root: type[BaseModel], loc, tag: str) -> list[str]:
    """The values a discriminated union at `loc` accepts for its tag key."""
    members = _members(root, loc)
    return [v for m in members for v in typing.get_args(m.model_fields[tag].annotation)]


def _members(root: type[BaseModel], loc) -> list[type[BaseModel]]:
    """The models a location may hold (several for a union), following YAML keys from `root`."""
    members: list[type[BaseModel]] = [root]
    for segment in loc:
        if isinstance(segment, int):
            continue
        fields = {f.alias or n: f for m in members for n, f in m.model_fields.items()}
        if segment not in fields:
            return []
        members = _models_in(fields[segment].annotation)
    return members


def _allowed_keys(root: type[BaseModel], loc) -> list[str]:
    """The YAML keys the model at `loc` accepts, for 'did you mean' hints."""
    members: list[type[BaseModel]] = [root]
    for segment in loc:
        if isinstance(segment, int):  # an item of a list
            continue
        fields = {f.alias or n: f for m in members for n, f in m.model_fields.items()}
        if segment in fields:
            members = _models_in(fields[segment].annotation)
        else:  # a discriminated union's tag (`kubernetes`) names the member
            members = [m for m in members if segment in typing.get_args(m.model_fields["kind"].annotation)]
        if len(members) != 1 and segment not in fields:
            return []
    if len(members) != 1:
        return []
    return sorted(f.alias or n for n, f in members[0].model_fields.items())


def _dotted(path) -> str:
    out = ""
    for segment in path:
        out += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if out else str(segment))
    return out
