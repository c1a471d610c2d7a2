"""Reading a spec file: YAML with positions (mlctl/_yaml.py), the models (mlctl/spec.py), and
every problem rendered as one `file:line:col field.path: message` line, all reported at once.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mlctl import _yaml
from mlctl.errors import SpecError, UsageError
from mlctl.spec import SPEC_VERSION, Problem, Spec, _models_in


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate a spec file: the one entry point to a Spec.

    Raises SpecError (exit 2) with one `file:line:col field.path: problem` line per problem, or
    UsageError when the file cannot be read.
    """
    shown = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"{shown}: no such file", hint="pass the path of a spec, e.g. spec/mnist.yaml") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{shown}: is a directory, not a spec file") from exc
    except PermissionError as exc:
        raise UsageError(f"{shown}: permission denied") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(shown, [f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc

    try:
        doc = _yaml.parse(text)
    except _yaml.YamlSyntaxError as exc:
        where = f":{exc.mark.line}:{exc.mark.column}" if exc.mark else ""
        raise SpecError(shown, [f"{shown}{where} {exc.message}"]) from exc
    if doc.data is None:
        raise SpecError(shown, [f"{shown}:1:1 the file is empty; a spec needs at least `apiVersion: {SPEC_VERSION}`"])
    if not isinstance(doc.data, dict):
        raise SpecError(
            shown,
            [
                f"{shown}:1:1 a spec is a mapping of keys (apiVersion, name, training, …), "
                f"not a {type(doc.data).__name__}"
            ],
        )

    problems = [
        f"{shown}:{m.line}:{m.column} {_dotted(p)}: duplicate key (an earlier one would be ignored)"
        for p, m in doc.duplicates
    ]
    try:
        spec = Spec.model_validate(doc.data, context={"base_dir": file.parent.absolute()})
    except ValidationError as exc:
        problems += sorted((_describe(shown, doc, err) for err in exc.errors()), key=_position)
    if problems:
        raise SpecError(shown, problems)
    return spec


def _position(problem: str) -> tuple[int, int]:
    line, col = problem.split(" ", 1)[0].rsplit(":", 2)[1:]
    return int(line), int(col)


def _describe(shown: str, doc, err) -> str:
    """One pydantic error as `file:line:col path: message`."""
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, Problem):
        loc += cause.loc
    found, mark = doc.locate(loc)
    # Keep the segments that are YAML keys, plus a final one that is absent (a missing or unknown
    # key); drop those that are neither (a discriminated union's tag).
    shown_path = [s for i, s in enumerate(loc) if loc[: i + 1] == found[: i + 1] or i == len(loc) - 1]
    return f"{shown}:{mark.line}:{mark.column} {_dotted(shown_path) or '(top level)'}: {_message(err, loc)}"


def _message(err, loc) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        tag = err["ctx"]["discriminator"].strip("'")
        return f"required key `{tag}` is missing (local or kubernetes)"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if kind != "value_error" and not isinstance(value, (dict, list)) and "input" in err:
        msg += f" (got {value!r})"
    return msg


def _allowed_keys(loc) -> list[str]:
    """The YAML keys the model at `loc` accepts, for 'did you mean' hints."""
    members: list[type[BaseModel]] = [Spec]
    for segment in loc:
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
