"""The Kubernetes training runner: the real chart renders the Job (validated against the
Kubernetes schemas); stand-in kubectl plays the cluster (apply, poll, logs, failure, reuse)."""

from __future__ import annotations

import json

import pytest
import yaml

from mlctl.artifacts import metadata_from_log, training_hash
from mlctl.errors import MlctlError
from mlctl.secrets import resolve_secrets
from mlctl.targets.kubernetes import train as train_k8s
from tests.chart.helpers import validate_all
from tests.k8s.conftest import SECRETS
from tests.k8s.fakes import not_found


def job(*conditions: dict) -> dict:
    return {"json": {"kind": "Job", "status": {"conditions": list(conditions)}}}


COMPLETE = {"type": "Complete", "status": "True"}
FAILED = {
    "type": "Failed",
    "status": "True",
    "reason": "BackoffLimitExceeded",
    "message": "Job has reached the specified backoff limit",
}


@pytest.fixture
def helm_real(fakes):
    fakes.on("helm", ["template"], {"passthrough": True})
    if not __import__("os").environ.get("FAKE_REAL_HELM"):
        pytest.skip("no real helm (scripts/fetch-tools.sh) to render the Job with")
    return fakes


def metadata(spec) -> dict:
    return {
        "sha256": "ef" * 32,
        "test_accuracy": 0.9712,
        "test_loss": 0.1,
        "epochs": 1,
        "training_hash": training_hash(spec),
    }


def log_of(spec) -> str:
    return "epoch 1/1  step 8/8  loss 0.4000  650 img/s\n" + json.dumps(metadata(spec)) + "\n"


