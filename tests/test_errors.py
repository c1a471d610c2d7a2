"""Error plumbing: a wrapped error keeps its type, exit code, hint and cause; -v shows the chain."""

from __future__ import annotations

from mlctl.errors import EXIT_USAGE, MlctlError, SmokeTestFailed, SpecError, UsageError


def test_a_prefixed_error_keeps_its_class_exit_code_hint_and_cause():
    base = UsageError("no such file", hint="pass a spec")
    wrapped = base.prefixed("plan")
    assert type(wrapped) is UsageError and wrapped.exit_code == EXIT_USAGE
    assert (wrapped.message, str(wrapped), wrapped.hint) == ("plan: no such file", "plan: no such file", "pass a spec")
    assert wrapped.__cause__ is base and base.message == "no such file"  # the original is untouched
    spec = SpecError("s.yaml", ["s.yaml:1:1 bad"]).prefixed("validate")
    assert isinstance(spec, SpecError) and spec.problems == ["s.yaml:1:1 bad"] and spec.exit_code == EXIT_USAGE
    assert isinstance(SmokeTestFailed("smoke test: wrong").prefixed("check"), SmokeTestFailed)
    assert MlctlError("x").prefixed("a").prefixed("b").message == "b: a: x"


def test_verbose_shows_the_traceback_and_plain_runs_do_not(tmp_path, mlctl):
    spec = tmp_path / "s.yaml"
    spec.write_text("apiVersion: mlctl/v1\nbogus: 1\n")
    plain = mlctl("validate", str(spec))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    verbose = mlctl("-v", "validate", str(spec))
    assert verbose.returncode == 2
    assert "Traceback (most recent call last)" in verbose.stderr and "SpecError" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1] == plain.stderr.rstrip().splitlines()[-1]
