"""The pods a cluster runs for the chart's InferenceService, as KServe v0.20.0 builds them.

The chart's predictor is a custom one (its own container, `kserve-container`) that declares
KServe's storage initializer, its volume and mounts itself, so that the pod meets Pod Security
"restricted"; KServe's admission webhook then injects nothing (CommonStorageInitialization,
pkg/webhook/admission/pod/storage_initializer_injector.go). What the controller adds in the
Standard (raw Deployment) mode, each step named after the function of kserve/kserve at v0.20.0
it follows:

- the Deployment `<isvc>-predictor` (constants.PredictorServiceName) whose pod template carries
  buildObjectMeta's labels and annotations: the InferenceService's, the predictor's, and
  `serving.kserve.io/inferenceservice` + `component: predictor`, plus the raw Service selector
  `app: isvc.<isvc>-predictor` (GetRawServiceLabel); the PodSpec is the predictor's own;
- the Service `<isvc>-predictor`: port 80 to the container's first port (createDefaultSvc).

What this does not model, it refuses (a STORAGE_URI that KServe would act on, a logger or a
batcher agent, a transformer), so the podman target never runs a pod the cluster would not.
Pure: data in, data out.
"""

from __future__ import annotations

import copy
import hashlib
import json

from mlctl.errors import MlctlError

ISVC_KIND = ("serving.kserve.io/v1beta1", "InferenceService")
CONTAINER = "kserve-container"
HTTP_PORT = 80
# ComponentExtensionSpec and the predictor's framework fields: the rest of PredictorSpec is the PodSpec.
_EXTENSION_FIELDS = {
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
    "containerConcurrency", "timeout", "canaryTrafficPercent", "labels", "annotations",
    "deploymentStrategy", "storageUris", "storageContainerName", "workerSpec",
}  # fmt: skip
_UNMODELLED = {"logger", "batcher", "model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx"}


def _refuse(name: str, what: str) -> MlctlError:
    return MlctlError(f"InferenceService {name}: {what}, which mlctl's model of KServe's controller does not cover")


def predictor_pod(isvc: dict, namespace: str) -> tuple[str, dict, str, dict[str, tuple[int, int]]]:
    """(what owns it, the predictor's Pod as the Deployment's ReplicaSet creates it, its Service's
    name, that Service's {port name: (port, targetPort)})."""
    name = isvc["metadata"]["name"]
    predictor = copy.deepcopy(isvc["spec"]["predictor"])
    unmodelled = sorted(_UNMODELLED & predictor.keys()) + sorted(set(isvc["spec"]) - {"predictor"})
    if unmodelled:
        raise _refuse(name, f"it sets {', '.join(unmodelled)}")
    containers = predictor.get("containers") or []
    if [c.get("name") for c in containers][:1] != [CONTAINER]:
        raise _refuse(name, f"its first container is not named {CONTAINER}")
    if any(e.get("name") == "STORAGE_URI" for c in containers for e in c.get("env") or []):
        raise _refuse(name, "STORAGE_URI makes KServe's webhook inject its own storage initializer")
    deployment = f"{name}-predictor"  # PredictorServiceName
    isvc_meta = isvc["metadata"]
    labels = {
        **(isvc_meta.get("labels") or {}),
        **(predictor.get("labels") or {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{deployment}",  # the raw Service's selector
    }
    annotations = {**(isvc_meta.get("annotations") or {}), **(predictor.get("annotations") or {})}
    spec = {k: v for k, v in predictor.items() if k not in _EXTENSION_FIELDS}
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    template = {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment}-{digest}",
            "namespace": namespace,
            "labels": {**labels, "pod-template-hash": digest},
            "annotations": annotations,
        },
        "spec": spec,
    }
    ports = containers[0].get("ports") or [{"name": deployment, "containerPort": 8080}]
    owner = f"Deployment/{deployment} (InferenceService/{name})"
    return owner, pod, deployment, {"http": (HTTP_PORT, int(ports[0]["containerPort"]))}
