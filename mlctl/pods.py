"""The pods a cluster runs for the rendered chart, as Seldon Core 1.17.1's operator builds them.

`cluster_pods(objects)` turns what `helm template` renders into the Pods the cluster will run:

- the training Job's pod (the Job controller adds its labels);
- the predictor's pod, built from the SeldonDeployment the way the 1.17.1 operator does it: its
  admission webhook's defaults, then its controller's Deployment, Services, storage
  initializer and (unless `seldon.io/no-engine`) executor. Each step names the function of
  SeldonIO/seldon-core at tag v1.17.1 it follows, so a reviewer can read them side by side;
- with engine kserve, the InferenceService's predictor pod instead (mlctl/kserve_pods.py);
- the `helm test` pod, as rendered.

It is pure (data in, data out). `mlctl template --pods` prints the result; the podman target
(mlctl/podman.py) runs it; the Pod Security checks read it. Operator settings that come from the
operator's own Helm chart (executor image and user, initializer defaults) are those of
helm-charts/seldon-core-operator/values.yaml at v1.17.1 (`OperatorConfig`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass, field

from mlctl import kserve_pods
from mlctl.errors import MlctlError

SDEP_KIND = ("machinelearning.seldon.io/v1", "SeldonDeployment")
PODINFO_VOLUME, PODINFO_PATH = "seldon-podinfo", "/etc/podinfo"
MODELS_PATH = "/mnt/models"
PVC_SOURCE_VOLUME, PVC_SOURCE_PATH = "kfserving-pvc-source", "/mnt/pvc"
ENGINE_CONTAINER = "seldon-container-engine"
NO_ENGINE = "seldon.io/no-engine"
FIRST_HTTP_PORT, FIRST_GRPC_PORT, FIRST_METRICS_PORT = 9000, 9500, 6000
PROMETHEUS_PATH = "/prometheus"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator's own chart configures (helm-charts/seldon-core-operator/values.yaml, v1.17.1)."""

    default_user_id: int = 8888
    executor_image: str = "docker.io/seldonio/seldon-core-executor:1.17.1"
    executor_user: int = 8888
    executor_http_port: int = 8000
    executor_grpc_port: int = 5001
    executor_resources: dict = field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        }
    )
    initializer_image: str = "seldonio/rclone-storage-initializer:1.17.1"
    initializer_resources: dict = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )


OPERATOR = OperatorConfig()


@dataclass(frozen=True)
class Service:
    """A Service the cluster routes to a pod: {port name: (port, targetPort)}."""

    name: str
    namespace: str
    ports: dict[str, tuple[int, int]]

    def dns_names(self) -> list[str]:
        """The names a pod in the cluster resolves for it (short name for the same namespace)."""
        base = f"{self.name}.{self.namespace}"
        return [self.name, base, f"{base}.svc", f"{base}.svc.cluster.local"]


@dataclass(frozen=True)
class ClusterPod:
    role: str
    """`training`, `predictor` or `test`."""
    owner: str
    """What creates it: `Job/…`, `Deployment/…` (of the SeldonDeployment), `Pod/…` (a helm hook)."""
    manifest: dict
    """The Pod (apiVersion v1) as the cluster creates it."""
    services: tuple[Service, ...] = ()

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


def cluster_pods(objects: list[dict], namespace: str, operator: OperatorConfig = OPERATOR) -> list[ClusterPod]:
    """Every pod the release's objects make the cluster run: training Job, predictors, test pod."""
    pods: list[ClusterPod] = []
    for obj in objects:
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if kind == ("batch/v1", "Job"):
            pods.append(_job_pod(obj, namespace))
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) == SDEP_KIND:
            pods.extend(predictor_pods(obj, namespace, operator))
        elif (obj.get("apiVersion"), obj.get("kind")) == kserve_pods.ISVC_KIND:
            owner, pod, service, ports = kserve_pods.predictor_pod(obj, namespace)
            pods.append(ClusterPod("predictor", owner, pod, (Service(service, namespace, ports),)))
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) == ("v1", "Pod"):
            pods.append(ClusterPod("test", f"Pod/{obj['metadata']['name']}", _as_pod(obj, namespace)))
    return pods


def _template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _as_pod(obj: dict, namespace: str) -> dict:
    pod = copy.deepcopy(obj)
    pod["metadata"].setdefault("namespace", namespace)
    return pod


