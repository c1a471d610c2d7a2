"""`mlctl apply --target kubernetes`, `mlctl status` and `mlctl delete`: functions that return data.

deploy = upload the artifact → `helm upgrade --install --atomic --wait` with a 0600 values file →
wait for the SeldonDeployment to be Available → post the chart's sample digit and demand the
right class. Each failure names its step. Credentials are compared in memory only: plans, diffs,
results and errors show `***` where a credential would be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl import check, helm, kubectl, poll, predict, render, store, tools
from mlctl.artifacts import Artifact
from mlctl.errors import MlctlError, SmokeTestFailed
from mlctl.result import Result
from mlctl.secrets import Secrets, resolve_secrets
from mlctl.spec import Spec

PREDICTOR = "default"
# The predictor Service's REST port: the model's own 9000 with seldon.io/no-engine, the
# executor's 8000 with it (the chart's mnist-seldon.servicePort; tests hold the two together).
MODEL_PORT, EXECUTOR_PORT = 9000, 8000
# Values that carry credentials; a path ending in ".*" covers everything under it.
SECRET_PATHS = ("registry.password", "storage.credentials.*")
VALUES_PLACEHOLDER = "values.yaml"
POLL_SECONDS = 5.0


def target(spec: Spec) -> helm.Target:
    return helm.Target.for_spec(spec)


def sdep_name(spec: Spec) -> str:
    """The SeldonDeployment's name: the chart's fullname, which mlctl's values set (render.fullname)."""
    return render.fullname(spec)


def predictor_service(spec: Spec) -> str:
    return f"{sdep_name(spec)}-{PREDICTOR}"


def service_port(spec: Spec) -> int:
    return EXECUTOR_PORT if spec.serving.executor else MODEL_PORT


def deploy_values(spec: Spec, artifact: Artifact, secrets: Secrets) -> dict[str, Any]:
    """What `mlctl render` writes for this spec and model, so CI and mlctl install the same values."""
    return render.build_values(spec, secrets, model_sha256=artifact.sha256)


# --- values comparison, credentials hidden ---------------------------------------------------


def _is_secret(path: str) -> bool:
    return any(path == p or (p.endswith(".*") and path.startswith(p[:-1])) for p in SECRET_PATHS)


def _leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict) and values:
        out: dict[str, Any] = {}
        for k, v in values.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): values}


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """A copy with every credential replaced by `***` (empty ones stay empty)."""

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{prefix}{k}.") for k, v in node.items()}
        return tools.MASK if node and _is_secret(prefix.rstrip(".")) else node

    return walk(values, "")


def values_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """[{path, old, new}] for every leaf that differs; credentials compared, but shown as `***`."""
    before, after = _leaves(old or {}), _leaves(new)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if _is_secret(path):
            a, b = (tools.MASK if a else a), (tools.MASK if b else b)
        changes.append({"path": path, "old": a, "new": b})
    return changes


# --- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployPlan(Result):
    release: str
    namespace: str
    context: str | None
    argv: list[str]
    """The exact helm command (the values file is a 0600 temporary file at run time)."""
    exists: bool
    helm_status: str | None
    revision: int | None
    changes: list[dict[str, Any]]
    up_to_date: bool
    values: dict[str, Any] = field(repr=False)
    """The values mlctl installs, credentials shown as ***."""


def plan(spec: Spec, artifact: Artifact, secrets: Secrets | None = None) -> DeployPlan:
    """What deploy would do; read-only (`helm status`, `helm get values`)."""
    secrets = resolve_secrets(spec) if secrets is None else secrets
    t = target(spec)
    k = spec.kubernetes
    values = deploy_values(spec, artifact, secrets)
    argv = ["helm", *helm.upgrade_argv(t, [Path(VALUES_PLACEHOLDER)], k.timeout_seconds, k.create_namespace)]
    try:
        status = helm.status(t)
        deployed = helm.get_values(t) if status is not None else None
    except MlctlError as exc:
        raise exc.prefixed("reading the release failed") from exc
    helm_status = (status or {}).get("info", {}).get("status")
    changes = values_diff(deployed, values)
    return DeployPlan(
        release=k.release,
        namespace=k.namespace,
        context=k.context,
        argv=tools.masked(argv, secrets.values()),
        exists=status is not None,
        helm_status=helm_status,
        revision=(status or {}).get("version"),
        changes=changes,
        up_to_date=status is not None and helm_status == "deployed" and not changes,
        values=redact(values),
    )


