"""Fixtures shared by every test folder, and the rule that CI skips nothing.

Every environmental skip (no podman, no helm 3, no `.venv-kserve`, no checkov, no MNIST…) exits
0, which on a developer's machine is what it should do. CI always provides all of them, so there
a skip would hide a broken setup: with MLCTL_FORBID_SKIPS=1 (`.ci/run` sets it) a skipped test
fails with its reason, unless ALLOWED_SKIPS names it with the reason it may skip on CI's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import MNIST_DIR, run_mlctl, shipped_spec

# test node id (without parameters) → why it may skip even under MLCTL_FORBID_SKIPS
ALLOWED_SKIPS = {
    "tests/model/test_train.py::test_cuda_requested_without_cuda": (
        "checks the error for --device cuda without CUDA; on a runner with a GPU there is nothing to check"
    ),
}
FORBID_SKIPS = "MLCTL_FORBID_SKIPS"


def skip_forbidden(nodeid: str) -> bool:
    """Whether a skip of this test fails the run (MLCTL_FORBID_SKIPS set, test not allowed)."""
    return os.environ.get(FORBID_SKIPS) == "1" and nodeid.split("[", 1)[0] not in ALLOWED_SKIPS


def _fail_forbidden_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and skip_forbidden(report.nodeid):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under {FORBID_SKIPS}=1 (CI provides what this test needs, so a skip hides a broken "
            f"setup): {reason}\nIf it may skip on CI's machine, add it to ALLOWED_SKIPS in tests/conftest.py "
            "with the reason."
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a whole module skipped at import (pytest.skip(allow_module_level=True))
    _fail_forbidden_skip(outcome.get_result())


@pytest.fixture
def mlctl():
    return run_mlctl


@pytest.fixture
def shipped_copy(tmp_path: Path) -> str:
    """The shipped spec, copied into tmp_path: what it renders does not depend on the ignored
    local state (trained models, podman records) of the checkout the suite runs in."""
    return str(shipped_spec(tmp_path / "project"))


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
