"""deploy.plan / deploy / status / delete against stand-in helm and kubectl: the exact calls and
flags, idempotence, the dry-run plan, each failure path, and secret hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlctl import helm
from mlctl.errors import MlctlError, UsageError
from mlctl.release import Names, Release, redact, with_credentials
from mlctl.secrets import resolve_secrets
from mlctl.specload import load_spec
from mlctl.targets.kubernetes import cluster, deploy
from tests.k8s.conftest import SECRETS, remote_artifact, write_spec
from tests.k8s.fakes import CONTRACT, NOT_FOUND_RELEASE, refusal

LABEL = int(CONTRACT.labelled_examples[0].expect)


def predicted(smoke: dict) -> int:
    """The label the smoke test read for the first labelled example."""
    return int(next(r["label"] for r in smoke["examples"] if "label" in r))


def answer(predicted: int, sha256: str = "ab" * 32) -> dict:
    """What the server answers: scores, and the digest of the weights it serves as a tag."""
    row = [0.01] * 10
    row[predicted] = 0.91
    return {
        "data": {"names": [f"t:{i}" for i in range(10)], "ndarray": [row]},
        "meta": {"tags": {"model_sha256": sha256}},
    }


def deployed(revision: int = 1) -> dict:
    return {
        "json": {
            "name": "mnist",
            "version": revision,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"version": "0.1.0"}},
        }
    }


def sdep(state: str, description: str = "") -> dict:
    return {
        "json": {
            "kind": "SeldonDeployment",
            "status": {
                "state": state,
                "description": description,
                "replicas": 1,
                "deploymentStatus": {"mnist-default-0-classifier": {"replicas": 1, "availableReplicas": 1}},
            },
        }
    }


def planned(spec, artifact):
    """deploy.deploy's arguments as apply makes them: the release built once, its plan."""
    release = Release.build(spec, artifact.sha256)
    return release, artifact, deploy.plan(release)


WAIT_TIMED_OUT = {"rc": 1, "stderr": "error: timed out waiting for the condition on seldondeployments/mnist\n"}


def fresh_cluster(fakes, predicted: int = LABEL, sha256: str = "ab" * 32) -> None:
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": 'Release "mnist" has been upgraded.\n'})
    # The first round of `kubectl wait` times out; the object, read between rounds, is Creating.
    fakes.on("kubectl", ["wait", "sdep/mnist"], WAIT_TIMED_OUT, {"stdout": "seldondeployment/mnist condition met\n"})
    fakes.on("kubectl", ["get", "sdep"], sdep("Creating"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer(predicted, sha256)})


def test_first_deploy_runs_upgrade_with_a_private_values_file(fakes, spec, secret_env, clock, private_tmp):
    fresh_cluster(fakes)
    artifact = remote_artifact()
    release, _, plan = planned(spec, artifact)
    assert not plan.exists and not plan.up_to_date
    result = deploy.deploy(release, artifact, plan)

    assert fakes.verbs("helm") == ["status", "upgrade", "status"]
    upgrade = fakes.calls("helm")[1]["argv"]
    chart = str(deploy.helm.CHART)
    values_file = upgrade[upgrade.index("-f") + 1]
    assert upgrade == [
        "upgrade",
        "--install",
        "mnist",
        chart,
        "--namespace",
        "models",
        "--kube-context",
        "kind-ci",
        "--create-namespace",
        "--atomic",
        "--wait",
        "--timeout",
        "60s",
        "-f",
        values_file,
    ]
    info = fakes.calls("helm")[1]["files"][values_file]
    assert info == {"exists": True, "mode": "0o600", "kinds": [], "has_secret": True}
    assert not Path(values_file).exists()
    assert list(private_tmp.iterdir()) == []
    # The plan shows the same command, with a placeholder for the temporary file.
    assert plan.argv == ["helm", *upgrade[:-1], deploy.VALUES_PLACEHOLDER]

    kube = fakes.calls("kubectl")
    wait = ["wait", "sdep/mnist", "--for=jsonpath={.status.state}=Available", "--timeout=5s"]
    assert [c["argv"][:4] for c in kube[:3]] == [wait, ["get", "sdep", "mnist", "--output"], wait]
    # One pause between the two rounds, as the fake wait returns at once (a real one takes 5 s).
    assert clock.sleeps.count(deploy.POLL_SECONDS) == 1
    forward = kube[3]["argv"]
    assert forward[:2] == ["port-forward", "svc/mnist-default"] and forward[2].endswith(
        ":9000"
    )  # no executor: the model's own port
    assert forward[-4:] == ["--namespace", "models", "--context", "kind-ci"]
    assert result.upgraded and result.revision == 1 and result.state == "Available"
    assert predicted(result.smoke) == LABEL
    assert [r.get("status") for r in result.smoke["examples"]] == [e.status for e in CONTRACT.examples]
    assert result.upload["note"].startswith("trained in the cluster")


