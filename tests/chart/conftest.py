"""Fixtures for the chart tests: the real helm binaries (Helm 4, and Helm 3 when present)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `from tests.chart.helpers import …` must work under plain `pytest` too, whose default import
# mode puts only this folder on sys.path.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.chart.helpers import SELDON_SCHEMA, find_helm, helm_binaries  # noqa: E402 (needs the path above)


@pytest.fixture(scope="session")
def helm() -> str:
    binary = find_helm()
    if binary is None:
        pytest.skip("no helm binary: put helm on PATH or run scripts/fetch-tools.sh (.mlctl/bin/helm)")
    return binary


@pytest.fixture(scope="session", params=["helm4", "helm3"])
def each_helm(request: pytest.FixtureRequest) -> str:
    """Every supported major version; a missing one skips with the reason."""
    binary = helm_binaries().get(request.param)
    if binary is None:
        where = ".mlctl/bin/helm" if request.param == "helm4" else ".mlctl/bin/helm3 or $HELM3"
        pytest.skip(f"{request.param} not found ({where})")
    return binary


@pytest.fixture(scope="session")
def seldon_schema() -> Path:
    if not SELDON_SCHEMA.is_file():
        pytest.skip(f"SeldonDeployment schema not found at {SELDON_SCHEMA} (expected ../shared beside the repo)")
    return SELDON_SCHEMA
