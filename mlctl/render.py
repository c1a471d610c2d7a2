"""Spec → Helm values for charts/mnist-seldon, checked against the chart's contract (mlctl/values.py).

`build_values` is pure: the same spec, secrets and model digest give the same values. Secret
values appear only when the caller passes them; `mlctl render` leaves them out unless asked.
Writing values to files is mlctl/valuesfile.py; what the chart renders from them, mlctl/chart.py.
"""

from __future__ import annotations

import base64
from typing import Any

from mlctl.artifacts import store_uri
from mlctl.artifacts import training_hash as spec_training_hash
from mlctl.contract import Contract, TensorInput
from mlctl.errors import MlctlError, UsageError
from mlctl.images import ImageRef
from mlctl.images import parse as parse_image
from mlctl.images import resolve as resolve_images
from mlctl.secrets import Secrets
from mlctl.spec import KubernetesRunner, Resources, Spec, TrainingSpec
from mlctl.specload import load_contract


def fullname(spec: Spec) -> str:
    """The chart's `fullname` mlctl sets (fullnameOverride): objects are named after the release
    (`mnist`), not `<release>-mnist-seldon`. At most 53 characters (the spec's bound), so the
    chart's 63-character cut never applies."""
    return spec.kubernetes.release


def hyperparameter_args(training: TrainingSpec) -> list[str]:
    """The training command's flags that set the hyper-parameters (shared by both runners)."""
    args = [
        "--epochs", str(training.epochs),
        "--batch-size", str(training.batch_size),
        "--lr", repr(training.learning_rate),
        "--label-smoothing", repr(training.label_smoothing),
        "--weight-decay", repr(training.weight_decay),
        "--seed", str(training.seed),
        "--device", training.device,
    ]  # fmt: skip
    if training.limit_train:
        args += ["--limit-train", str(training.limit_train)]
    if training.limit_test:
        args += ["--limit-test", str(training.limit_test)]
    return args


def _resources(resources: Resources) -> dict[str, Any]:
    return {k: dict(v) for k, v in (("requests", resources.requests), ("limits", resources.limits)) if v}


def _pvc(uri: str | None) -> tuple[str, str]:
    """`pvc://claim/sub/path` → ("claim", "sub/path"); anything else → ("", "")."""
    if not uri or not uri.startswith("pvc://"):
        return "", ""
    claim, _, sub = uri.removeprefix("pvc://").partition("/")
    return claim, sub


def _image(ref: ImageRef, pull_policy: str) -> dict[str, str]:
    return {"repository": ref.repository, "tag": ref.tag, "pullPolicy": pull_policy, "digest": ref.digest}


def _third_party(image: str, pull_policy: str = "IfNotPresent") -> dict[str, str]:
    repository, tag, digest = parse_image(image)
    return {"repository": repository, "tag": tag or "latest", "pullPolicy": pull_policy, "digest": digest}


