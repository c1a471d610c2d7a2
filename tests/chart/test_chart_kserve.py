"""Engine kserve: what the chart renders for KServe (v0.20.0) instead of the SeldonDeployment."""

from __future__ import annotations

import base64

import pytest

from tests.chart.helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    find,
    helm_binaries,
    one,
    run_helm,
    template,
    template_error,
)

CI = CHART / "ci"
FULLNAME = f"{RELEASE}-mnist-seldon"
SHA = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
from mlctl.render import examples_values  # noqa: E402
from mlctl.specload import load_contract  # noqa: E402
from tests.helpers import MODEL_PACKAGE  # noqa: E402

KSERVE = {"serving": {"engine": "kserve", "grpc": False}}
PVC = {**KSERVE, "model": {"uri": "pvc://mnist-models/mnist/v1"}}


def render(helm, values=None):
    return template(values=values, values_files=[CI / "kserve-values.yaml"], helm=helm)


def predictor(objects):
    return one(objects, "InferenceService")["spec"]["predictor"]


def container(objects):
    (c,) = predictor(objects)["containers"]
    return c


def test_an_inferenceservice_replaces_the_seldondeployment(helm):
    objects = render(helm)
    assert not find(objects, "SeldonDeployment")
    isvc = one(objects, "InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["metadata"]["name"] == FULLNAME
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Standard",
        "mlctl.io/model-sha256": SHA,
    }
    p = predictor(objects)
    assert (p["minReplicas"], p["maxReplicas"], p["timeout"]) == (1, 1, 5)
    assert "scaleMetric" not in p
    assert p["annotations"]["mlctl.io/model-sha256"] == SHA
    c = container(objects)
    # KServe finds the predictor's container by this name.
    assert c["name"] == "kserve-container"
    assert c["command"] == ["python", "-m", "runtime.kserve_server"]
    assert c["args"] == ["--model_name=classifier", "--http_port=8080", "--workers=2", "--enable_grpc=false"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {
        "PROTOCOL": "v2",
        "TORCH_THREADS": "1",
        "MODEL_PRECISION": "int8",
        "MODEL_SHA256": SHA,
        "MODEL_URI": "/mnt/models",
    }
    # No STORAGE_URI: the chart declares KServe's initializer itself (below), so KServe injects nothing.
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/models/classifier/ready", "port": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}


def test_every_container_is_restricted_and_the_model_arrives_read_only(helm):
    p = predictor(render(helm))
    assert p["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert p["automountServiceAccountToken"] is False
    (init,) = p["initContainers"]
    assert init["name"] == "storage-initializer"
    assert init["image"] == "kserve/storage-initializer:v0.20.0"
    assert init["args"] == ["s3://models/mnist/v1", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": f"{FULLNAME}-storage"}}]
    for c in (init, *p["containers"]):
        assert c["securityContext"] == RESTRICTED, c["name"]
    mounts = {m["mountPath"]: m for m in p["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/models"] == {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
    assert {"name": "kserve-provision-location", "emptyDir": {}} in p["volumes"]


def test_the_storage_secret_carries_what_kserves_initializer_reads(helm):
    objects = render(helm)
    secret = one(objects, "Secret", "-storage")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert {k: v for k, v in data.items() if not k.startswith("RCLONE_")} == {
        "AWS_ACCESS_KEY_ID": "minio",
        "AWS_SECRET_ACCESS_KEY": "minio123",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://minio.minio.svc:9000",
        "S3_ENDPOINT": "minio.minio.svc:9000",
        "S3_USE_HTTPS": "0",
    }
    # The training Job's upload still speaks rclone.
    assert data["RCLONE_CONFIG_S3_ACCESS_KEY_ID"] == "minio"
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.minio.svc:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "eu-west-1",
    }
    https = render(helm, {"storage": {"config": {"endpoint": "https://s3.example.com/"}}})
    data = {k: base64.b64decode(v).decode() for k, v in one(https, "Secret", "-storage")["data"].items()}
    assert (data["S3_ENDPOINT"], data["S3_USE_HTTPS"]) == ("s3.example.com", "1")


def test_a_claim_is_mounted_as_kserve_mounts_one_with_no_initializer(helm):
    objects = template(values=PVC)
    p = predictor(objects)
    assert "initContainers" not in p and not find(objects, "Secret")
    mounts = {m["mountPath"]: m for m in p["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/models"] == {
        "name": "kserve-provision-location",
        "mountPath": "/mnt/models",
        "readOnly": True,
        "subPath": "mnist/v1",
    }
    assert {
        "name": "kserve-provision-location",
        "persistentVolumeClaim": {"claimName": "mnist-models", "readOnly": True},
    } in p["volumes"]


def test_autoscaling_becomes_kserves_scale_fields(helm):
    p = predictor(
        render(
            helm,
            {
                "serving": {
                    "autoscaling": {
                        "enabled": True,
                        "minReplicas": 2,
                        "maxReplicas": 6,
                        "targetCPUUtilizationPercentage": 55,
                    }
                }
            },
        )
    )
    assert (p["minReplicas"], p["maxReplicas"], p["scaleMetric"], p["scaleTarget"]) == (2, 6, "cpu", 55)
    fixed = predictor(render(helm, {"serving": {"replicas": 3, "restTimeoutMs": 12001}}))
    assert (fixed["minReplicas"], fixed["maxReplicas"], fixed["timeout"]) == (3, 3, 13)
    knative = one(render(helm, {"serving": {"kserve": {"deploymentMode": "Knative"}}}), "InferenceService")
    assert knative["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"


def test_pull_secret_service_account_and_workers_reach_the_predictor(helm):
    objects = render(
        helm,
        {
            "registry": {"server": "ghcr.io", "username": "u", "password": "p"},
            "serviceAccount": {"create": True},
            "serving": {"workers": 4, "torchThreads": 2, "precision": "float32"},
        },
    )
    p = predictor(objects)
    assert p["imagePullSecrets"] == [{"name": f"{FULLNAME}-registry"}]
    assert p["serviceAccountName"] == FULLNAME
    assert "checksum/registry-secret" in p["annotations"] and "checksum/storage-secret" in p["annotations"]
    c = container(objects)
    assert "--workers=4" in c["args"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert (env["TORCH_THREADS"], env["MODEL_PRECISION"]) == ("2", "float32")


def test_the_test_pod_speaks_v2_to_kserves_predictor_service(helm):
    pod = one(render(helm), "Pod")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["PREDICT_URL"] == f"http://{FULLNAME}-predictor.{NAMESPACE}.svc:80/v2/models/classifier/infer"
    assert env["PROTOCOL"] == "v2"


def test_network_policy_selects_kserves_pods_on_their_one_port(helm):
    objects = render(helm, {"networkPolicy": {"enabled": True}})
    policy = one([o for o in objects if o["metadata"]["name"] == FULLNAME], "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": FULLNAME}}
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_seldon_only_values_are_refused_with_engine_kserve(helm):
    err = template_error(
        values={**KSERVE, "serving": {"engine": "kserve", "grpc": True}, "model": {"uri": "pvc://c/m"}}
    )
    assert "serving.grpc is Seldon's gRPC API" in err
    err = template_error(
        values={
            "serving": {"engine": "kserve", "grpc": False, "executor": {"enabled": True}},
            "model": {"uri": "pvc://c/m"},
        }
    )
    assert "serving.executor.enabled is Seldon's executor" in err
    err = template_error(
        values={**KSERVE, "model": {"uri": "gs://b/m"}, "storage": {"remote": "gs", "existingSecret": "gcs"}}
    )
    assert 'model.uri "gs://b/m": with serving.engine kserve the chart delivers s3:// or pvc:// models' in err


def test_notes_say_how_to_reach_the_inferenceservice():
    # Helm 4's `install --dry-run=client` prints NOTES.txt without a cluster.
    helm4 = helm_binaries().get("helm4")
    if helm4 is None:
        pytest.skip("NOTES.txt needs Helm 4 to render without a cluster")
    out = run_helm(
        helm4, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
        values_files=[CI / "kserve-values.yaml"],
    )  # fmt: skip
    notes = out.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} wait --for=condition=Ready isvc/{FULLNAME}" in notes
    assert f"port-forward svc/{FULLNAME}-predictor 8080:80" in notes
    assert "http://127.0.0.1:8080/v2/models/classifier/infer" in notes and "/v1/models/classifier:predict" in notes
    assert "SeldonDeployment" not in notes and "9500" not in notes


def test_a_chart_upgrade_alone_leaves_kserves_pod_alone(helm, tmp_path):
    """KServe copies the InferenceService's labels into the pod template, so they carry no chart
    or app version: a chart bump must not roll the predictor pods."""
    import shutil

    import yaml

    from mlctl.pods import cluster_pods

    chart = tmp_path / "mnist-seldon"
    shutil.copytree(CHART, chart)
    meta = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(meta.replace("version: 0.3.0", "version: 9.9.9").replace('"0.1.0"', '"9.9.9"'))
    values = {**KSERVE, "model": {"uri": "pvc://c/m"}, "serving": {**KSERVE["serving"], "image": {"tag": "t1"}}}
    values["tests"] = examples_values(load_contract(MODEL_PACKAGE))  # so that the test ConfigMap exists
    old = template(values=values, helm=helm)
    text = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, values=values)
    new = [d for d in yaml.safe_load_all(text) if d]
    assert one(new, "ConfigMap")["metadata"]["labels"]["helm.sh/chart"] == "mnist-seldon-9.9.9"

    def predictor_pod(objects):
        return next(p.manifest for p in cluster_pods(objects, NAMESPACE) if p.role == "predictor")

    assert predictor_pod(new) == predictor_pod(old)
