"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MNIST_DIR, run_mlctl


@pytest.fixture
def mlctl():
    return run_mlctl


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST files not found in {MNIST_DIR} (CI lays ../shared beside the clone)")
    return MNIST_DIR


def pytest_terminal_summary(terminalreporter) -> None:
    """How many rendered objects passed schema validation, by kind (tests/chart/helpers.py)."""
    import sys

    helpers = sys.modules.get("tests.chart.helpers")
    counts = getattr(helpers, "VALIDATED", None)
    if counts:
        terminalreporter.write_line(
            "schema-validated objects: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
        )