def test_the_smoke_test_demands_the_deployed_weights(fakes, spec, secret_env, clock):
    """A pod that answers right with other weights (stale, or a swapped store folder) fails."""
    fresh_cluster(fakes, sha256="cd" * 32)
    artifact = remote_artifact()
    with pytest.raises(MlctlError, match=r"serves the weights cdcdcdcdcdcd…, not abababababab…"):
        deploy.deploy(*planned(spec, artifact))


def test_second_run_is_up_to_date_and_does_not_upgrade(fakes, spec, secret_env, clock):
    artifact = remote_artifact()
    values = Release.build(spec, artifact.sha256).values
    fakes.on("helm", ["status"], deployed(3))
    fakes.on("helm", ["get", "values"], {"json": values})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer(LABEL)})

    release, _, plan = planned(spec, artifact)
    assert plan.up_to_date and plan.changes == [] and plan.revision == 3
    result = deploy.deploy(release, artifact, plan)
    assert "upgrade" not in fakes.verbs("helm")
    assert not result.upgraded and result.revision == 3


def test_plan_diff_masks_credentials_and_mutates_nothing(fakes, spec, secret_env, clock):
    artifact = remote_artifact()
    old = Release.build(spec, artifact.sha256).values
    old["serving"]["replicas"] = 3
    old["registry"]["password"] = "an-older-password-123"
    fakes.on("helm", ["status"], deployed(2))
    fakes.on("helm", ["get", "values"], {"json": old})

    release, _, plan = planned(spec, artifact)
    assert not plan.up_to_date
    assert {"path": "serving.replicas", "old": 3, "new": 1} in plan.changes
    assert {"path": "registry.password", "old": "***", "new": "***"} in plan.changes
    assert plan.values["registry"]["password"] == "***"
    assert plan.values["storage"]["credentials"] == {"access_key_id": "***", "secret_access_key": "***"}
    text = json.dumps(plan.as_dict())
    assert "an-older-password-123" not in text and not any(v in text for v in SECRETS.values())
    assert fakes.verbs("helm") == ["status", "get"] and fakes.calls("kubectl") == []


def test_release_in_a_failed_state_is_not_up_to_date(fakes, spec, secret_env):
    artifact = remote_artifact()
    values = Release.build(spec, artifact.sha256).values
    fakes.on("helm", ["status"], {"json": {"version": 4, "info": {"status": "failed"}}})
    fakes.on("helm", ["get", "values"], {"json": values})
    release, _, plan = planned(spec, artifact)
    assert plan.changes == [] and not plan.up_to_date and plan.helm_status == "failed"


