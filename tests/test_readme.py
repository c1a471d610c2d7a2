"""The README's two commands work on a fresh clone, exactly as written.

A fresh `git clone` of this repository's HEAD goes into a temporary folder with `shared/` beside
it (as CI lays it out); the commands are read from the README's "The two commands" section, not
copied here. The main command sets up both environments and runs `mlctl apply` on the shipped
spec (full training, the real server, a real prediction). The test command is run on one test
file, since running the whole suite from inside the suite would recurse.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import REPO, SHARED, fresh_clone, readme_commands

pytestmark = pytest.mark.slow
SECTION = "The two commands"


def test_readme_has_exactly_two_commands():
    main, tests = readme_commands(SECTION)
    assert "mlctl apply spec/mnist.yaml" in main
    assert "scripts/test.sh" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


@pytest.mark.registries
@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="needs ../shared/data/mnist")
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_commands_on_a_fresh_clone(tmp_path):
    """Both commands in a fresh clone; they install from the package registries (pip), so this
    test needs them. The test command's system step (apt, /etc/containers) is left out: it would
    change this machine, and its result is what the suite around this test already runs in."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    clone, env = fresh_clone(tmp_path / "ws")
    env["MLCTL_NO_SYSTEM_SETUP"] = "1"
    main, tests = readme_commands(SECTION)
    try:
        p = subprocess.run(["bash", "-c", main], cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "digit-7.png → 7 (p=" in p.stderr and "/api/v1.0/predictions" in p.stdout
        p = subprocess.run(
            ["bash", "-c", f"{tests} tests/test_spec.py -q"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert re.search(r"\d+ passed", p.stdout)
    finally:
        subprocess.run(
            [str(clone / ".venv" / "bin" / "mlctl"), "delete", "spec/mnist.yaml"], cwd=clone, capture_output=True
        )
