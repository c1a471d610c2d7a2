"""The predictor pod KServe's controller builds from the chart's InferenceService (mlctl/kserve_pods.py)."""

from __future__ import annotations

import copy

import pytest

from mlctl import podsecurity
from mlctl.errors import MlctlError
from mlctl.pods import cluster_pods
from tests.chart.helpers import NAMESPACE, find_helm, one, template

pytestmark = pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)")

VALUES = {
    "serving": {"engine": "kserve", "grpc": False},
    "model": {"uri": "s3://models/mnist/v1"},
    "storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK"}},
}


def predictor(objects):
    (pod,) = [p for p in cluster_pods(objects, NAMESPACE) if p.role == "predictor"]
    return pod


def test_the_pod_carries_kserves_labels_and_its_service_targets_the_container_port():
    objects = template(values=VALUES)
    isvc = one(objects, "InferenceService")
    pod = predictor(objects)
    assert pod.owner == "Deployment/t-mnist-seldon-predictor (InferenceService/t-mnist-seldon)"
    labels = pod.manifest["metadata"]["labels"]
    assert labels["serving.kserve.io/inferenceservice"] == "t-mnist-seldon"
    assert (labels["component"], labels["app"]) == ("predictor", "isvc.t-mnist-seldon-predictor")
    # The predictor's annotations reach the pod, the InferenceService's too (deploymentMode).
    annotations = pod.manifest["metadata"]["annotations"]
    assert annotations["mlctl.io/model-sha256"] == "" and annotations["serving.kserve.io/deploymentMode"] == "Standard"
    spec = pod.manifest["spec"]
    p = isvc["spec"]["predictor"]
    # The PodSpec is the predictor's own; the component extension fields stay on the InferenceService.
    assert spec["containers"] == p["containers"] and spec["initContainers"] == p["initContainers"]
    assert not {"minReplicas", "maxReplicas", "timeout", "labels", "annotations"} & spec.keys()
    (service,) = pod.services
    assert (service.name, service.ports) == ("t-mnist-seldon-predictor", {"http": (80, 8080)})


def test_the_pod_meets_restricted_and_kserves_own_injected_initializer_would_not():
    pod = predictor(template(values=VALUES)).manifest
    assert podsecurity.check(pod) == []
    # What KServe 0.20 would inject without the chart's own (CreateInitContainerWithConfig):
    # name, image, args and resources, no securityContext.
    injected = copy.deepcopy(pod)
    init = injected["spec"]["initContainers"][0]
    injected["spec"]["initContainers"][0] = {k: init[k] for k in ("name", "image", "args", "resources")}
    controls = {v.control for v in podsecurity.check(injected) if v.where == "container storage-initializer"}
    assert controls == {"Privilege Escalation", "Capabilities"}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["containers"][0]["env"].append({"name": "STORAGE_URI", "value": "s3://x"}), "STORAGE_URI"),
        (lambda p: p.__setitem__("logger", {"mode": "all"}), "it sets logger"),
        (lambda p: p["containers"][0].__setitem__("name", "model"), "not named kserve-container"),
    ],
)
def test_what_the_model_does_not_cover_is_refused(change, message):
    objects = template(values=VALUES)
    change(one(objects, "InferenceService")["spec"]["predictor"])
    with pytest.raises(MlctlError, match=message):
        cluster_pods(objects, NAMESPACE)


def test_under_podman_only_kserves_service_port_is_redirected():
    """KServe's Service maps 80 to the container's 8080; under podman the Service's DNS names are
    the pod's own, so the podman target redirects 80 → 8080 in the pod's network namespace, as
    kube-proxy would route it (mlctl/podman.py). Seldon's Services target their own ports."""
    from mlctl.podman import service_forwards

    assert service_forwards(predictor(template(values=VALUES))) == [("t-mnist-seldon-predictor", 80, 8080)]
    seldon = {k: v for k, v in VALUES.items() if k != "serving"}
    for executor in (False, True):
        objects = template(values={**seldon, "serving": {"executor": {"enabled": executor}}})
        assert service_forwards(predictor(objects)) == []
