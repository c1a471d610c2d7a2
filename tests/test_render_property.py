"""Property: every valid spec renders with the real `helm template`, and every rendered object is
valid — Kubernetes kinds against kubernetes-validate's schemas (strict), the SeldonDeployment
against the v1.17.1 CRD schema, the InferenceService (engine kserve) against KServe v0.20.0's
strict schema. Secret values given by environment variable decode back out of
the rendered Secrets.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlctl.render import build_values
from mlctl.secrets import resolve_secrets
from mlctl.spec import DNS_LABEL_MAX, ENGINES, KSERVE_STORE_SCHEMES, Spec, _quantity_value, min_rest_timeout_ms
from mlctl.valuesfile import private_values_file
from tests.chart.helpers import KSERVE_SCHEMA, SELDON_SCHEMA, find, find_helm, template, validate_all
from tests.helpers import MODEL_PACKAGE

pytestmark = [
    pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)"),
    pytest.mark.skipif(not SELDON_SCHEMA.is_file(), reason=f"{SELDON_SCHEMA} not found (../shared beside the repo)"),
    pytest.mark.skipif(not KSERVE_SCHEMA.is_file(), reason=f"{KSERVE_SCHEMA} not found (../shared beside the repo)"),
]

EXAMPLES = 40
ENV = {"T_REG_PW": "pw-Zx81!", "T_KEY_ID": "AKIA5EXAMPLE", "T_SECRET": "s3cr3t/+=key"}

# DNS-1123 labels up to the spec's own bound (53, helm's release-name limit), the long band
# drawn on purpose: a name of 46-53 characters once passed mlctl validate and failed the chart.
short = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
long_ = st.from_regex(rf"[a-z][a-z0-9-]{{44,{DNS_LABEL_MAX - 2}}}[a-z0-9]", fullmatch=True)
label = st.one_of(short, long_)
cpu = st.sampled_from(["100m", "250m", "1", "2", 1, 0.5])
memory = st.sampled_from(["128Mi", "512Mi", "1Gi", "2Gi"])


@st.composite
def resources(draw):
    req = {"cpu": draw(cpu), "memory": draw(memory)}
    return {"requests": req, "limits": {"cpu": "4", "memory": "4Gi"}} if draw(st.booleans()) else {"requests": req}


@st.composite
def specs(draw) -> dict:
    engine = draw(st.sampled_from(ENGINES))
    scheme = draw(st.sampled_from(["s3", "gs", "pvc"] if engine == "seldon" else list(KSERVE_STORE_SCHEMES)))
    uri = f"{scheme}://{draw(label)}/{draw(label)}"
    spec: dict = {"apiVersion": "mlctl/v1", "name": draw(label), "modelStore": {"uri": uri}}
    lo = draw(st.integers(1, 100))
    image = f"registry.example.com/{draw(label)}:{draw(st.sampled_from(['1.0', 'latest', 'v2']))}"
    spec["serving"] = {
        "engine": engine,
        "replicas": draw(st.integers(0, 100)),
        "workers": draw(st.integers(1, 64)),
        "torchThreads": draw(st.integers(1, 64)),
        "precision": draw(st.sampled_from(["int8", "float32"])),
        "resources": draw(resources()),
        "autoscaling": {"enabled": draw(st.booleans()), "minReplicas": lo, "maxReplicas": draw(st.integers(lo, 100))},
    }
    served = spec["serving"]
    cpus = _quantity_value(str((served["resources"].get("limits") or served["resources"]["requests"])["cpu"]))
    # The shortest timeout the spec accepts for these workers and CPUs, or more.
    served["restTimeoutMs"] = min_rest_timeout_ms(served["workers"], cpus) + draw(st.sampled_from([0, 1000, 55000]))
    if engine == "seldon":
        served["image"], served["threads"] = image, draw(st.integers(1, 64))
        served["grpc"], served["executor"] = draw(st.booleans()), draw(st.booleans())
    else:
        served["kserve"] = {
            "image": image,
            "deploymentMode": draw(st.sampled_from(["Standard", "Knative"])),
            "storageInitializerImage": f"registry.example.com/{draw(label)}:v0.20.0",
        }
    if draw(st.booleans()):
        spec["training"] = {
            "runner": {"kind": "kubernetes", "gpus": draw(st.integers(0, 16)), "resources": draw(resources())}
        }
    registry = draw(st.sampled_from(["none", "create", "existing"]))
    if registry == "create":
        spec["registry"] = {"server": "registry.example.com", "username": draw(label), "password": {"env": "T_REG_PW"}}
    elif registry == "existing":
        spec["registry"] = {"existingSecret": draw(label)}
    if scheme != "pvc":
        if draw(st.booleans()):
            spec["storage"] = {"existingSecret": draw(label)}
        else:
            remote_type = "s3" if scheme == "s3" else "google cloud storage"
            spec["storage"] = {
                "rclone": {"type": remote_type, "env_auth": "false"},
                "accessKeyId": {"env": "T_KEY_ID"},
                "secretAccessKey": {"env": "T_SECRET"},
            }
    spec["kubernetes"] = {"namespace": draw(label), "release": draw(label)}
    return spec


def test_every_valid_spec_renders_valid_objects(credentials_in_env):
    """The property, then a check that it really ran its examples (not all filtered away) and
    drew both engines."""
    COUNTER.update(examples=0, seldon=0, kserve=0)
    renders_valid_objects()
    assert COUNTER["examples"] >= EXAMPLES // 2, COUNTER
    assert COUNTER["seldon"] and COUNTER["kserve"], COUNTER


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=specs(), train_job=st.booleans())
def renders_valid_objects(raw, train_job):
    spec = Spec.model_validate({**raw, "model": str(MODEL_PACKAGE)})
    values = build_values(
        spec, resolve_secrets(spec), model_sha256="ab" * 32, training_hash="cd" * 32, train_job=train_job
    )
    with private_values_file(values) as file:  # what users get: mlctl's own YAML dump
        objects = template(values_files=[file], release=spec.kubernetes.release)
    validate_all(objects)

    kinds = [o["kind"] for o in objects]
    kserve = spec.serving.engine == "kserve"
    assert (kinds.count("SeldonDeployment"), kinds.count("InferenceService")) == ((0, 1) if kserve else (1, 0))
    assert ("Job" in kinds) == train_job
    secrets = {o["type"]: o for o in find(objects, "Secret")}
    if spec.registry.creates_secret:
        config = json.loads(base64.b64decode(secrets["kubernetes.io/dockerconfigjson"]["data"][".dockerconfigjson"]))
        auth = config["auths"]["registry.example.com"]
        assert base64.b64decode(auth["auth"]).decode() == f"{spec.registry.username}:{ENV['T_REG_PW']}"
    else:
        assert "kubernetes.io/dockerconfigjson" not in secrets
    if not spec.model_store.is_pvc and not spec.storage.existing_secret:
        data = {k: base64.b64decode(v).decode() for k, v in secrets["Opaque"]["data"].items()}
        remote = spec.model_store.scheme.upper()
        assert data[f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID"] == ENV["T_KEY_ID"]
        assert data[f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY"] == ENV["T_SECRET"]
        if kserve:  # the keys KServe's storage initializer reads
            assert (data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"]) == (ENV["T_KEY_ID"], ENV["T_SECRET"])
    else:
        assert "Opaque" not in secrets
    COUNTER["examples"] += 1
    COUNTER[spec.serving.engine] += 1


COUNTER = {"examples": 0, "seldon": 0, "kserve": 0}


@pytest.fixture(scope="module")
def credentials_in_env():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        yield


@pytest.mark.parametrize("major", ["helm4", "helm3"])
def test_helm_lint_strict_passes_on_rendered_values(major, tmp_path, credentials_in_env, mlctl, shipped_copy):
    """`mlctl render` output for the shipped spec lints clean with `helm lint --strict`."""
    from tests.chart.helpers import CHART, helm_binaries, run_helm

    binary = helm_binaries().get(major)
    if binary is None:
        pytest.skip(f"{major} not found (scripts/fetch-tools.sh)")
    values = tmp_path / "values.yaml"
    env = {"REGISTRY_PASSWORD": "x", "MLCTL_S3_ACCESS_KEY_ID": "y", "MLCTL_S3_SECRET_ACCESS_KEY": "z"}
    p = mlctl("render", shipped_copy, "--include-secrets", "-o", str(values), env=env)
    assert p.returncode == 0, p.stderr
    out = run_helm(binary, "lint", "--strict", str(CHART), values_files=[values])
    assert "0 chart(s) failed" in out
