"""Assertions on rendered paths: what the operator, kubelet and registry will actually see."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mlctl.specload import load_contract
from tests.chart.helpers import (
    CHART,
    EXAMPLES,
    NAMESPACE,
    RELEASE,
    TRAINING,
    find,
    helm_binaries,
    load_yaml,
    one,
    run_helm,
    template,
)
from tests.helpers import MODEL_PACKAGE

CI = CHART / "ci"
FULLNAME = f"{RELEASE}-mnist-seldon"
S3 = {
    "model": {"uri": "s3://models/mnist/v1"},
    "storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK"}},
}
APP_VERSION = load_yaml(CHART / "Chart.yaml")["appVersion"]


def render(helm, values=None, ci=None):
    return template(values=values, values_files=[CI / f"{ci}-values.yaml"] if ci else (), helm=helm)


def predictor(objects):
    return one(objects, "SeldonDeployment")["spec"]["predictors"][0]


def component(objects):
    return predictor(objects)["componentSpecs"][0]


def model_container(objects):
    (container,) = component(objects)["spec"]["containers"]
    return container


def secret_data(secret):
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# --- the SeldonDeployment ---------------------------------------------------------------------


def test_seldondeployment_shape(helm):
    objects = render(helm, ci="default")
    sdep = one(objects, "SeldonDeployment")
    assert sdep["metadata"]["name"] == FULLNAME
    assert sdep["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert sdep["metadata"]["labels"]["helm.sh/chart"] == "mnist-seldon-0.3.0"
    assert sdep["spec"]["annotations"] == {"seldon.io/rest-timeout": "5000"}
    p = predictor(objects)
    assert p["name"] == "default" and p["replicas"] == 1
    assert p["graph"] == {
        "name": "classifier",
        "type": "MODEL",
        "modelUri": "s3://models/mnist/v1",
        "envSecretRefName": f"{FULLNAME}-storage",
        "children": [],
    }
    c = model_container(objects)
    # The operator finds the container to mount /mnt/models into by the graph node's name.
    assert c["name"] == p["graph"]["name"]
    assert c["image"] == f"ghcr.io/example/mnist-seldon:{APP_VERSION}"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "1",
        "TORCH_THREADS": "1",
        "MODEL_PRECISION": "int8",
        "GRPC_WORKERS": "1",
        "MODEL_URI": "/mnt/models",
        "MODEL_SHA256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    }
    assert component(objects)["metadata"]["annotations"]["mlctl.io/model-sha256"] == env["MODEL_SHA256"]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}


def test_serving_knobs_reach_env_and_annotations(helm):
    objects = render(
        helm,
        {
            **S3,
            "serving": {
                "workers": 4,
                "threads": 3,
                "torchThreads": 2,
                "precision": "float32",
                "restTimeoutMs": 12000,
                "image": {"tag": "sha-abc"},
                "podAnnotations": {"a.io/b": "c"},
            },
        },
    )
    env = {e["name"]: e["value"] for e in model_container(objects)["env"]}
    assert (env["GUNICORN_WORKERS"], env["GUNICORN_THREADS"], env["TORCH_THREADS"]) == ("4", "3", "2")
    assert env["MODEL_PRECISION"] == "float32"
    assert one(objects, "SeldonDeployment")["spec"]["annotations"]["seldon.io/rest-timeout"] == "12000"
    assert model_container(objects)["image"].endswith(":sha-abc")
    assert component(objects)["metadata"]["annotations"]["a.io/b"] == "c"


def test_security_contexts_are_restricted(helm):
    objects = render(helm, {"tests": EXAMPLES}, ci="train-gpu")
    pod_specs = [
        component(objects)["spec"],
        one(objects, "Job")["spec"]["template"]["spec"],
        one(objects, "Pod")["spec"],
    ]
    for spec in pod_specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["securityContext"]["runAsUser"] > 0
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["name"] != "predict":  # the test pod writes nothing
                assert "/tmp" in mounts, f"{c['name']} has a read-only root but no writable /tmp"
    assert component(objects)["spec"]["securityContext"]["runAsUser"] == 10001


def test_http_probes_on_the_wrapper_port(helm):
    c = model_container(render(helm, ci="default"))
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/status", "port": 9000}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/ping", "port": 9000}
    assert c["livenessProbe"]["initialDelaySeconds"] == 30 and c["readinessProbe"]["periodSeconds"] == 5


def test_replicas_without_autoscaling_and_hpa_spec_with_it(helm):
    assert "hpaSpec" not in component(render(helm, ci="default"))
    objects = render(helm, ci="autoscaling")
    assert "replicas" not in predictor(objects)  # the HPA owns the count
    assert component(objects)["hpaSpec"] == {
        "minReplicas": 2,
        "maxReplicas": 8,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 60}}],
    }


def test_node_selector_and_tolerations(helm):
    spec = component(render(helm, ci="pvc"))["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeSelector" not in component(render(helm, ci="default"))["spec"]


# --- Secrets ----------------------------------------------------------------------------------


def test_no_pull_secret_by_default(helm):
    objects = render(helm, ci="default")
    assert "imagePullSecrets" not in component(objects)["spec"]
    assert not find(objects, "Secret", "-registry")
    assert "checksum/registry-secret" not in component(objects)["metadata"]["annotations"]


def test_registry_secret_is_a_valid_dockerconfigjson(helm):
    objects = render(helm, ci="registry")
    secret = one(objects, "Secret", "-registry")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(secret_data(secret)[".dockerconfigjson"])
    entry = config["auths"]["ghcr.io"]
    assert base64.b64decode(entry["auth"]).decode() == "mlctl-bot:ghp_notarealtoken"
    assert (entry["username"], entry["password"], entry["email"]) == (
        "mlctl-bot",
        "ghp_notarealtoken",
        "bot@example.com",
    )
    assert component(objects)["spec"]["imagePullSecrets"] == [{"name": f"{FULLNAME}-registry"}]


def test_existing_secrets_are_referenced_not_created(helm):
    objects = render(helm, ci="existing-secrets")
    assert not find(objects, "Secret")
    assert component(objects)["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert predictor(objects)["graph"]["envSecretRefName"] == "minio-rclone"
    annotations = component(objects)["metadata"]["annotations"]
    assert not [k for k in annotations if k.startswith("checksum/")]


def test_storage_secret_keys(helm):
    objects = render(helm, ci="default")
    data = secret_data(one(objects, "Secret", "-storage"))
    # Empty options (region) are left out; names are RCLONE_CONFIG_<REMOTE>_<KEY>.
    assert data == {
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "Minio",
        "RCLONE_CONFIG_S3_ENDPOINT": "http://minio.minio.svc:9000",
        "RCLONE_CONFIG_S3_ENV_AUTH": "false",
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": "minio",
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": "minio123",
    }


def test_storage_secret_follows_the_remote_and_extra_options(helm):
    objects = render(helm, ci="registry")  # gs:// with workload identity, no credentials
    data = secret_data(one(objects, "Secret", "-storage"))
    # Seldon's initializer image presets RCLONE_CONFIG_GS_ANONYMOUS=true: without the override
    # workload identity would download anonymously (and get 401/403).
    assert data == {
        "RCLONE_CONFIG_GS_TYPE": "google cloud storage",
        "RCLONE_CONFIG_GS_ENV_AUTH": "true",
        "RCLONE_CONFIG_GS_ANONYMOUS": "false",
    }
    public = render(
        helm,
        {
            "model": {"uri": "gs://public/m"},
            "storage": {
                "remote": "gs",
                "config": {"type": "google cloud storage", "provider": "", "env_auth": "true", "anonymous": "true"},
            },
        },
    )
    assert secret_data(one(public, "Secret", "-storage"))["RCLONE_CONFIG_GS_ANONYMOUS"] == "true"
    objects = render(helm, {**S3, "storage": {**S3["storage"], "config": {"acl": "private"}}})
    assert secret_data(one(objects, "Secret", "-storage"))["RCLONE_CONFIG_S3_ACL"] == "private"


def test_pvc_uri_needs_no_storage_secret(helm):
    objects = render(helm, ci="pvc")
    assert not find(objects, "Secret")
    assert "envSecretRefName" not in predictor(objects)["graph"]
    assert predictor(objects)["graph"]["modelUri"] == "pvc://mnist-models/mnist/v1"


def _checksums(objects):
    annotations = component(objects)["metadata"]["annotations"]
    return annotations.get("checksum/registry-secret"), annotations.get("checksum/storage-secret")


def test_checksums_follow_secret_data_only(helm):
    base = {**S3, "registry": {"server": "ghcr.io", "username": "u", "password": "p1"}}
    reg, sto = _checksums(render(helm, base))
    assert reg and sto
    new_password = _checksums(render(helm, {**base, "registry": {**base["registry"], "password": "p2"}}))
    assert new_password[0] != reg and new_password[1] == sto
    new_key = _checksums(
        render(helm, {**base, "storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK2"}}})
    )
    assert new_key[0] == reg and new_key[1] != sto
    # Values outside the Secrets leave the checksums (and so the pods) alone.
    assert _checksums(render(helm, {**base, "serving": {"replicas": 3}, "nameOverride": "other"})) == (reg, sto)


# --- the training Job -------------------------------------------------------------------------


def _job_containers(job):
    spec = job["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}, spec


def test_training_job_off_by_default(helm):
    assert not find(render(helm, ci="default"), "Job")


def test_training_job_on_object_storage_with_gpu(helm):
    job = one(render(helm, ci="train-gpu"), "Job")
    containers, spec = _job_containers(job)
    assert [c["name"] for c in spec["initContainers"]] == ["train"]
    assert [c["name"] for c in spec["containers"]] == ["upload"]
    train, upload = containers["train"], containers["upload"]
    assert train["command"] == ["python", "-m", "model.train"]
    # The chart alone gives the trainer its data and its output (it exited 2 on a missing
    # --data-dir before); the output is a folder *inside* the mount, which the writer can replace.
    assert train["args"] == [
        "--data-dir",
        "/data",
        "--download",
        "--epochs",
        "1",
        "--limit-train",
        "10000",
        "--limit-test",
        "2000",
        "--out",
        "/out/model",
    ]
    mounts = {m["mountPath"]: m["name"] for m in train["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/data": "data", "/out": "out"}
    assert train["resources"]["limits"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": 1}
    assert train["image"] == f"ghcr.io/example/mnist-train:{APP_VERSION}"
    # The upload runs Seldon's own rclone image (entrypoint `rclone copy`), as the initializer does.
    assert upload["image"] == "seldonio/rclone-storage-initializer:1.17.1"
    # No --verbose: on top of the image's RCLONE_VERBOSE=1 it makes rclone log the secret keys.
    # Weights first, metadata last, one at a time: no half-uploaded folder the server would load.
    assert upload["args"] == ["--transfers", "1", "--order-by", "name,descending", "/out/model", "s3:models/mnist/v2"]
    assert upload["envFrom"] == [{"secretRef": {"name": f"{FULLNAME}-storage"}}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["out"] == {"name": "out", "emptyDir": {}} and volumes["data"] == {"name": "data", "emptyDir": {}}
    assert spec["restartPolicy"] == "Never"
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert (
        job["spec"]["backoffLimit"],
        job["spec"]["activeDeadlineSeconds"],
        job["spec"]["ttlSecondsAfterFinished"],
    ) == (0, 3600, 86400)


def test_training_job_mirrors_reach_the_trainer(helm):
    values = {**S3, "training": {**TRAINING, "data": {"mirrors": ["http://m1/", "https://m2/x/"]}}}
    train = _job_containers(one(render(helm, values), "Job"))[0]["train"]
    assert train["args"][:7] == [
        "--data-dir",
        "/data",
        "--download",
        "--mirror",
        "http://m1/",
        "--mirror",
        "https://m2/x/",
    ]


def test_training_job_into_a_claim(helm):
    job = one(render(helm, ci="train-pvc"), "Job")
    containers, spec = _job_containers(job)
    assert list(containers) == ["train"] and "initContainers" not in spec
    train = containers["train"]
    assert "nvidia.com/gpu" not in str(train.get("resources", {}))
    # The whole claim is mounted and the model folder is written inside it (a subPath mount
    # would make the model folder the mount point, which the writer's rename cannot replace).
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    assert mounts["/store"] == {"name": "store", "mountPath": "/store"}
    assert train["args"][-2:] == ["--out", "/store/mnist/v1"]
    # Data from a claim: read-only, no download.
    assert mounts["/data"] == {"name": "data", "mountPath": "/data", "readOnly": True, "subPath": "mnist"}
    assert "--download" not in train["args"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"] == {"claimName": "mnist-models"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "mnist-data", "readOnly": True}
    assert "ttlSecondsAfterFinished" not in job["spec"]  # null by default: keep the finished Job


def test_training_job_claim_comes_from_a_pvc_uri(helm):
    job = one(render(helm, {"model": {"uri": "pvc://models/mnist/v3/"}, "training": TRAINING}), "Job")
    containers, spec = _job_containers(job)
    assert containers["train"]["args"][-2:] == ["--out", "/store/mnist/v3"]
    assert {v["name"]: v for v in spec["volumes"]}["store"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert "initContainers" not in spec


def test_training_job_name_changes_only_with_its_spec(helm):
    values = load_yaml(CI / "train-pvc-values.yaml")
    name = one(render(helm, values), "Job")["metadata"]["name"]
    assert name.startswith(f"{FULLNAME}-train-")
    assert one(render(helm, {**values, "serving": {"replicas": 5}}), "Job")["metadata"]["name"] == name
    changed = {**values, "training": {**values["training"], "args": ["--epochs", "2"]}}
    assert one(render(helm, changed), "Job")["metadata"]["name"] != name
    other_data = {**values, "training": {**values["training"], "data": {"claimName": "other"}}}
    assert one(render(helm, other_data), "Job")["metadata"]["name"] != name


# --- the storage initializer, the executor, the ServiceAccount --------------------------------


def _initializer(objects):
    (init,) = component(objects)["spec"]["initContainers"]
    return init


def test_storage_initializer_is_declared_hardened(helm):
    """The 1.17.1 operator injects `<graph>-model-initializer` with no securityContext unless the
    PodSpec declares one of that name; then it adds nothing, so the chart declares the container,
    its emptyDir and the mounts itself."""
    objects = render(helm, ci="default")
    init, spec = _initializer(objects), component(objects)["spec"]
    assert init["name"] == "classifier-model-initializer"
    assert init["image"] == "seldonio/rclone-storage-initializer:1.17.1"
    assert init["args"] == ["s3://models/mnist/v1", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": f"{FULLNAME}-storage"}}]
    assert init["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]} == {
        "/mnt/models": "classifier-provision-location",
        "/tmp": "tmp",
    }
    model_mounts = {m["mountPath"]: m for m in model_container(objects)["volumeMounts"]}
    assert model_mounts["/mnt/models"] == {
        "name": "classifier-provision-location",
        "mountPath": "/mnt/models",
        "readOnly": True,
    }
    assert {"name": "classifier-provision-location", "emptyDir": {}} in spec["volumes"]


def test_storage_initializer_reads_a_claim_as_the_operator_does(helm):
    objects = render(helm, ci="pvc")
    init, spec = _initializer(objects), component(objects)["spec"]
    assert init["args"] == ["/mnt/pvc/mnist/v1", "/mnt/models"]
    assert "envFrom" not in init
    assert {"name": "kfserving-pvc-source", "mountPath": "/mnt/pvc", "readOnly": True} in init["volumeMounts"]
    assert {
        "name": "kfserving-pvc-source",
        "persistentVolumeClaim": {"claimName": "mnist-models", "readOnly": True},
    } in spec["volumes"]


def test_initializer_names_are_cut_as_the_operator_cuts_them(helm):
    name = "m" * 45
    objects = render(helm, {**S3, "model": {**S3["model"], "name": name}})
    # 45 + "-provision-location" is 64 characters; the operator keeps the first 63.
    assert _initializer(objects)["name"] == f"{name}-model-initializer"
    assert _initializer(objects)["volumeMounts"][0]["name"] == f"{name}-provision-locatio"


def test_executor_is_off_by_default_and_the_service_port_follows(helm):
    objects = render(helm, ci="default")
    assert predictor(objects)["annotations"] == {"seldon.io/no-engine": "true"}
    env = {e["name"]: e["value"] for e in one(objects, "Pod")["spec"]["containers"][0]["env"]}
    assert env["PREDICT_URL"] == f"http://{FULLNAME}-default.{NAMESPACE}.svc:9000/api/v1.0/predictions"
    on = render(helm, {**S3, "serving": {"executor": {"enabled": True}}, "tests": EXAMPLES})
    assert "annotations" not in predictor(on)
    env = {e["name"]: e["value"] for e in one(on, "Pod")["spec"]["containers"][0]["env"]}
    assert env["PREDICT_URL"] == f"http://{FULLNAME}-default.{NAMESPACE}.svc:8000/api/v1.0/predictions"


def test_grpc_is_served_on_the_port_the_operator_declares(helm):
    env = {e["name"]: e["value"] for e in model_container(render(helm, ci="default"))["env"]}
    assert env["GRPC_WORKERS"] == "1"
    off = {e["name"]: e["value"] for e in model_container(render(helm, {**S3, "serving": {"grpc": False}}))["env"]}
    assert off["GRPC_WORKERS"] == "0"


def test_service_account_reaches_every_pod(helm):
    objects = render(
        helm,
        {
            **S3,
            "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
            "training": TRAINING,
            "tests": EXAMPLES,
        },
    )
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["name"] == FULLNAME and sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
    specs = [component(objects)["spec"], one(objects, "Job")["spec"]["template"]["spec"], one(objects, "Pod")["spec"]]
    assert [s["serviceAccountName"] for s in specs] == [FULLNAME] * 3
    assert all(s["automountServiceAccountToken"] is False for s in specs)
    existing = render(helm, {**S3, "serviceAccount": {"name": "ml-reader"}})
    assert not find(existing, "ServiceAccount")
    assert component(existing)["spec"]["serviceAccountName"] == "ml-reader"
    assert "serviceAccountName" not in component(render(helm, ci="default"))["spec"]


def test_network_policy_admits_only_the_serving_ports(helm):
    assert not find(render(helm, ci="default"), "NetworkPolicy")
    objects = render(helm, {**S3, "networkPolicy": {"enabled": True}})
    policy = one([o for o in objects if o["metadata"]["name"] == FULLNAME], "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"seldon-deployment-id": FULLNAME}}
    # The Job's and the test's pods serve nothing: a policy each with no ingress rule at all.
    for component in ("training", "test"):
        closed = one(objects, "NetworkPolicy", f"-{component}")
        assert closed["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert closed["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in closed["spec"]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [9000, 9500, 6000]
    assert "from" not in policy["spec"]["ingress"][0]
    with_executor = one(
        render(
            helm,
            {
                **S3,
                "networkPolicy": {"enabled": True, "from": [{"podSelector": {}}]},
                "serving": {"executor": {"enabled": True}, "grpc": False},
            },
        ),
        "NetworkPolicy",
        f"{FULLNAME}",
    )
    assert [p["port"] for p in with_executor["spec"]["ingress"][0]["ports"]] == [9000, 6000, 8000, 5001]
    assert with_executor["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]


def test_chart_upgrade_alone_leaves_the_pod_templates_alone(helm, tmp_path):
    """Pod templates carry no helm.sh/chart or version label: a chart version bump must not roll
    the model pods or replace the training Job's pod."""
    import shutil

    chart = tmp_path / "mnist-seldon"
    shutil.copytree(CHART, chart)
    meta = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(
        meta.replace("version: 0.3.0", "version: 9.9.9").replace('appVersion: "0.1.0"', 'appVersion: "9.9.9"')
    )
    values = {
        **S3,
        "training": TRAINING,
        "serving": {"image": {"tag": "t1"}},
        "tests": {"image": {"tag": "3.11-slim"}},
    }
    values["training"]["image"] = {"tag": "t1"}
    old = template(values=values, helm=helm)
    new = [
        doc
        for doc in __import__("yaml").safe_load_all(
            run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, values=values)
        )
        if doc
    ]
    assert one(new, "SeldonDeployment")["metadata"]["labels"]["helm.sh/chart"] == "mnist-seldon-9.9.9"
    assert component(new) == component(old)
    assert one(new, "Job")["spec"]["template"] == one(old, "Job")["spec"]["template"]


