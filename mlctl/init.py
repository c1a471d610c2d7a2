"""`mlctl init DIR`: a new project that validates at once, from a blank model or a shipped one.

A starting point is `blank` (mlctl/templates/blank: a contract with one tensor input, a class
with `load` and `predict` over a nearest-centroid rule, a training script, one example) or any
spec this installation ships (spec/*.yaml and examples/*/spec.yaml, by the name of its file or
folder): its model package is copied beside a copy of its spec, whose paths then point into the
new folder (the package, the models folder) or, for data, at the same files as before.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mlctl.errors import UsageError
from mlctl.tools import PROJECT_ROOT

BLANK = Path(__file__).resolve().parent / "templates" / "blank"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def starting_points(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """{name: spec file} of the specs shipped with mlctl, plus `blank`."""
    found = {p.stem: p for p in sorted((root / "spec").glob("*.yaml"))}
    found |= {p.parent.name: p for p in sorted((root / "examples").glob("*/spec.yaml"))}
    return {"blank": BLANK / "spec.yaml", **found}


def _package_name(folder: Path) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", folder.name.lower()).strip("_") or "project"
    return name if not name[0].isdigit() else f"m_{name}"


def init(folder: Path, start: str = "blank", root: Path = PROJECT_ROOT) -> dict[str, object]:
    """Write the project into `folder` (new or empty); returns what was written."""
    points = starting_points(root)
    if start not in points:
        raise UsageError(f"--from {start!r}: not a starting point", hint="choose one of " + ", ".join(points))
    folder = folder.absolute()
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder}: not empty", hint="choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    project = re.sub(r"[^a-z0-9-]", "-", folder.name.lower()).strip("-")[:40] or "project"
    if start == "blank":
        package = _package_name(folder)
        shutil.copytree(BLANK, folder / package, ignore=shutil.ignore_patterns("spec.yaml", *("__pycache__", "*.pyc")))
        for file in (folder / package).rglob("*"):
            if file.is_file() and file.suffix in (".py", ".yaml"):
                file.write_text(file.read_text(encoding="utf-8").replace("PACKAGE", package), encoding="utf-8")
        spec_text = (BLANK / "spec.yaml").read_text(encoding="utf-8")
        spec_text = spec_text.replace("NAME", project).replace("PACKAGE", package)
    else:
        from mlctl.specload import load_spec

        source = points[start]
        spec = load_spec(source)
        package = spec.model.name
        shutil.copytree(spec.model, folder / package, ignore=IGNORED)
        spec_text = _retarget(source.read_text(encoding="utf-8"), package, spec)
    spec_file = folder / "spec.yaml"
    spec_file.write_text(spec_text, encoding="utf-8")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {"folder": str(folder), "from": start, "spec": str(spec_file), "package": package, "files": files}


def _retarget(text: str, package: str, spec) -> str:
    """The spec's text with its package, models folder and data folder pointing where they now are."""
    text = re.sub(r"(?m)^model: .*$", f"model: {package}", text)
    text = re.sub(r"(?m)^(  output: ).*$", r"\1.mlctl/models", text)
    if spec.data is not None:
        text = re.sub(r"(?m)^(  dir: ).*$", lambda m: f"{m.group(1)}{spec.data.dir}", text, count=1)
    return text