def _job_pod(job: dict, namespace: str) -> ClusterPod:
    """The Job controller's pod: the template plus its job-name labels."""
    name = job["metadata"]["name"]
    template = copy.deepcopy(job["spec"]["template"])
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), "job-name": name, "batch.kubernetes.io/job-name": name}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-{_template_hash(template)[:5]}", "namespace": namespace, **meta},
        "spec": template["spec"],
    }
    return ClusterPod("training", f"Job/{name}", pod)


# --- the SeldonDeployment ----------------------------------------------------------------------


def _names(mldep: str, predictor: str, index: int, spec: dict) -> str:
    """GetDeploymentName (seldondeployment_types.go): `<sdep>-<predictor>-<index>-<containers>`."""
    name = f"{mldep}-{predictor}-{index}-" + "-".join(c["name"] for c in spec["spec"]["containers"])
    meta_name = (spec.get("metadata") or {}).get("name")
    if meta_name:
        name = f"{mldep}-{predictor}-{index}-{meta_name}"
    return name if len(name) <= 63 else "seldon-" + hashlib.md5(name.encode()).hexdigest()


def _service_name(name: str) -> str:
    """GetPredictorKey / GetContainerServiceName: the name, or `seldon-<md5>` past 63 characters."""
    return name if len(name) <= 63 else "seldon-" + hashlib.md5(name.encode()).hexdigest()


def _graph_units(unit: dict) -> list[dict]:
    return [unit, *(u for child in unit.get("children") or [] for u in _graph_units(child))]


def _set_env(env: list[dict], name: str, value: str) -> list[dict]:
    """utils.SetEnvVar(envVars, newVar, override=false) as 1.17.1 writes it: appends when absent.
    When the name is already there it returns nil, which empties the container's whole env; no
    value our chart renders has these names, and `_check_env` refuses one that does."""
    return env if any(e["name"] == name for e in env) else [*env, {"name": name, "value": value}]


def _port(container: dict, name: str) -> dict | None:
    return next((p for p in container.get("ports") or [] if p.get("name") == name), None)


def predictor_pods(sdep: dict, namespace: str, operator: OperatorConfig = OPERATOR) -> list[ClusterPod]:
    """One pod per componentSpec of each predictor, as the operator's Deployment creates it."""
    sdep = copy.deepcopy(sdep)
    mldep = sdep["metadata"]["name"]
    seldon_id = mldep if len(mldep) <= 63 else "seldon-" + hashlib.md5(mldep.encode()).hexdigest()
    pods = []
    for predictor in sdep["spec"]["predictors"]:
        _default(sdep, predictor, namespace)
        no_engine = str((predictor.get("annotations") or {}).get(NO_ENGINE, "")).lower() == "true"
        predictor_service = _service_name(f"{mldep}-{predictor['name']}")
        for index, component in enumerate(predictor.get("componentSpecs") or []):
            if not component["spec"].get("containers"):
                continue
            pods.append(
                _predictor_pod(
                    sdep, predictor, index, component, namespace, seldon_id, no_engine, predictor_service, operator
                )
            )
    return pods


def _default(sdep: dict, predictor: dict, namespace: str) -> None:
    """The admission webhook's defaults (defaults.go, DefaultSeldonDeployment and
    setContainerPredictiveUnitDefaults), applied to the stored SeldonDeployment."""
    predictor.setdefault("labels", {}).setdefault("version", predictor["name"])
    units = {u["name"]: u for u in _graph_units(predictor["graph"])}
    for u in units.values():
        u.setdefault("type", "MODEL")
        u.setdefault("implementation", "UNKNOWN_IMPLEMENTATION")
    next_http, next_grpc, next_metrics = FIRST_HTTP_PORT, FIRST_GRPC_PORT, FIRST_METRICS_PORT
    assigned: dict[str, tuple[int, int]] = {}
    for component in predictor.get("componentSpecs") or []:
        for con in component["spec"].get("containers") or []:
            if con["name"] not in assigned:  # getUpdatePortNumMap: one pair per container name
                assigned[con["name"]] = (next_http, next_grpc)
                next_http, next_grpc = next_http + 1, next_grpc + 1
            unit = units.get(con["name"])
            if unit is None:
                continue
            con.setdefault("imagePullPolicy", "IfNotPresent")
            con.setdefault("terminationMessagePath", "/dev/termination-log")
            con.setdefault("terminationMessagePolicy", "File")
            http, grpc = assigned[con["name"]]
            http = (_port(con, "http") or {}).get("containerPort", http)
            grpc = (_port(con, "grpc") or {}).get("containerPort", grpc)
            if not any(m["name"] == PODINFO_VOLUME for m in con.get("volumeMounts") or []):
                con.setdefault("volumeMounts", []).append({"name": PODINFO_VOLUME, "mountPath": PODINFO_PATH})
            if _port(con, "metrics") is None:  # addMetricsPortAndIncrement
                con.setdefault("ports", []).append(
                    {"name": "metrics", "containerPort": next_metrics, "protocol": "TCP"}
                )
                next_metrics += 1
            unit["endpoint"] = {
                **(unit.get("endpoint") or {}),
                "httpPort": http,
                "grpcPort": grpc,
                "service_host": "localhost",
                "service_port": http,
                "type": (unit.get("endpoint") or {}).get("type", "REST"),
            }


