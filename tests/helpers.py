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