def test_helm_upgrade_failure_names_the_step_and_removes_the_values_file(fakes, spec, secret_env, clock, private_tmp):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE)
    fakes.on(
        "helm",
        ["upgrade"],
        {
            "rc": 1,
            "stderr": f"Error: UPGRADE FAILED: context deadline exceeded (password {SECRETS['REGISTRY_PASSWORD']})\n",
        },
    )
    artifact = remote_artifact()
    with pytest.raises(MlctlError) as err:
        deploy.deploy(*planned(spec, artifact))
    assert err.value.message.startswith("helm upgrade failed: ")
    assert "context deadline exceeded" in err.value.message
    assert SECRETS["REGISTRY_PASSWORD"] not in err.value.message  # an echoed secret is masked
    assert err.value.exit_code == 1
    assert list(private_tmp.iterdir()) == []
    assert fakes.calls("kubectl") == []


def test_rollout_timeout(fakes, spec, secret_env, clock):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": ""})
    fakes.on("kubectl", ["wait", "sdep/mnist"], WAIT_TIMED_OUT)
    fakes.on("kubectl", ["get", "sdep"], sdep("Creating", "Deployment is progressing"))
    artifact = remote_artifact()
    with pytest.raises(MlctlError) as err:
        deploy.deploy(*planned(spec, artifact))
    assert err.value.message == (
        "rollout timed out: SeldonDeployment mnist is Creating after 60s: Deployment is progressing"
    )
    assert clock.now - 1000 >= 60 and "port-forward" not in fakes.verbs("kubectl")
    # Rounds of wait-then-read every 5 s for the spec's 60 s, and one last round at the deadline.
    verbs = fakes.verbs("kubectl")
    assert verbs == ["wait", "get"] * 13 and clock.sleeps == [deploy.POLL_SECONDS] * 12


def test_rollout_failed_state(fakes, spec, secret_env, clock):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": ""})
    fakes.on("kubectl", ["get", "sdep"], sdep("Failed", "ImagePullBackOff"))
    artifact = remote_artifact()
    with pytest.raises(MlctlError, match=r"^rollout failed: .*ImagePullBackOff"):
        deploy.deploy(*planned(spec, artifact))


def test_smoke_test_wrong_class(fakes, spec, secret_env, clock):
    wrong = (LABEL + 1) % 10
    fresh_cluster(fakes, predicted=wrong)
    artifact = remote_artifact()
    with pytest.raises(MlctlError) as err:
        deploy.deploy(*planned(spec, artifact))
    assert err.value.message.startswith(f"smoke test: {CONTRACT.labelled_examples[0].input.name}: http://127.0.0.1:")
    assert f"answered '{wrong}' (p=0.215), expected '{LABEL}'" in err.value.message


