"""The CLI surface: --version, --help on every command, stdout/stderr discipline, speed path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlctl import __version__
from mlctl.cli import app

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_version(mlctl):
    p = mlctl("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"mlctl {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, mlctl):
    p = mlctl(command, "--help")
    assert p.returncode == 0, p.stderr
    assert "Usage" in p.stdout and len(p.stdout) > 100


def test_no_arguments_shows_help(mlctl):
    p = mlctl()
    assert "Usage" in p.stdout + p.stderr and "validate" in p.stdout + p.stderr


def test_unknown_option_is_a_usage_error(mlctl):
    p = mlctl("validate", "spec/mnist.yaml", "--bogus")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_validate_does_not_import_torch():
    code = (
        "import sys; from mlctl.cli import app; "
        "app(['validate', 'spec/mnist.yaml'], standalone_mode=False); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'seldon_core' not in sys.modules"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_template_renders_redacted_manifests(mlctl, shipped_copy):
    p = mlctl("template", shipped_copy, env={"REGISTRY_PASSWORD": "never-shown-4711"})
    assert p.returncode == 0, p.stderr
    assert "kind: SeldonDeployment" in p.stdout
    assert "never-shown-4711" not in p.stdout