def build_values(
    spec: Spec,
    secrets: Secrets | None = None,
    model_sha256: str = "",
    training_hash: str = "",
    train_job: bool = False,
) -> dict[str, Any]:
    """The chart values for `spec`. With `train_job` the training Job is enabled too. The model
    is the one of the spec's training hash: model.uri names its own folder in the store."""
    serving, training, store, k = spec.serving, spec.training, spec.model_store, spec.kubernetes
    digest = training_hash or spec_training_hash(spec)
    secrets = secrets or Secrets()
    images = resolve_images(spec)
    contract = load_contract(spec.model)
    runner = training.runner if isinstance(training.runner, KubernetesRunner) else KubernetesRunner(kind="kubernetes")
    data_claim, data_path = _pvc(spec.data.cluster_uri if spec.data else None)
    job_args = [
        *hyperparameter_args(training), "--no-progress",
        "--training-hash", digest,
    ]  # fmt: skip
    return chart_values(
        {
            "fullnameOverride": fullname(spec),
            "model": {"name": spec.name, "uri": store_uri(spec, digest), "sha256": model_sha256},
            "serviceAccount": {
                "create": k.service_account.create,
                "name": k.service_account.name or "",
                "annotations": dict(k.service_account.annotations),
            },
            "serving": {
                "engine": serving.engine,
                "image": _image(images["serving"], serving.image_pull_policy),
                "replicas": serving.replicas,
                "workers": serving.workers,
                "threads": serving.threads,
                "torchThreads": serving.torch_threads,
                "precision": serving.precision,
                "restTimeoutMs": serving.rest_timeout_ms,
                "grpc": serving.grpc_enabled,
                "executor": {"enabled": serving.executor},
                "kserve": {
                    "deploymentMode": serving.kserve.deployment_mode,
                    "storageInitializer": {"image": _third_party(serving.kserve.storage_initializer_image)},
                },
                "resources": _resources(serving.resources),
                "autoscaling": {
                    "enabled": serving.autoscaling.enabled,
                    "minReplicas": serving.autoscaling.min_replicas,
                    "maxReplicas": serving.autoscaling.max_replicas,
                    "targetCPUUtilizationPercentage": serving.autoscaling.target_cpu_utilization,
                },
                "probes": {
                    name: probe.model_dump(by_alias=True)
                    for name, probe in (("readiness", serving.probes.readiness), ("liveness", serving.probes.liveness))
                },
            },
            "networkPolicy": {"enabled": k.network_policy},
            "registry": {
                "existingSecret": spec.registry.existing_secret or "",
                "server": spec.registry.server or "",
                "username": spec.registry.username or "",
                "password": secrets.registry_password or "",
            },
            "storage": {
                "existingSecret": spec.storage.existing_secret or "",
                "remote": store.scheme,
                "config": dict(spec.storage.rclone),
                "credentials": {
                    "access_key_id": secrets.storage_access_key_id or "",
                    "secret_access_key": secrets.storage_secret_access_key or "",
                },
                "initializer": {"image": _third_party(spec.storage.initializer_image)},
            },
            "training": {
                "enabled": train_job,
                "image": _image(images["training"], serving.image_pull_policy),
                "command": list(contract.training.command),
                "args": job_args,
                "data": {
                    "claimName": data_claim,
                    "subPath": data_path,
                    "mirrors": list(spec.data.mirrors) if spec.data else [],
                },
                "resources": _resources(runner.resources),
                "gpus": runner.gpus,
                "activeDeadlineSeconds": runner.timeout_seconds,
            },
            "tests": {
                "enabled": True,
                "image": _third_party(k.test_image),
                **examples_values(contract),
            },
        }
    )


EXAMPLES_MAX_BYTES = 512 * 1024
"""The examples' bytes the test ConfigMap may carry (a ConfigMap holds at most 1 MiB)."""


def examples_values(contract: Contract) -> dict[str, Any]:
    """The model contract's examples and output as the `helm test` pod reads them."""
    total = sum(e.input.stat().st_size for e in contract.examples)
    if total > EXAMPLES_MAX_BYTES:
        raise UsageError(
            f"the model's examples hold {total} bytes; the helm test ConfigMap carries at most {EXAMPLES_MAX_BYTES}",
            hint="keep examples small: a few inputs of a few KB each",
        )
    examples = []
    for example in contract.examples:
        declared = contract.input_for(example.input)
        assert declared is not None  # the contract checks every example has one
        examples.append(
            {
                "file": example.input.name,
                "content": base64.b64encode(example.input.read_bytes()).decode(),
                "input": declared.name,
                "kind": example.kind,
                "datatype": declared.datatype[0] if isinstance(declared, TensorInput) else "",
                "itemRank": declared.item_rank if isinstance(declared, TensorInput) else 0,
                "expect": example.expect or "",
                "status": example.status or 0,
            }
        )
    return {"output": {"name": contract.output.name, "labels": list(contract.output.labels)}, "examples": examples}


def chart_values(values: dict[str, Any]) -> dict[str, Any]:
    """`values`, checked against the chart's contract (mlctl/values.py) before anything is written.

    The spec's rules are the chart's or stricter, so a failure here is a mismatch between the
    two, reported by key rather than left to helm.
    """
    from pydantic import ValidationError

    from mlctl.values import checked

    try:
        return checked(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MlctlError(
            f"the chart values mlctl built do not fit the chart's contract: {problems}",
            hint="this is a bug in mlctl: please report it with the spec",
        ) from exc