def test_rendered_job_and_secrets_are_valid_and_adoptable(helm_real, spec, secret_env):
    objects = train_k8s.render_job(spec, resolve_secrets(spec), training_hash(spec))
    assert [o["kind"] for o in objects] == ["Secret", "Secret", "Job"]
    validate_all(objects)
    for secret in objects[:2]:
        assert secret["metadata"]["annotations"] == {
            "meta.helm.sh/release-name": "mnist",
            "meta.helm.sh/release-namespace": "models",
        }
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    job_obj = objects[2]
    assert job_obj["metadata"]["name"].startswith("mnist-train-")
    args = job_obj["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[args.index("--training-hash") + 1] == training_hash(spec) and "--no-progress" in args
    # The template call itself carried no secret: values went in a file.
    template = helm_real.calls("helm")[0]
    assert "--show-only" in template["argv"] and not any(v in json.dumps(template) for v in SECRETS.values())


def test_job_name_follows_the_training_hash(helm_real, spec, secret_env):
    secrets = resolve_secrets(spec)
    a = train_k8s.render_job(spec, secrets, "a" * 64)[-1]["metadata"]["name"]
    b = train_k8s.render_job(spec, secrets, "b" * 64)[-1]["metadata"]["name"]
    assert a != b and a == train_k8s.render_job(spec, secrets, "a" * 64)[-1]["metadata"]["name"]


def test_train_applies_polls_and_reads_metadata(helm_real, spec, secret_env, clock, private_tmp):
    helm_real.on("kubectl", ["get", "job"], not_found("jobs.batch", "x"), job(), job(), job(COMPLETE))
    helm_real.on("kubectl", ["apply"], {"stdout": "job.batch/x created\n"})
    helm_real.on("kubectl", ["logs"], {"stdout": log_of(spec)})

    result = train_k8s.train(spec)
    assert result.trained and result.training_hash == training_hash(spec)
    assert result.artifact.uri == f"s3://mlctl-models/mnist/mnist-{training_hash(spec)[:12]}"  # its own folder
    assert result.artifact.sha256 == "ef" * 32 and result.artifact.test_accuracy == 0.9712
    assert result.as_dict()["artifact"] == result.artifact.uri

    calls = helm_real.calls("kubectl")
    assert [c["argv"][0] for c in calls] == ["get", "apply", "get", "get", "get", "logs"]
    job_name = calls[0]["argv"][2]
    apply = calls[1]
    ((manifest, info),) = apply["files"].items()
    assert info["exists"] and info["mode"] == "0o600" and info["kinds"] == ["Secret", "Secret", "Job"]
    assert info["has_secret"]  # the storage Secret's data went through the file …
    assert list(private_tmp.iterdir()) == []  # … which is gone
    assert apply["argv"][-4:] == ["--namespace", "models", "--context", "kind-ci"]
    assert calls[-1]["argv"][:4] == ["logs", f"job/{job_name}", "--container", "train"]
    assert clock.sleeps == [train_k8s.POLL_SECONDS] * 2


def test_completed_job_for_the_same_hash_is_reused(helm_real, spec, secret_env, clock):
    helm_real.on("kubectl", ["get", "job"], job(COMPLETE))
    helm_real.on("kubectl", ["logs"], {"stdout": log_of(spec)})
    result = train_k8s.train(spec)
    assert not result.trained and result.artifact.sha256 == "ef" * 32
    assert helm_real.verbs("kubectl") == ["get", "logs"]


def test_force_replaces_a_completed_job(helm_real, spec, secret_env, clock):
    helm_real.on("kubectl", ["get", "job"], job(COMPLETE), job(COMPLETE))
    helm_real.on("kubectl", ["delete"], {"stdout": "deleted\n"})
    helm_real.on("kubectl", ["apply"], {"stdout": "created\n"})
    helm_real.on("kubectl", ["logs"], {"stdout": log_of(spec)})
    result = train_k8s.train(spec, force=True)
    assert result.trained
    assert helm_real.verbs("kubectl") == ["get", "delete", "apply", "get", "logs"]
    assert "--cascade=foreground" in helm_real.calls("kubectl")[1]["argv"]


def test_failed_job_names_the_job_reason_and_log_tail(helm_real, spec, secret_env, clock):
    helm_real.on("kubectl", ["get", "job"], not_found("jobs.batch", "x"), job(), job(FAILED))
    helm_real.on("kubectl", ["apply"], {"stdout": "created\n"})
    helm_real.on("kubectl", ["logs"], {"stdout": "loading data\npython -m model.train: error: CUDA out of memory\n"})
    with pytest.raises(MlctlError) as err:
        train_k8s.train(spec)
    message = err.value.message
    job_name = helm_real.calls("kubectl")[0]["argv"][2]
    assert message.startswith(f"training Job {job_name} failed (BackoffLimitExceeded: Job has reached")
    assert message.endswith("python -m model.train: error: CUDA out of memory")
    assert err.value.exit_code == 1
    assert "--tail=20" in helm_real.calls("kubectl")[-1]["argv"]


def test_job_that_outlives_its_deadline(helm_real, tmp_path, secret_env, clock):
    from mlctl.specload import load_spec
    from tests.k8s.conftest import write_spec

    spec = load_spec(write_spec(tmp_path, runner="{kind: kubernetes, timeoutSeconds: 60}"))
    helm_real.on("kubectl", ["get", "job"], not_found("jobs.batch", "x"), job())
    helm_real.on("kubectl", ["apply"], {"stdout": "created\n"})
    helm_real.on(
        "kubectl",
        ["logs"],
        {"rc": 1, "stderr": "Error from server (BadRequest): pod is waiting to start: ImagePullBackOff\n"},
    )
    with pytest.raises(MlctlError) as err:
        train_k8s.train(spec)
    limit = spec.training.runner.timeout_seconds + train_k8s.DEADLINE_MARGIN_S
    assert f"did not finish within {limit}s" in err.value.message and "ImagePullBackOff" in err.value.message


def test_completed_job_without_a_metadata_line(helm_real, spec, secret_env, clock):
    helm_real.on("kubectl", ["get", "job"], job(COMPLETE))
    helm_real.on("kubectl", ["logs"], {"stdout": "epoch 1/1\n"})
    with pytest.raises(MlctlError, match="has no metadata line"):
        train_k8s.train(spec)


@pytest.mark.parametrize("text, expected", [
    ('a\n{"sha256": "x", "test_accuracy": 1}\n', {"sha256": "x", "test_accuracy": 1}),
    ('{"sha256": "old"}\nwarning\n{"sha256": "new"}\n', {"sha256": "new"}),
    ('{"not": "metadata"}\n{broken\n', None),
    ("", None),
])  # fmt: skip
def test_metadata_from_log(text, expected):
    assert metadata_from_log(text) == expected


def test_pvc_spec_renders_without_the_storage_secret(helm_real, tmp_path, secret_env):
    from mlctl.specload import load_spec
    from tests.k8s.conftest import write_spec

    spec = load_spec(write_spec(tmp_path, runner="{kind: kubernetes}", uri="pvc://models/mnist"))
    objects = train_k8s.render_job(spec, resolve_secrets(spec), training_hash(spec))
    assert [o["kind"] for o in objects] == ["Secret", "Job"]  # the pull Secret only
    assert objects[0]["type"] == "kubernetes.io/dockerconfigjson"
    validate_all(objects)
    volumes = {v["name"]: v for v in objects[1]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == "models"
    assert yaml.safe_dump(objects)  # plain data, ready for kubectl


def test_job_log_lines_are_followed_once_each(fakes, spec, secret_env, clock):
    """With a listener, each poll passes on only the log lines printed since the last one."""
    if not __import__("os").environ.get("FAKE_REAL_HELM"):
        pytest.skip("no real helm to render the Job with")
    meta = {"sha256": "ef" * 32, "test_accuracy": 0.99, "training_hash": training_hash(spec)}
    running = {"json": {"status": {"active": 1}}}
    done = {"json": {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}}
    fakes.on("helm", ["template"], {"passthrough": True})
    fakes.on(
        "kubectl",
        ["get", "job"],
        {"rc": 1, "stderr": "Error from server (NotFound): not found\n"},
        running,
        running,
        done,
    )
    fakes.on("kubectl", ["apply"], {"stdout": "created\n"})
    fakes.on(
        "kubectl",
        ["logs"],
        {"stdout": "epoch 1/3\n"},
        {"stdout": "epoch 1/3\nepoch 2/3\n"},
        {"stdout": "epoch 1/3\nepoch 2/3\nepoch 3/3\n" + json.dumps(meta) + "\n"},
    )
    heard: list[str] = []
    result = train_k8s.train(spec, on_line=heard.append)
    assert heard == ["epoch 1/3", "epoch 2/3", "epoch 3/3", json.dumps(meta)]
    assert result.trained and result.artifact.sha256 == meta["sha256"]