def test_smoke_test_through_the_ingress_endpoint(fakes, tmp_path, secret_env, clock):
    """With kubernetes.endpoint set the sample goes to Seldon's ingress path, no port-forward."""
    import http.server
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.path, self.headers["Content-Type"]))
            status = refusal(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps(answer(LABEL) if status is None else {"error": "refused"}).encode()
            self.send_response(status or 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = load_spec(write_spec(tmp_path).parent / "mnist.yaml")
        spec = spec.model_copy(
            update={
                "kubernetes": spec.kubernetes.model_copy(update={"endpoint": f"http://127.0.0.1:{server.server_port}"})
            }
        )
        fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
        result = deploy.smoke_test(spec, Names.for_spec(spec))
    finally:
        server.shutdown()
    assert seen[0][0] == "/seldon/models/mnist/api/v1.0/predictions"
    assert seen[0][1].startswith("multipart/form-data")
    assert predicted(result) == LABEL and fakes.calls("kubectl") == []


def test_missing_credential_variable_is_a_usage_error(fakes, spec, secret_env, monkeypatch):
    monkeypatch.delenv("MLCTL_S3_SECRET_ACCESS_KEY")
    with pytest.raises(UsageError) as err:
        deploy.plan(Release.build(spec, remote_artifact().sha256))
    assert "MLCTL_S3_SECRET_ACCESS_KEY" in err.value.message and err.value.exit_code == 2
    assert fakes.calls() == []


def test_status_and_delete(fakes, spec, secret_env):
    fakes.on("helm", ["status"], deployed(5))
    fakes.on("helm", ["get", "values"], {"json": {"model": {"uri": "s3://mlctl-models/mnist", "sha256": "cd" * 32}}})
    fakes.on("helm", ["uninstall"], {"stdout": 'release "mnist" uninstalled\n'})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["get", "job"], {"json": {"items": [{"metadata": {"name": "mnist-train-0a1b2c3d"}}]}})
    fakes.on("kubectl", ["delete"], {"stdout": "deleted"})

    st = cluster.status(spec)
    assert st == {
        "release": "mnist",
        "namespace": "models",
        "exists": True,
        "revision": 5,
        "helmStatus": "deployed",
        "chart": "0.1.0",
        "engine": "seldon",
        "seldonDeployment": "mnist",
        "state": "Available",
        "description": "",
        "replicas": 1,
        "availableReplicas": 1,
        "modelUri": "s3://mlctl-models/mnist",
        "modelSha256": "cd" * 32,
        "localSha256": None,
    }
    gone = cluster.delete(spec)
    assert gone == {
        "release": "mnist",
        "namespace": "models",
        "uninstalled": True,
        "jobsDeleted": ["mnist-train-0a1b2c3d"],
    }
    uninstall = next(c["argv"] for c in fakes.calls("helm") if c["argv"][0] == "uninstall")
    assert uninstall == [
        "uninstall",
        "mnist",
        "--namespace",
        "models",
        "--kube-context",
        "kind-ci",
        "--wait",
        "--timeout",
        "60s",
    ]
    selector = next(c["argv"] for c in fakes.calls("kubectl") if c["argv"][:2] == ["get", "job"])
    assert "app.kubernetes.io/instance=mnist,app.kubernetes.io/component=training" in selector


def test_status_of_a_missing_release(fakes, spec):
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE)
    assert cluster.status(spec) == {"release": "mnist", "namespace": "models", "exists": False}


def test_sdep_name_matches_the_chart(spec, secret_env):
    from tests.chart.helpers import one, template

    for release in ("mnist", "prod-mnist-seldon"):
        s = spec.model_copy(update={"kubernetes": spec.kubernetes.model_copy(update={"release": release})})
        objects = template(Release.build(s, remote_artifact().sha256).values, release=release)
        assert one(objects, "SeldonDeployment")["metadata"]["name"] == Names.for_spec(s).served


def test_service_port_matches_the_chart(spec, secret_env):
    """The smoke test's port-forward and the chart's helm-test pod must aim at the same port."""
    from tests.chart.helpers import one, template

    for executor in (False, True):
        s = spec.model_copy(update={"serving": spec.serving.model_copy(update={"executor": executor})})
        objects = template(Release.build(s, remote_artifact().sha256).values)
        env = {e["name"]: e["value"] for e in one(objects, "Pod")["spec"]["containers"][0]["env"]}
        assert env["PREDICT_URL"].split("/")[2].endswith(f":{Names.for_spec(s).service_port}")


# --- one model, one folder: rollback rolls back the weights ------------------------------------


def _two_models(tmp_path):
    """Spec A, and spec B with one hyper-parameter changed, each with the model it trains."""
    from mlctl.artifacts import StoredArtifact, store_uri

    (tmp_path / "a").mkdir()
    a = load_spec(write_spec(tmp_path / "a"))
    b = a.model_copy(update={"training": a.training.model_copy(update={"seed": 2})})
    return (
        a,
        StoredArtifact({"sha256": "aa" * 32, "test_accuracy": 0.99}, store_uri(a)),
        b,
        StoredArtifact({"sha256": "bb" * 32, "test_accuracy": 0.99}, store_uri(b)),
    )


def test_each_model_has_its_own_folder_in_the_values(tmp_path, secret_env):
    a, model_a, b, model_b = _two_models(tmp_path)
    values_a = Release.build(a, model_a.sha256).values["model"]
    values_b = Release.build(b, model_b.sha256).values["model"]
    assert values_a["uri"] == model_a.uri and values_a["sha256"] == model_a.sha256
    assert values_b["uri"] == model_b.uri != values_a["uri"]  # B never overwrites A's files
    assert values_a["uri"].startswith("s3://mlctl-models/mnist/mnist-")


