"""`mlctl apply --target kubernetes` through the real CLI (a subprocess), with stand-in helm and
kubectl: the cluster Job trains, helm upgrades with the exact flags, a re-run is up to date,
--dry-run mutates nothing, failures exit non-zero naming their step, and no credential leaks."""

from __future__ import annotations

import json
import os

import pytest

from mlctl.artifacts import StoredArtifact, store_uri, training_hash
from mlctl.release import Release
from tests.helpers import run_mlctl
from tests.k8s.conftest import SECRETS
from tests.k8s.fakes import NOT_FOUND_RELEASE
from tests.k8s.test_deploy import LABEL, answer, deployed, predicted, sdep

MUTATING = {"upgrade", "install", "uninstall", "apply", "delete", "create", "cp", "exec"}


@pytest.fixture
def cluster_job(fakes, spec):
    """A cluster whose training Job for this spec already completed (so no 5 s polling)."""
    if not os.environ.get("FAKE_REAL_HELM"):
        pytest.skip("no real helm to render the Job with")
    meta = {"sha256": "ef" * 32, "test_accuracy": 0.991, "training_hash": training_hash(spec)}
    fakes.on("helm", ["template"], {"passthrough": True})
    fakes.on("kubectl", ["get", "job"], {"json": {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}})
    fakes.on("kubectl", ["logs"], {"stdout": json.dumps(meta) + "\n"})
    return StoredArtifact(meta, store_uri(spec))


def apply(spec_path, *args, tmp=None):
    env = {"TMPDIR": str(tmp)} if tmp else None
    return run_mlctl("apply", str(spec_path), *args, env=env)


def no_leak(*texts: str) -> bool:
    return not any(v in t for t in texts for v in SECRETS.values())


def test_apply_deploys_then_is_up_to_date(fakes, spec, spec_path, secret_env, cluster_job, private_tmp):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": 'Release "mnist" has been upgraded.\n'})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer(LABEL, cluster_job.sha256)})

    first = apply(spec_path, "--json", tmp=private_tmp)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["changed"] and result["target"] == "kubernetes"
    assert predicted(result["summary"]["smoke"]) == LABEL
    upgrade = next(c["argv"] for c in fakes.calls("helm") if "upgrade" in c["argv"])
    for flag in ("--install", "--atomic", "--wait", "--create-namespace"):
        assert flag in upgrade
    assert upgrade[upgrade.index("--namespace") + 1] == "models"
    assert upgrade[upgrade.index("--kube-context") + 1] == "kind-ci"
    assert list(private_tmp.iterdir()) == []  # the 0600 values file is gone
    assert no_leak(first.stdout, first.stderr, fakes.log_text())

    # Second run: the release holds exactly these values → nothing is upgraded.
    values = Release.build(spec, cluster_job.sha256).values
    fakes.on("helm", ["get", "values"], {"json": values})
    calls_before = len(fakes.calls("helm"))
    second = apply(spec_path)
    assert second.returncode == 0, second.stderr
    assert "up to date: nothing changed" in second.stdout
    assert not any("upgrade" in c["argv"] for c in fakes.calls("helm")[calls_before:])


def test_dry_run_prints_the_helm_command_and_mutates_nothing(fakes, spec_path, secret_env, cluster_job):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE)
    p = apply(spec_path, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "would run: helm upgrade --install mnist" in p.stderr and "--atomic --wait" in p.stderr
    verbs = [a for c in fakes.calls() for a in c["argv"][:1]]
    assert not MUTATING & set(verbs), verbs
    assert no_leak(p.stdout, p.stderr)


def test_helm_failure_exits_1_naming_the_step(fakes, spec_path, secret_env, cluster_job):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE)
    fakes.on("helm", ["upgrade"], {"rc": 1, "stderr": "Error: UPGRADE FAILED: timed out waiting for the condition\n"})
    p = apply(spec_path)
    assert p.returncode == 1
    assert "helm upgrade failed" in p.stderr and "Traceback" not in p.stderr
    assert no_leak(p.stdout, p.stderr)


def test_missing_credential_exits_2_naming_the_variable(fakes, spec_path, monkeypatch):
    for k in SECRETS:
        monkeypatch.delenv(k, raising=False)
    p = apply(spec_path)
    assert p.returncode == 2
    assert "REGISTRY_PASSWORD is not set" in p.stderr and "Traceback" not in p.stderr
    assert [c for c in fakes.calls() if set(c["argv"][:1]) & MUTATING] == []


def test_rollback_through_the_cli(fakes, spec, spec_path, secret_env, private_tmp):
    from mlctl.artifacts import StoredArtifact, store_uri

    older = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": 7})})
    model_a = StoredArtifact({"sha256": "aa" * 32}, store_uri(older))
    values_a = Release.build(older, model_a.sha256).values
    values_b = Release.build(spec, "bb" * 32).values
    fakes.revisions(values_a, values_b).stateful_release()  # the pods serve what the revision names
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve_release": answer(LABEL)})
    p = run_mlctl("rollback", str(spec_path), "--json", env={"TMPDIR": str(private_tmp)})
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["to"] == 1 and result["modelUri"] == model_a.uri and result["smoke"]["modelSha256"] == "aa" * 32
    assert result["revision"] == 3
    assert no_leak(p.stdout, p.stderr)
    missing = run_mlctl("rollback", str(spec_path), "--revision", "9")
    assert missing.returncode == 2 and "no revision 9" in missing.stderr


def test_a_missing_credential_stops_before_local_training(fakes, tmp_path, monkeypatch, mnist_dir):
    """Trained here and deployed there: the credentials the deploy needs are checked before the
    training, which would otherwise run for minutes and then stop."""
    from tests.k8s.conftest import write_spec

    for k in SECRETS:
        monkeypatch.delenv(k, raising=False)
    path = write_spec(tmp_path, runner="{kind: local}", extra=f"data: {{dir: {mnist_dir}}}\n")
    p = apply(path)
    assert p.returncode == 2, p.stderr
    assert "error: credentials: registry.password: environment variable REGISTRY_PASSWORD is not set" in p.stderr
    assert "train" not in p.stderr and not (tmp_path / "models").exists()
    assert fakes.calls() == []
