"""Engine kserve on the kubernetes target, against stand-in helm and kubectl: the wait reads the
InferenceService's Ready condition, the smoke test speaks V2 to KServe's predictor Service, and
the names mlctl talks to are the ones the chart renders."""

from __future__ import annotations

import pytest

from mlctl.errors import MlctlError
from mlctl.release import KSERVE_PORT, Names, Release
from mlctl.targets.kubernetes import cluster, deploy
from tests.k8s.conftest import remote_artifact
from tests.k8s.test_deploy import LABEL, deployed, predicted

WAIT_TIMED_OUT = {"rc": 1, "stderr": "error: timed out waiting for the condition on inferenceservices/mnist\n"}


@pytest.fixture
def kspec(spec):
    serving = spec.serving.model_copy(
        update={"engine": "kserve", "kserve": spec.serving.kserve.model_copy(update={"image": "ghcr.io/e/ks:1"})}
    )
    return spec.model_copy(update={"serving": serving})


def isvc(ready: str, reason: str = "", message: str = "") -> dict:
    condition = {"type": "Ready", "status": ready, "reason": reason, "message": message}
    return {
        "json": {
            "kind": "InferenceService",
            "status": {"url": "http://mnist.models.example", "conditions": [condition]},
        }
    }


def v2_answer(predicted: int, sha256: str = "ab" * 32) -> dict:
    row = [-5.0] * 10
    row[predicted] = -0.01
    output = {"name": "t", "datatype": "FP32", "shape": [1, 10], "data": row}
    return {"model_name": "mnist", "outputs": [output], "parameters": {"model_sha256": sha256}}


def test_deploy_waits_for_ready_and_smoke_tests_through_v2(fakes, kspec, secret_env, clock):
    fakes.on("helm", ["status"], {"rc": 1, "stderr": "Error: release: not found\n"}, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": 'Release "mnist" has been upgraded.\n'})
    fakes.on("kubectl", ["wait", "isvc/mnist"], WAIT_TIMED_OUT, {"stdout": "inferenceservice/mnist condition met\n"})
    fakes.on("kubectl", ["get", "isvc"], isvc("False", "PredictorNotReady", "the pod is starting"))
    fakes.on("kubectl", ["port-forward"], {"serve": v2_answer(LABEL)})
    artifact = remote_artifact()
    release = Release.build(kspec, artifact.sha256)
    result = deploy.deploy(release, artifact, deploy.plan(release))

    kube = fakes.calls("kubectl")
    wait = ["wait", "isvc/mnist", '--for=jsonpath={.status.conditions[?(@.type=="Ready")].status}=True', "--timeout=5s"]
    assert [c["argv"][:4] for c in kube[:3]] == [wait, ["get", "isvc", "mnist", "--output"], wait]
    forward = kube[3]["argv"]
    assert forward[:2] == ["port-forward", "svc/mnist-predictor"] and forward[2].endswith(f":{KSERVE_PORT}")
    assert result.state == "Ready"
    assert predicted(result.smoke) == LABEL and result.smoke["modelSha256"] == "ab" * 32
    assert result.smoke["url"].endswith("/v2/models/mnist/infer")


def test_a_v2_answer_from_other_weights_fails_the_smoke_test(fakes, kspec, secret_env, clock):
    fakes.on("helm", ["status"], {"rc": 1, "stderr": "Error: release: not found\n"}, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": "upgraded\n"})
    fakes.on("kubectl", ["wait", "isvc/mnist"], {"stdout": "condition met\n"})
    fakes.on("kubectl", ["port-forward"], {"serve": v2_answer(LABEL, "cd" * 32)})
    artifact = remote_artifact()
    release = Release.build(kspec, artifact.sha256)
    with pytest.raises(MlctlError, match=r"serves the weights cdcdcdcdcdcd…, not abababababab…"):
        deploy.deploy(release, artifact, deploy.plan(release))


def test_a_timeout_names_the_ready_condition_and_kserves_pod_label(fakes, kspec, secret_env, clock):
    fakes.on("kubectl", ["wait", "isvc/mnist"], WAIT_TIMED_OUT)
    fakes.on("kubectl", ["get", "isvc"], isvc("False", "RevisionMissing", "image pull back-off"))
    with pytest.raises(MlctlError) as err:
        deploy.wait_available(Names.for_spec(kspec), 30)
    assert "InferenceService mnist is NotReady after 30s: RevisionMissing: image pull back-off" in err.value.message
    assert "serving.kserve.io/inferenceservice=mnist" in err.value.hint


def test_status_reads_the_inferenceservice(fakes, kspec, secret_env):
    fakes.on("helm", ["status"], deployed(2))
    fakes.on("helm", ["get", "values"], {"json": {"model": {"uri": "s3://mlctl-models/mnist", "sha256": "cd" * 32}}})
    fakes.on("kubectl", ["get", "isvc"], isvc("True"))
    st = cluster.status(kspec)
    assert (st["engine"], st["inferenceService"], st["state"]) == ("kserve", "mnist", "Ready")
    assert st["url"] == "http://mnist.models.example" and "seldonDeployment" not in st


def test_names_match_what_the_chart_renders(kspec, secret_env):
    from tests.chart.helpers import one, template

    names = Names.for_spec(kspec)
    objects = template(Release.build(kspec, remote_artifact().sha256).values, namespace="models")
    assert one(objects, "InferenceService")["metadata"]["name"] == names.served
    env = {e["name"]: e["value"] for e in one(objects, "Pod")["spec"]["containers"][0]["env"]}
    # The helm test pod and the smoke test aim at the same Service, port and path.
    assert (
        env["PREDICT_URL"] == f"http://{names.predictor_service}.models.svc:{names.service_port}/v2/models/mnist/infer"
    )