def test_rollback_restores_the_weights_of_the_revision(fakes, tmp_path, secret_env, clock):
    """The stand-in release keeps its revisions, and its pods serve what the current revision
    names: after the rollback, revision 3 holds revision 1's values and the pods A's weights."""
    a, model_a, b, model_b = _two_models(tmp_path)
    fakes.revisions(Release.build(a, model_a.sha256).values, Release.build(b, model_b.sha256).values)
    fakes.stateful_release()
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve_release": answer(LABEL)})

    done = cluster.rollback(b)
    assert done["to"] == 1 and done["revision"] == 3
    assert done["modelUri"] == model_a.uri and done["smoke"]["modelSha256"] == model_a.sha256
    target = Names.for_spec(b).target
    assert helm.get_values(target)["model"] == {"name": "mnist", "uri": model_a.uri, "sha256": model_a.sha256}
    assert [r["status"] for r in helm.history(target)] == ["superseded", "superseded", "deployed"]
    rollback = next(c["argv"] for c in fakes.calls("helm") if c["argv"][0] == "rollback")
    assert rollback[:3] == ["rollback", "mnist", "1"] and "--wait" in rollback


def test_rollback_fails_when_the_pods_still_serve_the_newer_weights(fakes, tmp_path, secret_env, clock):
    a, model_a, b, model_b = _two_models(tmp_path)
    fakes.on("helm", ["history"], {"json": [{"revision": 1}, {"revision": 2}]})
    fakes.on("helm", ["get", "values", "--revision", "1"], {"json": Release.build(a, model_a.sha256).values})
    fakes.on("helm", ["get", "values", "--revision", "2"], {"json": Release.build(b, model_b.sha256).values})
    fakes.on("helm", ["rollback"], {"stdout": "ok\n"})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer(LABEL, model_b.sha256)})
    with pytest.raises(MlctlError, match="serves the weights bbbbbbbbbbbb…, not aaaaaaaaaaaa…"):
        cluster.rollback(b)


def test_a_failed_atomic_upgrade_leaves_the_old_revision_naming_the_old_weights(fakes, tmp_path, secret_env, clock):
    """--atomic rolls back to the previous revision's values; those name A's own folder, which B's
    upgrade (in a folder of its own) never touched. The stand-in helm records what the upgrade
    was given and does what helm does with a failed upgrade, with or without --atomic."""
    a, model_a, b, model_b = _two_models(tmp_path)
    fakes.revisions(Release.build(a, model_a.sha256).values)
    timed_out = "Error: UPGRADE FAILED: release mnist failed, and has been rolled back due to atomic being set\n"
    fakes.on("helm", ["upgrade"], {"release": "upgrade", "rc": 1, "stderr": timed_out})
    fakes.stateful_release()
    release, _, plan = planned(b, model_b)
    assert {"path": "model.uri", "old": model_a.uri, "new": model_b.uri} in plan.changes
    with pytest.raises(MlctlError, match="helm upgrade failed"):
        deploy.deploy(release, model_b, plan)
    # What the release now serves is what `helm get values` says: A's folder and digest, in the
    # revision helm's rollback wrote after B's failed one.
    target = Names.for_spec(b).target
    assert helm.get_values(target)["model"] == {"name": "mnist", "uri": model_a.uri, "sha256": model_a.sha256}
    assert [r["status"] for r in helm.history(target)] == ["superseded", "failed", "deployed"]
    assert helm.get_values(target, revision=2)["model"]["uri"] == model_b.uri  # the upgrade was B's


def test_credentials_go_back_where_build_values_puts_them(spec, secret_env):

    secrets = resolve_secrets(spec)
    values = Release.build(spec, remote_artifact().sha256, secrets).values
    assert with_credentials(redact(values), secrets) == values