# --- deploy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployResult(Result):
    release: str
    namespace: str
    upgraded: bool
    revision: int | None
    upload: dict[str, Any]
    state: str
    smoke: dict[str, Any]
    seconds: float


def deploy(spec: Spec, artifact: Artifact, plan: DeployPlan, secrets: Secrets | None = None) -> DeployResult:
    """Upload, install or upgrade, wait for Available, smoke test. An up-to-date plan skips the
    upload and the upgrade but still checks the deployment and its answer."""
    started = time.monotonic()
    secrets = resolve_secrets(spec) if secrets is None else secrets
    t = target(spec)
    k = spec.kubernetes
    uploaded: dict[str, Any] = {}
    revision = plan.revision
    if not plan.up_to_date:
        uploaded = store.ensure_uploaded(spec, artifact, secrets).as_dict()
        values = deploy_values(spec, artifact, secrets)
        try:
            with render.private_values_file(values) as file:
                helm.upgrade(t, [file], k.timeout_seconds, k.create_namespace, secrets=secrets.values())
        except MlctlError as exc:
            raise MlctlError(
                f"helm upgrade failed: {exc.message}",
                hint=exc.hint or f"--atomic rolled the release back; see `helm history {k.release} -n {k.namespace}`",
            ) from exc
        status = helm.status(t) or {}
        revision = status.get("version")
    state = wait_available(spec)
    smoke = smoke_test(spec, artifact.sha256)
    return DeployResult(
        k.release,
        k.namespace,
        upgraded=not plan.up_to_date,
        revision=revision,
        upload=uploaded,
        state=state,
        smoke=smoke,
        seconds=round(time.monotonic() - started, 2),
    )


def _sdep_state(sdep: dict | None) -> tuple[str, str]:
    status = (sdep or {}).get("status") or {}
    return status.get("state") or ("absent" if sdep is None else "Unknown"), status.get("description") or ""


def wait_available(spec: Spec, timeout_s: float | None = None) -> str:
    """Wait for the SeldonDeployment's `status.state` to be Available: `kubectl wait` watches for
    it in rounds of POLL_SECONDS, and between rounds the object is read, so that a Failed state
    ends the wait at once (kubectl wait knows only one wanted value) and a kubectl whose wait
    fails for any reason still sees Available. MlctlError on Failed or timeout."""
    t, name = target(spec), sdep_name(spec)
    timeout_s = spec.kubernetes.timeout_seconds if timeout_s is None else timeout_s
    last = ("absent", "")

    def available() -> str | None:
        nonlocal last
        if kubectl.wait_for(t, f"sdep/{name}", "{.status.state}", "Available", timeout_s=int(POLL_SECONDS)):
            return "Available"
        last = _sdep_state(kubectl.get_json(t, "sdep", name))
        state, description = last
        if state == "Failed":
            raise MlctlError(
                f"rollout failed: SeldonDeployment {name} is Failed: {description or 'no description'}",
                hint=f"kubectl describe sdep/{name} -n {t.namespace}",
            )
        return state if state == "Available" else None

    def timed_out() -> str:
        state, description = last
        raise MlctlError(
            f"rollout timed out: SeldonDeployment {name} is {state} after {timeout_s:.0f}s"
            + (f": {description}" if description else ""),
            hint=f"kubectl get pods -n {t.namespace} -l seldon-deployment-id={name}",
        )

    return poll.until(available, deadline=poll.deadline_in(timeout_s), every_s=POLL_SECONDS, on_timeout=timed_out)


# --- smoke test ------------------------------------------------------------------------------


def smoke_test(spec: Spec, expected_sha256: str | None = None) -> dict[str, Any]:
    """Post the chart's sample digit through the ingress endpoint, or a port-forward to the
    predictor Service; the answer's argmax must be the digit's label."""
    k = spec.kubernetes
    if k.endpoint:
        return check.check_sample(
            k.endpoint, f"/seldon/{k.namespace}/{sdep_name(spec)}{predict.DEFAULT_ENDPOINT}", expected_sha256
        )
    try:
        with kubectl.port_forward(target(spec), predictor_service(spec), service_port(spec)) as port:
            result = check.check_sample(f"http://127.0.0.1:{port}", expected_sha256=expected_sha256)
    except SmokeTestFailed:
        raise
    except MlctlError as exc:  # the port-forward itself
        raise exc.prefixed("smoke test") from exc
    result["via"] = f"port-forward svc/{predictor_service(spec)}:{service_port(spec)}"
    return result