def _predictor_pod(
    sdep: dict,
    predictor: dict,
    index: int,
    component: dict,
    namespace: str,
    seldon_id: str,
    no_engine: bool,
    predictor_service: str,
    operator: OperatorConfig,
) -> ClusterPod:
    mldep = sdep["metadata"]["name"]
    dep_name = _names(mldep, predictor["name"], index, component)
    units = {u["name"]: u for u in _graph_units(predictor["graph"])}
    # createDeploymentWithoutEngine (seldondeployment_controller.go): labels, annotations from
    # the SeldonDeployment, the predictor and the componentSpec; the PodSpec copied as is.
    labels = {"seldon-deployment-id": seldon_id, "app": dep_name, "fluentd": "true"}
    annotations = {"prometheus.io/path": PROMETHEUS_PATH, "prometheus.io/scrape": "true"}
    for source in (
        sdep["spec"].get("annotations"),
        predictor.get("annotations"),
        (component.get("metadata") or {}).get("annotations"),
    ):
        annotations.update(source or {})
    spec = copy.deepcopy(component["spec"])
    # A pod securityContext only when none is given (DEFAULT_USER_ID, security.go).
    spec.setdefault("securityContext", {"runAsUser": operator.default_user_id})
    labels.update(predictor.get("labels") or {})
    labels.update((component.get("metadata") or {}).get("labels") or {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 20)
    volumes = spec.setdefault("volumes", [])
    if not any(v["name"] == PODINFO_VOLUME for v in volumes):
        volumes.append(
            {
                "name": PODINFO_VOLUME,
                "downwardAPI": {
                    "defaultMode": 0o644,
                    "items": [
                        {"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}
                    ],
                },
            }
        )

    services: list[Service] = []
    for con in spec["containers"]:
        unit = units.get(con["name"])
        if unit is None:  # a container that is no graph node gets no Service
            continue
        if unit.get("type") == "MODEL":  # addLabelsToDeployment
            labels["seldon.io/model"] = "true"
        labels["app.kubernetes.io/managed-by"] = "seldon-core"
        services.append(_container_service(sdep, predictor, con, unit, labels, namespace))
        if no_engine:
            labels["seldon-app"] = predictor_service
            http, grpc = services[-1].ports["http"][0], services[-1].ports["grpc"][0]
            services.append(Service(predictor_service, namespace, {"http": (http, http), "grpc": (grpc, grpc)}))

    for unit in units.values():  # addModelServersAndInitContainers: non-prepackaged units with modelUri
        con = next((c for c in spec["containers"] if c["name"] == unit["name"]), None)
        if con is not None and unit.get("modelUri"):
            _inject_model_initializer(spec, con, unit, operator)

    if not no_engine:  # addEngineToDeployment (seldondeployment_engine.go)
        spec["containers"].append(_executor(sdep, predictor, operator))
        labels["seldon-app"] = predictor_service
        labels["seldon-deployment-contains-svcorch"] = "true"
        services.append(
            Service(
                predictor_service,
                namespace,
                {
                    "http": (operator.executor_http_port, operator.executor_http_port),
                    "grpc": (operator.executor_grpc_port, operator.executor_grpc_port),
                },
            )
        )

    template = {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{dep_name}-{_template_hash(template)}",
            "namespace": namespace,
            "labels": {**labels, "pod-template-hash": _template_hash(template)},
            "annotations": annotations,
        },
        "spec": spec,
    }
    return ClusterPod("predictor", f"Deployment/{dep_name} (SeldonDeployment/{mldep})", pod, tuple(services))


def _check_env(con: dict, names: tuple[str, ...]) -> None:
    clash = sorted({e["name"] for e in con.get("env") or []} & set(names))
    if clash:
        raise MlctlError(
            f"container {con['name']} sets {', '.join(clash)}: Seldon 1.17.1's operator then drops the "
            "container's whole env (utils.SetEnvVar with override=false returns nil)",
            hint="leave these variables to the operator",
        )


def _container_service(sdep: dict, predictor: dict, con: dict, unit: dict, labels: dict, namespace: str) -> Service:
    """createContainerService (seldondeployment_controller.go): the container's Service, ports,
    default probes, preStop and the PREDICTIVE_UNIT_* / MLSERVER_* environment."""
    mldep = sdep["metadata"]["name"]
    http, grpc = unit["endpoint"]["httpPort"], unit["endpoint"]["grpcPort"]
    svc_name = _service_name(f"{mldep}-{predictor['name']}-{con['name']}")
    labels[f"seldon-app-svc-{con['name']}"] = svc_name
    ports = con.setdefault("ports", [])
    if _port(con, "http") is None:
        ports.append({"name": "http", "containerPort": http, "protocol": "TCP"})
    if _port(con, "grpc") is None:
        ports.append({"name": "grpc", "containerPort": grpc, "protocol": "TCP"})
    grpc_transport = unit["endpoint"].get("type") == "GRPC" or sdep["spec"].get("transport") == "grpc"
    probe_port = grpc if grpc_transport else http
    con.setdefault(
        "livenessProbe",
        {
            "tcpSocket": {"port": probe_port},
            "initialDelaySeconds": 60,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
            "timeoutSeconds": 1,
        },
    )
    con.setdefault(
        "readinessProbe",
        {
            "tcpSocket": {"port": probe_port},
            "initialDelaySeconds": 20,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
            "timeoutSeconds": 1,
        },
    )
    con.setdefault("lifecycle", {"preStop": {"exec": {"command": ["/bin/sh", "-c", "/bin/sleep 10"]}}})
    injected = (
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT",
        "MLSERVER_HTTP_PORT",
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT",
        "MLSERVER_GRPC_PORT",
        "MLSERVER_MODEL_URI",
        "PREDICTIVE_UNIT_PARAMETERS",
    )
    _check_env(con, injected)
    env = list(con.get("env") or [])
    if not any(e["name"] == "PREDICTIVE_UNIT_SERVICE_PORT" for e in env):
        env.append({"name": "PREDICTIVE_UNIT_SERVICE_PORT", "value": str(probe_port)})
    for name, value in (
        ("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", http),
        ("MLSERVER_HTTP_PORT", http),
        ("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", grpc),
        ("MLSERVER_GRPC_PORT", grpc),
    ):
        env = _set_env(env, name, str(value))  # addPortEnvs
    if unit.get("parameters"):  # addModelEnvs
        env = _set_env(env, "PREDICTIVE_UNIT_PARAMETERS", json.dumps(unit["parameters"], separators=(",", ":")))
    if unit.get("modelUri"):
        env = _set_env(env, "MLSERVER_MODEL_URI", MODELS_PATH)
    env += [
        {"name": "PREDICTIVE_UNIT_ID", "value": con["name"]},
        {"name": "MLSERVER_MODEL_NAME", "value": con["name"]},
        {"name": "PREDICTIVE_UNIT_IMAGE", "value": con["image"]},
        {"name": "PREDICTOR_ID", "value": predictor["name"]},
        {
            "name": "PREDICTOR_LABELS",
            "value": json.dumps(predictor.get("labels") or {}, separators=(",", ":"), sort_keys=True),
        },
        {"name": "SELDON_DEPLOYMENT_ID", "value": mldep},
        {"name": "SELDON_EXECUTOR_ENABLED", "value": "true"},
    ]
    metrics = _port(con, "metrics")
    if metrics is not None:
        port = str(metrics["containerPort"])
        env += [
            {"name": "PREDICTIVE_UNIT_METRICS_SERVICE_PORT", "value": port},
            {"name": "PREDICTIVE_UNIT_METRICS_ENDPOINT", "value": PROMETHEUS_PATH},
            {"name": "MLSERVER_METRICS_PORT", "value": port},
            {"name": "MLSERVER_METRICS_ENDPOINT", "value": PROMETHEUS_PATH},
        ]
    con["env"] = env
    return Service(svc_name, namespace, {"http": (http, http), "grpc": (grpc, grpc)})


def _cut(name: str) -> str:
    return name[:63].rstrip("-")


def _inject_model_initializer(spec: dict, con: dict, unit: dict, operator: OperatorConfig) -> None:
    """InjectModelInitializer (model_initializer_injector.go)."""
    volume, init_name = _cut(f"{con['name']}-provision-location"), _cut(f"{con['name']}-model-initializer")

    def mount(container: dict, name: str, path: str) -> None:  # addVolumeMountToContainer
        if not any(m["name"] == name for m in container.get("volumeMounts") or []):
            container.setdefault("volumeMounts", []).append({"name": name, "mountPath": path, "readOnly": True})

    if any(c["name"] == init_name for c in spec.get("initContainers") or []):
        # Declared already: only make sure the model container mounts the volume.
        mount(con, volume, MODELS_PATH)
        return
    uri, init_mounts = unit["modelUri"], []
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        spec["volumes"].append({"name": PVC_SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
        init_mounts.append({"name": PVC_SOURCE_VOLUME, "mountPath": PVC_SOURCE_PATH, "readOnly": True})
        mount(con, PVC_SOURCE_VOLUME, PVC_SOURCE_PATH)
        uri = f"{PVC_SOURCE_PATH}/{path}"
    spec["volumes"].append({"name": volume, "emptyDir": {}})
    init_mounts.append({"name": volume, "mountPath": MODELS_PATH, "readOnly": False})
    init = {
        "name": init_name,
        "image": operator.initializer_image,
        "imagePullPolicy": "IfNotPresent",
        "args": [uri, MODELS_PATH],
        "volumeMounts": init_mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "resources": copy.deepcopy(operator.initializer_resources),
    }
    mount(con, volume, MODELS_PATH)
    if unit.get("envSecretRefName"):  # addEnvFromSecret; the init container gets no securityContext
        init["envFrom"] = [{"secretRef": {"name": unit["envSecretRefName"]}}]
    spec.setdefault("initContainers", []).append(init)


def _executor(sdep: dict, predictor: dict, operator: OperatorConfig) -> dict:
    """createEngineContainer / createExecutorContainer (seldondeployment_engine.go) with the
    operator chart's executor settings."""
    http, grpc = operator.executor_http_port, operator.executor_grpc_port
    engine_predictor = {**copy.deepcopy(predictor), "traffic": 0, "replicas": 0}
    probe = {
        "initialDelaySeconds": 20,
        "periodSeconds": 5,
        "failureThreshold": 3,
        "successThreshold": 1,
        "timeoutSeconds": 60,
    }
    return {
        "name": ENGINE_CONTAINER,
        "image": operator.executor_image,
        "args": [
            "--sdep",
            sdep["metadata"]["name"],
            "--namespace",
            sdep["metadata"].get("namespace", ""),
            "--predictor",
            predictor["name"],
            "--http_port",
            str(http),
            "--grpc_port",
            str(grpc),
            "--protocol",
            sdep["spec"].get("protocol", "seldon"),
            "--transport",
            sdep["spec"].get("transport", "rest"),
            "--prometheus_path",
            PROMETHEUS_PATH,
            "--server_type",
            sdep["spec"].get("serverType", "rpc"),
            "--log_work_buffer_size",
            "10000",
            "--log_write_timeout_ms",
            "2000",
            "--full_health_checks=false",
        ],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": PODINFO_VOLUME, "mountPath": PODINFO_PATH}],
        "env": [
            {
                "name": "ENGINE_PREDICTOR",
                "value": base64.b64encode(json.dumps(engine_predictor, sort_keys=True).encode()).decode(),
            },
            {"name": "REQUEST_LOGGER_DEFAULT_ENDPOINT", "value": "http://default-broker"},
        ],
        "ports": [
            {"containerPort": http, "protocol": "TCP", "name": "http"},
            {"containerPort": http, "protocol": "TCP", "name": "metrics"},
            {"containerPort": grpc, "protocol": "TCP", "name": "grpc"},
        ],
        "readinessProbe": {"httpGet": {"port": http, "path": "/ready", "scheme": "HTTP"}, **probe},
        "livenessProbe": {"httpGet": {"port": http, "path": "/live", "scheme": "HTTP"}, **probe},
        "resources": copy.deepcopy(operator.executor_resources),
        # EXECUTOR_CONTAINER_USER: a user and no privilege escalation, nothing more.
        "securityContext": {"runAsUser": operator.executor_user, "allowPrivilegeEscalation": False},
    }
