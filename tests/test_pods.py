"""The pods the cluster runs for the rendered chart, as Seldon 1.17.1's operator builds them."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import yaml

from mlctl.errors import MlctlError
from mlctl.pods import ENGINE_CONTAINER, cluster_pods, predictor_pods
from tests.chart.helpers import CHART, EXAMPLES, NAMESPACE, TRAINING, find_helm, one, template

pytestmark = pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)")

S3 = {
    "model": {"uri": "s3://models/mnist/v1"},
    "storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK"}},
}
FULLNAME = "t-mnist-seldon"


def pods(values=None, ci=None):
    files = [CHART / "ci" / f"{ci}-values.yaml"] if ci else ()
    return {p.role: p for p in cluster_pods(template(values=values, values_files=files), NAMESPACE)}


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def by_name(items):
    return {i["name"]: i for i in items}


def test_every_pod_of_the_release_is_there():
    roles = pods({**S3, "training": TRAINING, "tests": EXAMPLES})
    assert sorted(roles) == ["predictor", "test", "training"]
    assert roles["training"].owner.startswith("Job/t-mnist-seldon-train-")
    assert roles["predictor"].owner == f"Deployment/{FULLNAME}-default-0-classifier (SeldonDeployment/{FULLNAME})"
    assert roles["test"].name == f"{FULLNAME}-test-predict"
    job_labels = roles["training"].manifest["metadata"]["labels"]
    assert job_labels["job-name"] == roles["training"].owner.removeprefix("Job/")


def test_the_model_container_gets_what_the_operator_injects():
    pod = pods(S3)["predictor"].manifest
    spec = pod["spec"]
    model = by_name(spec["containers"])["classifier"]
    env = env_of(model)
    # The chart's own env comes first and is kept (nothing of ours collides with the injection).
    assert list(env)[:7] == [
        "GUNICORN_WORKERS",
        "GUNICORN_THREADS",
        "TORCH_THREADS",
        "MODEL_PRECISION",
        "GRPC_WORKERS",
        "MODEL_SHA256",
        "MODEL_URI",
    ]
    assert {
        k: env[k]
        for k in (
            "PREDICTIVE_UNIT_SERVICE_PORT",
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT",
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT",
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT",
            "PREDICTIVE_UNIT_ID",
            "PREDICTOR_ID",
            "SELDON_DEPLOYMENT_ID",
            "MLSERVER_MODEL_URI",
            "PREDICTOR_LABELS",
        )
    } == {
        "PREDICTIVE_UNIT_SERVICE_PORT": "9000",
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "9000",
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": "9500",
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": "6000",
        "PREDICTIVE_UNIT_ID": "classifier",
        "PREDICTOR_ID": "default",
        "SELDON_DEPLOYMENT_ID": FULLNAME,
        "MLSERVER_MODEL_URI": "/mnt/models",
        "PREDICTOR_LABELS": '{"version":"default"}',
    }
    assert [(p["name"], p["containerPort"]) for p in model["ports"]] == [
        ("metrics", 6000),
        ("http", 9000),
        ("grpc", 9500),
    ]
    # Our HTTP probes are kept; the operator adds its preStop and the podinfo downward API.
    assert model["readinessProbe"]["httpGet"] == {"path": "/health/status", "port": 9000}
    assert model["lifecycle"] == {"preStop": {"exec": {"command": ["/bin/sh", "-c", "/bin/sleep 10"]}}}
    assert {"name": "seldon-podinfo", "mountPath": "/etc/podinfo"} in model["volumeMounts"]
    podinfo = by_name(spec["volumes"])["seldon-podinfo"]["downwardAPI"]["items"]
    assert podinfo == [{"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}]
    assert (spec["terminationGracePeriodSeconds"], spec["restartPolicy"]) == (20, "Always")
    # The annotations the wrapper reads from /etc/podinfo/annotations.
    assert pod["metadata"]["annotations"]["seldon.io/rest-timeout"] == "5000"
    assert pod["metadata"]["labels"]["seldon-deployment-id"] == FULLNAME


def test_the_declared_initializer_is_not_injected_twice():
    spec = pods(S3)["predictor"].manifest["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["classifier-model-initializer"]
    assert [v["name"] for v in spec["volumes"]].count("classifier-provision-location") == 1
    assert [c["name"] for c in spec["containers"]] == ["classifier"]  # no executor by default


def _sdep(values):
    return one(template(values=values), "SeldonDeployment")


def test_without_the_declaration_the_operator_injects_its_own_initializer():
    sdep = _sdep(S3)
    spec = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    spec.pop("initContainers")
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "classifier-provision-location"]
    for c in spec["containers"]:
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/mnt/models"]
    (pod,) = predictor_pods(sdep, NAMESPACE)
    (init,) = pod.manifest["spec"]["initContainers"]
    assert (
        init["name"] == "classifier-model-initializer" and init["image"] == "seldonio/rclone-storage-initializer:1.17.1"
    )
    assert init["args"] == ["s3://models/mnist/v1", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": f"{FULLNAME}-storage"}}]
    assert "securityContext" not in init  # why the chart declares it
    model = pod.manifest["spec"]["containers"][0]
    assert {"name": "classifier-provision-location", "mountPath": "/mnt/models", "readOnly": True} in model[
        "volumeMounts"
    ]


def test_an_injected_pvc_initializer_reads_the_claim_at_mnt_pvc():
    sdep = _sdep({"model": {"uri": "pvc://claim/models/m1"}})
    spec = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    spec.pop("initContainers")
    spec["volumes"] = [
        v for v in spec["volumes"] if v["name"] not in ("classifier-provision-location", "kfserving-pvc-source")
    ]
    (pod,) = predictor_pods(sdep, NAMESPACE)
    (init,) = pod.manifest["spec"]["initContainers"]
    assert init["args"] == ["/mnt/pvc/models/m1", "/mnt/models"]
    assert by_name(pod.manifest["spec"]["volumes"])["kfserving-pvc-source"] == {
        "name": "kfserving-pvc-source",
        "persistentVolumeClaim": {"claimName": "claim"},
    }


def test_services_follow_the_executor_switch():
    predictor = pods(S3)["predictor"]
    assert {s.name: s.ports for s in predictor.services} == {
        f"{FULLNAME}-default-classifier": {"http": (9000, 9000), "grpc": (9500, 9500)},
        f"{FULLNAME}-default": {"http": (9000, 9000), "grpc": (9500, 9500)},
    }
    assert predictor.services[1].dns_names()[2] == f"{FULLNAME}-default.{NAMESPACE}.svc"
    with_engine = pods({**S3, "serving": {"executor": {"enabled": True}}})["predictor"]
    assert {s.name: s.ports for s in with_engine.services}[f"{FULLNAME}-default"] == {
        "http": (8000, 8000),
        "grpc": (5001, 5001),
    }
    engine = by_name(with_engine.manifest["spec"]["containers"])[ENGINE_CONTAINER]
    assert engine["image"] == "docker.io/seldonio/seldon-core-executor:1.17.1"
    assert engine["securityContext"] == {"runAsUser": 8888, "allowPrivilegeEscalation": False}
    predictor_json = json.loads(base64.b64decode(env_of(engine)["ENGINE_PREDICTOR"]))
    assert predictor_json["graph"]["endpoint"]["httpPort"] == 9000 and predictor_json["replicas"] == 0


def test_an_env_name_the_operator_overwrites_is_refused():
    sdep = _sdep(S3)
    model = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    model["env"].append({"name": "PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "value": "9001"})
    with pytest.raises(MlctlError, match="drops the container's whole env"):
        predictor_pods(sdep, NAMESPACE)


def test_long_names_are_hashed_as_the_operator_hashes_them():
    sdep = _sdep({**S3, "fullnameOverride": "x" * 50, "model": {**S3["model"], "name": "m" * 20}})
    (pod,) = predictor_pods(sdep, NAMESPACE)
    assert pod.owner.startswith("Deployment/seldon-") and len(pod.owner.split()[0]) == len("Deployment/seldon-") + 32
    assert pod.manifest["metadata"]["name"].startswith("seldon-")


def test_the_input_is_not_changed():
    objects = template(values=S3)
    before = copy.deepcopy(objects)
    cluster_pods(objects, NAMESPACE)
    assert objects == before


def test_template_pods_cli_prints_every_pod(mlctl, shipped_copy):
    p = mlctl("template", shipped_copy, "--pods")
    assert p.returncode == 0, p.stderr
    docs = [d for d in yaml.safe_load_all(p.stdout) if d]
    assert [d["kind"] for d in docs] == ["Pod"] * 3
    assert "# predictor: the pod of Deployment/mnist-default-0-mnist (SeldonDeployment/mnist)" in p.stdout
    assert "# Service mnist-default: http 9000→9000, grpc 9500→9500" in p.stdout
    assert "<redacted>" not in p.stdout  # Pods carry Secret references, never values
