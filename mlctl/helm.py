"""The only module that knows helm's command line: small named verbs over one runner.

Values always travel in files (`-f`), never as `--set` with secrets on the command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl import tools
from mlctl.errors import MlctlError, UsageError
from mlctl.tools import PROJECT_ROOT

if TYPE_CHECKING:
    from mlctl.spec import Spec

CHART = PROJECT_ROOT / "charts" / "mnist-seldon"


@dataclass(frozen=True)
class Target:
    """Where a release lives."""

    release: str
    namespace: str
    context: str | None = None

    @classmethod
    def for_spec(cls, spec: Spec) -> Target:
        k = spec.kubernetes
        return cls(release=k.release, namespace=k.namespace, context=k.context)

    def flags(self) -> list[str]:
        return ["--namespace", self.namespace, *(["--kube-context", self.context] if self.context else [])]


def binary() -> str:
    return tools.find_tool("helm")


def _helm(*args: str, timeout: float = 120, secrets: Sequence[str] = ()) -> str:
    return tools.run([binary(), *args], timeout=timeout, secrets=secrets)


def lint(values: Sequence[Path] = (), chart: Path = CHART, strict: bool = True) -> str:
    return _helm("lint", str(chart), *(["--strict"] if strict else []), *_files(values))


def template(
    release: str,
    values: Sequence[Path] = (),
    namespace: str = "default",
    chart: Path = CHART,
    secrets: Sequence[str] = (),
    show_only: Sequence[str] = (),
) -> str:
    only = [a for t in show_only for a in ("--show-only", t)]
    return _helm("template", release, str(chart), "--namespace", namespace, *only, *_files(values), secrets=secrets)


def upgrade_argv(
    target: Target, values: Sequence[Path], timeout_s: int, create_namespace: bool, chart: Path = CHART
) -> list[str]:
    """The exact `helm upgrade --install` mlctl runs (and `--dry-run` prints for CI)."""
    return [
        "upgrade", "--install", target.release, str(chart), *target.flags(),
        *(["--create-namespace"] if create_namespace else []),
        # --atomic rolls back a failed upgrade; Helm 4 spells it --rollback-on-failure but keeps
        # --atomic as a deprecated alias, so one argv works with Helm 3 and 4.
        "--atomic", "--wait", "--timeout", f"{timeout_s}s", *_files(values),
    ]  # fmt: skip


def upgrade(
    target: Target, values: Sequence[Path], timeout_s: int, create_namespace: bool, secrets: Sequence[str] = ()
) -> str:
    argv = upgrade_argv(target, values, timeout_s, create_namespace)
    return _helm(*argv, timeout=timeout_s + 60, secrets=secrets)


def status(target: Target) -> dict | None:
    """The release's status as helm reports it, or None when there is no such release."""
    return _release_json("status", target.release, *target.flags())


def get_values(target: Target, revision: int | None = None) -> dict | None:
    """The user-supplied values of the deployed release (or of one revision), or None when there
    is none."""
    which = ["--revision", str(revision)] if revision is not None else []
    values = _release_json("get", "values", target.release, *which, *target.flags())
    return None if values is None else values or {}


def history(target: Target) -> list[dict]:
    """The release's revisions, oldest first ([] when there is no release)."""
    return _release_json("history", target.release, *target.flags()) or []


def rollback(target: Target, revision: int, timeout_s: int, secrets: Sequence[str] = ()) -> str:
    """`helm rollback` to `revision`, waiting for its resources (a new revision records it)."""
    return _helm(
        "rollback",
        target.release,
        str(revision),
        *target.flags(),
        "--wait",
        "--timeout",
        f"{timeout_s}s",
        timeout=timeout_s + 60,
        secrets=secrets,
    )


def _release_json(*args: str) -> Any:
    """`helm ARGS --output json`, parsed; None when helm says the release is not found."""
    try:
        out = _helm(*args, "--output", "json", timeout=60)
    except tools.ToolError as exc:
        if "not found" in exc.stderr:
            return None
        raise
    return json.loads(out)


def uninstall(target: Target, timeout_s: int) -> str:
    return _helm(
        "uninstall", target.release, *target.flags(), "--wait", "--timeout", f"{timeout_s}s", timeout=timeout_s + 60
    )


def _files(values: Sequence[Path]) -> list[str]:
    return [a for v in values for a in ("-f", str(v))]


def pick_revision(history: list[dict[str, Any]], revision: int | None, where: str) -> dict[str, Any]:
    """The entry of `history` (oldest first, each with a "revision") to roll back to: `revision`,
    or the one before the current. `where` names the release in the messages; both targets use it."""
    if revision is None and len(history) < 2:
        raise MlctlError(f"{where} has no earlier revision to roll back to")
    wanted = revision if revision is not None else history[-2]["revision"]
    for entry in history:
        if entry["revision"] == wanted:
            return entry
    raise UsageError(
        f"{where} has no revision {wanted}",
        hint=f"revisions: {', '.join(str(r['revision']) for r in history) or 'none'}",
    )
