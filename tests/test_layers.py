"""The layer map in mlctl/__init__.py is the code's: every module is on it once, imports only from
its own row or earlier ones, targets do not import one another, and no imports form a circle.
Imports inside functions count too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mlctl

PACKAGE = Path(mlctl.__file__).parent
ROW = re.compile(r"^    (?P<layer>[a-z]+(?:/[a-z]+)?):\s+(?P<modules>[\w ]+)$", re.M)


def layer_map() -> dict[str, tuple[int, str]]:
    """module → (row number, layer name) from the package docstring; a module of a `targets/…`
    row is named by its package (`targets.podman.store`)."""
    rows = ROW.findall(mlctl.__doc__ or "")
    assert rows, "mlctl/__init__.py lost its layer map"
    out: dict[str, tuple[int, str]] = {}
    for number, (layer, modules) in enumerate(rows):
        prefix = layer.replace("/", ".") + "." if "/" in layer else ""
        for module in modules.split():
            assert prefix + module not in out, f"{prefix + module} is on the map twice"
            out[prefix + module] = (number, layer)
    return out


def module_id(path: Path) -> str:
    """`targets.local.server` for mlctl/targets/local/server.py."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def modules() -> list[Path]:
    return [
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and "templates" not in p.relative_to(PACKAGE).parts
    ]


def imports(path: Path) -> set[str]:
    """The mlctl modules `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlctl":
            sub = node.module.removeprefix("mlctl").lstrip(".")
            if PACKAGE.joinpath(*sub.split(".")).is_dir() if sub else True:  # names are its modules
                found |= {f"{sub}.{a.name}".lstrip(".") for a in node.names}
            else:
                found.add(sub)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("mlctl.") for a in node.names if a.name.startswith("mlctl.")}
    return found - {module_id(path)}


def graph() -> dict[str, set[str]]:
    known = {module_id(p) for p in modules()}
    return {module_id(p): imports(p) & known for p in modules()}


def _is_target(layer: str) -> bool:
    return layer.startswith("targets/")


def violations(g: dict[str, set[str]], layers: dict[str, tuple[int, str]]) -> list[str]:
    """Imports that go to a later row, or from one target to another (shared excepted)."""
    wrong = []
    for module, targets in sorted(g.items()):
        row, layer = layers[module]
        for target in sorted(targets):
            target_row, target_layer = layers[target]
            if _is_target(layer) and _is_target(target_layer):
                bad = target_layer not in (layer, "targets/shared")
            else:
                bad = target_row > row
            if bad:
                wrong.append(f"{module} ({layer}) imports {target} ({target_layer})")
    return wrong


def cycles(g: dict[str, set[str]]) -> list[str]:
    found: list[str] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(g.get(module, ())):
            if target in path:
                found.append(" → ".join(path[path.index(target) :] + [target]))
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    for module in sorted(g):
        if module not in done:
            visit(module, [module])
    return found


def test_every_module_is_on_the_map_once():
    on_map, modules = set(layer_map()), set(graph())
    assert modules - on_map == set(), "place new modules on the layer map in mlctl/__init__.py"
    assert on_map - modules == set(), "the layer map names modules that no longer exist"


def test_imports_go_only_to_the_same_or_an_earlier_layer_and_targets_stay_apart():
    assert violations(graph(), layer_map()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_rules_catch_what_they_should():
    layers = {
        "errors": (0, "base"),
        "helm": (1, "tools"),
        "check": (2, "targets/shared"),
        "local": (3, "targets/local"),
        "deploy": (4, "targets/kubernetes"),
        "apply": (5, "commands"),
    }
    fine = {"apply": {"deploy", "local"}, "deploy": {"check", "helm"}, "local": {"check", "errors"}}
    assert violations(fine, layers) == []
    bad = {"helm": {"apply"}, "local": {"deploy"}, "check": {"local"}}
    assert violations(bad, layers) == [
        "check (targets/shared) imports local (targets/local)",
        "helm (tools) imports apply (commands)",
        "local (targets/local) imports deploy (targets/kubernetes)",
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a → b → c → a"]
    assert cycles(fine) == []
