"""Credentials from the environment appear in no recorded argv, no output, no result or error,
and no file left behind, across training and deploying (success and failure)."""

from __future__ import annotations

import json

import pytest

from mlctl.artifacts import training_hash
from mlctl.errors import MlctlError
from mlctl.targets.kubernetes import deploy
from mlctl.targets.kubernetes import train as train_k8s
from tests.k8s.conftest import SECRETS
from tests.k8s.fakes import NOT_FOUND_RELEASE
from tests.k8s.test_deploy import LABEL, answer, deployed, planned, sdep


def test_no_secret_leaks_anywhere(fakes, spec, secret_env, clock, private_tmp, tmp_path, capfd):
    if not __import__("os").environ.get("FAKE_REAL_HELM"):
        pytest.skip("no real helm to render the Job with")
    meta = {"sha256": "ef" * 32, "test_accuracy": 0.98, "training_hash": training_hash(spec)}
    fakes.on("helm", ["template"], {"passthrough": True})
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": "ok\n"})
    fakes.on(
        "kubectl",
        ["get", "job"],
        {"rc": 1, "stderr": "Error from server (NotFound): not found\n"},
        {"json": {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}},
    )
    fakes.on("kubectl", ["apply"], {"stdout": "created\n"})
    fakes.on("kubectl", ["logs"], {"stdout": json.dumps(meta) + "\n"})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer((LABEL + 1) % 10)})  # a wrong answer: an error path

    trained = train_k8s.train(spec)
    release, _, plan = planned(spec, trained.artifact)
    with pytest.raises(MlctlError) as err:
        deploy.deploy(release, trained.artifact, plan)

    out, errout = capfd.readouterr()
    seen = [
        fakes.log_text(),
        out,
        errout,
        str(err.value),
        err.value.hint or "",
        repr(trained),
        json.dumps(trained.as_dict()),
        json.dumps(plan.as_dict()),
        repr(plan),
    ]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "mnist.yaml":
            seen.append(path.read_text(errors="replace"))
    for value in SECRETS.values():
        assert not any(value in text for text in seen), "a credential leaked"
    assert list(private_tmp.iterdir()) == []
    # The credentials did travel, but only inside 0600 files.
    files = [info for c in fakes.calls() for info in c["files"].values()]
    assert files and all(f["mode"] == "0o600" and f["has_secret"] for f in files)