# --- names, the helm test pod -----------------------------------------------------------------


def test_long_release_names_are_cut_to_63(helm):
    objects = template(values={"model": {"uri": "pvc://m/p"}, "fullnameOverride": "x" * 55}, helm=helm)
    assert one(objects, "SeldonDeployment")["metadata"]["name"] == "x" * 55
    assert all(len(o["metadata"]["name"]) <= 63 for o in objects)


def test_test_pod_calls_the_predictor_service(helm):
    objects = render(helm, ci="default")
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    # Seldon v1 names the predictor's Service "<sdep>-<predictor>"; without the executor it
    # serves the model's REST port, 9000.
    assert env["PREDICT_URL"] == f"http://{FULLNAME}-default.{NAMESPACE}.svc:9000/api/v1.0/predictions"
    cm = one(objects, "ConfigMap", "-test-sample")
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    contract = load_contract(MODEL_PACKAGE)
    for example in contract.examples:
        assert base64.b64decode(cm["binaryData"][example.input.name]) == example.input.read_bytes()
    assert cm["data"]["predict.py"].strip() == (CHART / "files/predict.py").read_text().strip()
    manifest = json.loads(cm["data"]["examples.json"])
    assert manifest["output"] == {"name": contract.output.name, "labels": contract.output.labels}
    assert [(e["file"], e["expect"], e["status"]) for e in manifest["examples"]] == [
        (e.input.name, e.expect or "", e.status or 0) for e in contract.examples
    ]
    assert "content" not in manifest["examples"][0]


