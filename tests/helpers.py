"""Helpers shared by every test folder (import as `from tests.helpers import …`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"


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
    """A copy of the shipped spec in `folder`, its two relative paths made absolute (data stays
    ../shared's; the artifacts and any state go to `folder`, never the checkout's ignored
    `.mlctl/`), with any other exact line replacements."""
    text = (REPO / "spec" / "mnist.yaml").read_text()
    text = text.replace("dir: ../../shared/data/mnist", f"dir: {MNIST_DIR}")
    text = text.replace("output: ../.mlctl/models", f"output: {folder / '.mlctl' / 'models'}")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.yaml"
    path.write_text(text)
    return path


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
