"""tests/conftest.py's rule: under MLCTL_FORBID_SKIPS=1 (CI) a skip fails with its reason,
except the allow-listed tests; elsewhere a skip stays a skip."""

from __future__ import annotations

import pytest

from tests.conftest import ALLOWED_SKIPS, FORBID_SKIPS, skip_forbidden

pytest_plugins = ["pytester"]

INNER = """
import pytest

def test_needs_podman():
    pytest.skip("podman not installed")

@pytest.mark.skipif(True, reason="no helm 3")
def test_needs_helm3():
    pass

def test_runs():
    pass
"""


@pytest.fixture
def inner(pytester):
    pytester.makeconftest("from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n")
    pytester.makepyfile(test_inner=INNER)
    return pytester


def test_a_skip_fails_with_its_reason_under_ci(inner, monkeypatch):
    monkeypatch.setenv(FORBID_SKIPS, "1")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # the marker's skip happens at setup
    result.stdout.fnmatch_lines(["*skipped under MLCTL_FORBID_SKIPS=1*podman not installed*"])
    result.stdout.fnmatch_lines(["*skipped under MLCTL_FORBID_SKIPS=1*no helm 3*"])


def test_a_skip_is_a_skip_elsewhere(inner, monkeypatch):
    monkeypatch.delenv(FORBID_SKIPS, raising=False)
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=2)


def test_the_allow_list_names_real_tests_with_reasons(monkeypatch):
    from tests.helpers import REPO

    monkeypatch.setenv(FORBID_SKIPS, "1")
    for nodeid, reason in ALLOWED_SKIPS.items():
        path, name = nodeid.split("::")
        assert f"def {name}(" in (REPO / path).read_text() and len(reason) > 20, nodeid
        assert not skip_forbidden(nodeid) and not skip_forbidden(f"{nodeid}[param]")
    assert skip_forbidden("tests/test_spec.py::test_anything")
