"""Pod Security Standards: every pod the release creates meets `restricted`; the checker's every
row catches the pod that breaks it."""

from __future__ import annotations

import copy

import pytest

from mlctl import podsecurity
from mlctl.pods import ENGINE_CONTAINER, cluster_pods
from tests.chart.helpers import CI_VALUES, NAMESPACE, TRAINING, find_helm, template

pytestmark = pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)")

S3 = {
    "model": {"uri": "s3://models/mnist/v1"},
    "storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK"}},
}


def release_pods(values=None, files=()):
    return cluster_pods(
        template(
            values={**(values or {}), "training": {**(values or {}).get("training", {}), **TRAINING}},
            values_files=files,
        ),
        NAMESPACE,
    )


VARIANTS = {"defaults": (S3, ()), **{p.stem: (None, (p,)) for p in CI_VALUES}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_and_container_meets_restricted(variant):
    values, files = VARIANTS[variant]
    for pod in release_pods(values, files):
        assert podsecurity.check(pod.manifest) == [], pod.owner
        assert set(podsecurity.container_levels(pod.manifest).values()) == {"restricted"}


def test_with_the_executor_the_pod_meets_baseline_because_of_the_executor_alone():
    pods = {p.role: p for p in release_pods({**S3, "serving": {"executor": {"enabled": True}}})}
    predictor = pods["predictor"].manifest
    assert podsecurity.level(predictor) == "baseline"
    violations = podsecurity.check(predictor)
    assert [(v.profile, v.control, v.where) for v in violations] == [
        ("restricted", "Capabilities", f"container {ENGINE_CONTAINER}")
    ]
    assert podsecurity.container_levels(predictor) == {
        "classifier-model-initializer": "restricted",
        "classifier": "restricted",
        ENGINE_CONTAINER: "baseline",
    }
    assert podsecurity.level(pods["training"].manifest) == "restricted"


def test_the_initializer_the_operator_would_inject_fails_restricted():
    objects = template(values=S3)
    sdep = next(o for o in objects if o["kind"] == "SeldonDeployment")
    spec = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    spec.pop("initContainers")
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "classifier-provision-location"]
    spec["containers"][0]["volumeMounts"] = [
        m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] != "/mnt/models"
    ]
    (pod,) = [p for p in cluster_pods(objects, NAMESPACE) if p.role == "predictor"]
    controls = {
        v.control for v in podsecurity.check(pod.manifest) if v.where == "container classifier-model-initializer"
    }
    assert controls == {"Privilege Escalation", "Capabilities"}


# --- each row of the table catches what it names ------------------------------------------------


def _clean() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }


def _c(pod):
    return pod["spec"]["containers"][0]["securityContext"]


BREAKS = {
    ("baseline", "HostProcess"): lambda p: _c(p).update(windowsOptions={"hostProcess": True}),
    ("baseline", "Host Namespaces"): lambda p: p["spec"].update(hostNetwork=True),
    ("baseline", "Privileged Containers"): lambda p: _c(p).update(privileged=True),
    ("baseline", "Capabilities"): lambda p: _c(p)["capabilities"].update(add=["SYS_ADMIN"]),
    ("baseline", "HostPath Volumes"): lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    ("baseline", "Host Ports"): lambda p: p["spec"]["containers"][0].update(
        ports=[{"containerPort": 80, "hostPort": 80}]
    ),
    ("baseline", "AppArmor"): lambda p: p["metadata"]["annotations"].update(
        {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}
    ),
    ("baseline", "SELinux"): lambda p: _c(p).update(seLinuxOptions={"type": "spc_t"}),
    ("baseline", "/proc Mount Type"): lambda p: _c(p).update(procMount="Unmasked"),
    ("baseline", "Seccomp"): lambda p: _c(p).update(seccompProfile={"type": "Unconfined"}),
    ("baseline", "Sysctls"): lambda p: p["spec"]["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    ("restricted", "Volume Types"): lambda p: p["spec"]["volumes"].append(
        {"name": "n", "nfs": {"server": "s", "path": "/"}}
    ),
    ("restricted", "Privilege Escalation"): lambda p: _c(p).pop("allowPrivilegeEscalation"),
    ("restricted", "Running as Non-root"): lambda p: _c(p).update(runAsNonRoot=False),
    ("restricted", "Running as Non-root user"): lambda p: _c(p).update(runAsUser=0),
    ("restricted", "Seccomp"): lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
    ("restricted", "Capabilities"): lambda p: _c(p)["capabilities"].update(drop=["NET_RAW"]),
}


def test_the_clean_pod_is_restricted():
    assert podsecurity.check(_clean()) == [] and podsecurity.level(_clean()) == "restricted"


def test_every_rule_has_a_case():
    assert set(BREAKS) == {(profile, control) for profile, control, _ in podsecurity.RULES}


@pytest.mark.parametrize("rule", BREAKS, ids=lambda r: f"{r[0]}-{r[1]}")
def test_each_rule_catches_the_pod_that_breaks_it(rule):
    pod = copy.deepcopy(_clean())
    BREAKS[rule](pod)
    found = {(v.profile, v.control) for v in podsecurity.check(pod)}
    assert rule in found, podsecurity.check(pod)
    assert podsecurity.level(pod) == ("privileged" if rule[0] == "baseline" else "baseline")
