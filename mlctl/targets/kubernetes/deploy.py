"""`mlctl apply --target kubernetes`: plan, then upload, upgrade, wait and check.

deploy = upload the artifact → `helm upgrade --install --atomic --wait` with a 0600 values file →
wait for the SeldonDeployment to be Available (or the InferenceService Ready, engine kserve) →
post the model contract's examples through the engine's own protocol and demand their answers. Each
failure names its step. The values come from the `Release`, built once per apply; credentials
are compared in memory only: plans, diffs, results and errors show `***`. Status, revisions,
rollback and delete of a release that stands are in mlctl/targets/kubernetes/cluster.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl import helm, kubectl, poll, predict, tools, valuesfile
from mlctl.artifacts import Artifact
from mlctl.errors import MlctlError, SmokeTestFailed
from mlctl.release import Names, Release, values_diff
from mlctl.result import Result
from mlctl.spec import Spec
from mlctl.specload import load_contract
from mlctl.targets.kubernetes import store
from mlctl.targets.shared import check

VALUES_PLACEHOLDER = "values.yaml"
POLL_SECONDS = 5.0


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


def plan(release: Release) -> DeployPlan:
    """What deploy would do; read-only (`helm status`, `helm get values`)."""
    t, k, values = release.target, release.spec.kubernetes, release.values
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
        argv=tools.masked(argv, release.secrets.values()),
        exists=status is not None,
        helm_status=helm_status,
        revision=(status or {}).get("version"),
        changes=changes,
        up_to_date=status is not None and helm_status == "deployed" and not changes,
        values=release.redacted(),
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


def deploy(release: Release, artifact: Artifact, plan: DeployPlan) -> DeployResult:
    """Upload, install or upgrade, wait for Available, smoke test. An up-to-date plan skips the
    upload and the upgrade but still checks the deployment and its answer."""
    started = time.monotonic()
    spec, secrets, t = release.spec, release.secrets, release.target
    k = spec.kubernetes
    uploaded: dict[str, Any] = {}
    revision = plan.revision
    if not plan.up_to_date:
        uploaded = store.ensure_uploaded(spec, artifact, secrets).as_dict()
        try:
            with valuesfile.private_values_file(release.values) as file:
                helm.upgrade(t, [file], k.timeout_seconds, k.create_namespace, secrets=secrets.values())
        except MlctlError as exc:
            raise MlctlError(
                f"helm upgrade failed: {exc.message}",
                hint=exc.hint or f"--atomic rolled the release back; see `helm history {k.release} -n {k.namespace}`",
            ) from exc
        status = helm.status(t) or {}
        revision = status.get("version")
    state = wait_available(release.names, k.timeout_seconds)
    smoke = smoke_test(spec, release.names, artifact.sha256)
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


def sdep_state(sdep: dict | None) -> tuple[str, str]:
    status = (sdep or {}).get("status") or {}
    return status.get("state") or ("absent" if sdep is None else "Unknown"), status.get("description") or ""


def isvc_state(isvc: dict | None) -> tuple[str, str]:
    """("Ready" or "NotReady", the Ready condition's reason and message) of an InferenceService;
    KServe has no Failed state, so a NotReady one is waited on until the timeout."""
    if isvc is None:
        return "absent", ""
    conditions = ((isvc.get("status") or {}).get("conditions")) or []
    ready = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)
    if ready is None:
        return "Unknown", ""
    why = ": ".join(str(ready[k]) for k in ("reason", "message") if ready.get(k))
    return ("Ready" if ready.get("status") == "True" else "NotReady"), why


# What "serving" means per engine: the kubectl wait jsonpath and value, how to read the object.
_READY = {
    "seldon": ("{.status.state}", "Available", sdep_state),
    "kserve": ('{.status.conditions[?(@.type=="Ready")].status}', "True", isvc_state),
}


def served_state(names: Names) -> tuple[str, str]:
    """(state, description) of the release's SeldonDeployment or InferenceService."""
    kind, name = names.resource.split("/", 1)
    return _READY[names.engine][2](kubectl.get_json(names.target, kind, name))


def wait_available(names: Names, timeout_s: float) -> str:
    """Wait for the SeldonDeployment's `status.state` to be Available (the InferenceService's
    Ready condition to be True): `kubectl wait` watches for it in rounds of POLL_SECONDS, and
    between rounds the object is read, so that a Failed state ends the wait at once (kubectl wait
    knows only one wanted value) and a kubectl whose wait fails for any reason still sees it.
    MlctlError on Failed or timeout."""
    t, resource = names.target, names.resource
    jsonpath, wanted, _ = _READY[names.engine]
    ready = "Available" if names.engine == "seldon" else "Ready"
    last = ("absent", "")

    def available() -> str | None:
        nonlocal last
        if kubectl.wait_for(t, resource, jsonpath, wanted, timeout_s=int(POLL_SECONDS)):
            return ready
        last = served_state(names)
        state, description = last
        if state == "Failed":
            raise MlctlError(
                f"rollout failed: {names.kind} {names.served} is Failed: {description or 'no description'}",
                hint=f"kubectl describe {resource} -n {t.namespace}",
            )
        return state if state == ready else None

    def timed_out() -> str:
        state, description = last
        selector = (
            f"serving.kserve.io/inferenceservice={names.served}"
            if names.engine == "kserve"
            else f"seldon-deployment-id={names.served}"
        )
        raise MlctlError(
            f"rollout timed out: {names.kind} {names.served} is {state} after {timeout_s:.0f}s"
            + (f": {description}" if description else ""),
            hint=f"kubectl get pods -n {t.namespace} -l {selector}",
        )

    return poll.until(available, deadline=poll.deadline_in(timeout_s), every_s=POLL_SECONDS, on_timeout=timed_out)


# --- smoke test ------------------------------------------------------------------------------


def smoke_test(spec: Spec, names: Names, expected_sha256: str | None = None) -> dict[str, Any]:
    """Post the model contract's examples through the ingress endpoint, or a port-forward to the
    predictor Service, in the engine's protocol; each must be answered as the contract says.
    Seldon's ingress path is /seldon/<namespace>/<name>/…; KServe's endpoint is the
    InferenceService's own URL (its status.url), so the V2 path goes straight under it."""
    k = spec.kubernetes
    protocol = predict.ENGINE_PROTOCOL[names.engine]
    if k.endpoint:
        prefix = f"/seldon/{k.namespace}/{names.served}" if names.engine == "seldon" else ""
        return check.check_examples(
            k.endpoint,
            load_contract(spec.model),
            prefix + predict.endpoint_for(protocol, names.model),
            expected_sha256,
            protocol,
        )
    try:
        with kubectl.port_forward(names.target, names.predictor_service, names.service_port) as port:
            result = check.check_examples(
                f"http://127.0.0.1:{port}",
                load_contract(spec.model),
                expected_sha256=expected_sha256,
                protocol=protocol,
                model=names.model,
            )
    except SmokeTestFailed:
        raise
    except MlctlError as exc:  # the port-forward itself
        raise exc.prefixed("smoke test") from exc
    result["via"] = f"port-forward svc/{names.predictor_service}:{names.service_port}"
    return result