# --- revisions and rollback ------------------------------------------------------------------


def revisions(spec: Spec) -> list[dict[str, Any]]:
    """Every revision of the release and the model its values name (newest last)."""
    t = target(spec)
    out = []
    for entry in helm.history(t):
        model = (helm.get_values(t, revision=int(entry["revision"])) or {}).get("model") or {}
        out.append(
            {
                "revision": int(entry["revision"]),
                "status": entry.get("status"),
                "updated": entry.get("updated"),
                "modelUri": model.get("uri"),
                "modelSha256": model.get("sha256"),
            }
        )
    return out


def rollback(spec: Spec, revision: int | None = None) -> dict[str, Any]:
    """`helm rollback` to `revision` (default: the one before the current), then wait for the
    SeldonDeployment and demand the sample digit from that revision's weights."""
    old = helm.pick_revision(revisions(spec), revision, f"release {spec.kubernetes.release}")
    wanted = old["revision"]
    t = target(spec)
    try:
        helm.rollback(t, wanted, spec.kubernetes.timeout_seconds)
    except MlctlError as exc:
        raise exc.prefixed("helm rollback failed") from exc
    state = wait_available(spec)
    smoke = smoke_test(spec, old["modelSha256"] or None)
    return {
        "release": t.release,
        "namespace": t.namespace,
        "to": wanted,
        "modelUri": old["modelUri"],
        "modelSha256": old["modelSha256"],
        "state": state,
        "smoke": smoke,
        "revision": (helm.status(t) or {}).get("version"),
    }


# --- status and delete -----------------------------------------------------------------------


def status(spec: Spec) -> dict[str, Any]:
    """The release and its SeldonDeployment as the cluster reports them."""
    from mlctl.artifacts import artifact_dir, read_local

    t, name = target(spec), sdep_name(spec)
    local = read_local(artifact_dir(spec), verify=False)
    out: dict[str, Any] = {"release": t.release, "namespace": t.namespace, "exists": False}
    release = helm.status(t)
    if release is None:
        return out
    values = helm.get_values(t) or {}
    sdep = kubectl.get_json(t, "sdep", name)
    state, description = _sdep_state(sdep)
    deployments = ((sdep or {}).get("status") or {}).get("deploymentStatus") or {}
    out.update({
        "exists": True,
        "revision": release.get("version"),
        "helmStatus": (release.get("info") or {}).get("status"),
        "chart": ((release.get("chart") or {}).get("metadata") or {}).get("version"),
        "seldonDeployment": name,
        "state": state,
        "description": description,
        "replicas": ((sdep or {}).get("status") or {}).get("replicas"),
        "availableReplicas": sum(int(d.get("availableReplicas") or 0) for d in deployments.values()),
        "modelUri": (values.get("model") or {}).get("uri"),
        "modelSha256": (values.get("model") or {}).get("sha256"),
        # The model this spec trains here, beside the one deployed: equal when the release is current.
        "localSha256": local.sha256 if local else None,
    })  # fmt: skip
    return out


def delete(spec: Spec) -> dict[str, Any]:
    """`helm uninstall` the release and delete its training Jobs; never touches local artifacts or
    the model store."""
    t = target(spec)
    out: dict[str, Any] = {"release": t.release, "namespace": t.namespace, "uninstalled": False, "jobsDeleted": []}
    if helm.status(t) is not None:
        try:
            helm.uninstall(t, spec.kubernetes.timeout_seconds)
        except MlctlError as exc:
            raise exc.prefixed("helm uninstall failed") from exc
        out["uninstalled"] = True
    # Training Jobs are applied by kubectl (mlctl train), not owned by the release.
    selector = f"app.kubernetes.io/instance={t.release},app.kubernetes.io/component=training"
    for job in kubectl.list_names(t, "job", selector):
        if kubectl.delete(t, "job", job, wait=False):
            out["jobsDeleted"].append(job)
    return out
