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