def test_tests_can_be_switched_off(helm):
    objects = render(helm, ci="pvc")
    assert not find(objects, "Pod") and not find(objects, "ConfigMap")


@pytest.mark.parametrize("ci", ["default", "train-gpu"])
def test_notes_tell_how_to_predict(ci):
    # Helm 4's `install --dry-run=client` prints NOTES.txt without a cluster (Helm 3's still
    # dials one); `template` never prints it.
    helm4 = helm_binaries().get("helm4")
    if helm4 is None:
        pytest.skip("NOTES.txt needs Helm 4 to render without a cluster")
    notes = run_helm(
        helm4,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        values_files=[CI / f"{ci}-values.yaml"],
    )
    notes = notes.split("NOTES:", 1)[1]
    assert f"port-forward svc/{FULLNAME}-default 9000:9000" in notes
    assert "curl -s -F binData=@digit.png http://127.0.0.1:9000/api/v1.0/predictions" in notes
    assert "data.tensor" in notes and "9500" in notes
    assert f"/seldon/{NAMESPACE}/{FULLNAME}/api/v1.0/predictions" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert ("logs -f job" in notes) == (ci == "train-gpu")


# --- the Job's trainer arguments, read by the trainer's own parser ----------------------------

JOB_VARIANTS = {
    "chart defaults": ({**S3, "training": TRAINING}, None),
    "train-gpu": (None, "train-gpu"),
    "train-pvc": (None, "train-pvc"),
}


@pytest.mark.parametrize("variant", JOB_VARIANTS)
def test_job_args_parse_and_write_inside_a_writable_mount(helm, variant):
    """With the chart alone, `python -m model.train` used to exit 2 at once (no --data-dir), and
    through mlctl it trained and then failed: --out was the mount point itself, so the writer's
    temporary sibling landed on the read-only root and the final rename hit the mount."""
    from model.trainconfig import build_parser

    values, ci = JOB_VARIANTS[variant]
    containers, _ = _job_containers(one(render(helm, values, ci=ci), "Job"))
    train = containers["train"]
    args = build_parser().parse_args(train["args"])  # exits (SystemExit 2) on a missing flag
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    out, data = Path(args.out), Path(args.data_dir)
    parent_mount = [p for p in mounts if out.parent == Path(p) or Path(p) in out.parents]
    assert parent_mount, f"--out {out} is on no volume (the root filesystem is read-only)"
    assert str(out) not in mounts, "--out is a mount point: the atomic rename cannot replace it"
    assert not mounts[parent_mount[0]].get("readOnly")
    assert str(data) in mounts
