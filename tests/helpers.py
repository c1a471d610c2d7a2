"""Helpers shared by every test folder (import as `from tests.helpers import …`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"
MODEL_PACKAGE = REPO / "model"
SPEC_HEAD = f"apiVersion: mlctl/v1\nmodel: {MODEL_PACKAGE}\n"
"""The first lines of a spec written by a test: its model package is the checkout's."""


def run_mlctl(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the real CLI in a subprocess, as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "mlctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
    )


def shipped_spec(folder: Path, **replace: str) -> Path:
    """A copy of the shipped spec in `folder`, its relative paths made absolute (the model
    package and the data stay the checkout's and ../shared's; the artifacts and any state go to
    `folder`, never the checkout's ignored `.mlctl/`), with any other exact line replacements."""
    text = (REPO / "spec" / "mnist.yaml").read_text()
    text = text.replace("model: ../model", f"model: {REPO / 'model'}")
    text = text.replace("dir: ../../shared/data/mnist", f"dir: {MNIST_DIR}")
    text = text.replace("output: ../.mlctl/models", f"output: {folder / '.mlctl' / 'models'}")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.yaml"
    path.write_text(text)
    return path


def readme_commands(section: str) -> list[str]:
    """The ```bash blocks of one `## section` of the README, in order."""
    import re

    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", body, flags=re.S)


def fresh_clone(workspace: Path) -> tuple[Path, dict[str, str]]:
    """A `git clone` of this checkout's HEAD in `workspace`, with shared/ beside it as CI lays it
    out, and the environment a newcomer's shell has (no venv of this checkout on PATH)."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "shared").symlink_to(SHARED)
    clone = workspace / "mlctl"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    return clone, env


class FakeClock:
    """mlctl.poll's clock for tests: time moves only when a wait sleeps, by as much as it asks.
    With `yield_s`, each sleep also yields the CPU for at most that much real time, so that a
    real stand-in process (the fake `kubectl port-forward`'s server) gets to start."""

    def __init__(self, now: float = 0.0, yield_s: float = 0.0) -> None:
        self.now, self.yield_s = now, yield_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.yield_s:
            import time

            time.sleep(min(seconds, self.yield_s))
