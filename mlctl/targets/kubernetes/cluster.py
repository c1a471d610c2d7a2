"""A release that stands in the cluster: `mlctl status`, its revisions, `mlctl rollback` and
`mlctl delete` for the kubernetes target. Everything here needs only the release's `Names`."""

from __future__ import annotations

from typing import Any

from mlctl import helm, kubectl
from mlctl.errors import MlctlError
from mlctl.release import Names
from mlctl.spec import Spec
from mlctl.targets.kubernetes import deploy


def revisions(spec: Spec) -> list[dict[str, Any]]:
    """Every revision of the release and the model its values name (newest last)."""
    t = Names.for_spec(spec).target
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
    SeldonDeployment (or InferenceService) and demand the model's examples' answers from that revision's weights."""
    old = helm.pick_revision(revisions(spec), revision, f"release {spec.kubernetes.release}")
    wanted = old["revision"]
    names = Names.for_spec(spec)
    t = names.target
    try:
        helm.rollback(t, wanted, spec.kubernetes.timeout_seconds)
    except MlctlError as exc:
        raise exc.prefixed("helm rollback failed") from exc
    state = deploy.wait_available(names, spec.kubernetes.timeout_seconds)
    smoke = deploy.smoke_test(spec, names, old["modelSha256"] or None)
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
    """The release and its SeldonDeployment (or InferenceService) as the cluster reports them."""
    from mlctl.artifacts import artifact_dir, read_local

    names = Names.for_spec(spec)
    t, name = names.target, names.served
    local = read_local(artifact_dir(spec), verify=False)
    out: dict[str, Any] = {"release": t.release, "namespace": t.namespace, "exists": False}
    release = helm.status(t)
    if release is None:
        return out
    values = helm.get_values(t) or {}
    kind, _ = names.resource.split("/", 1)
    served = kubectl.get_json(t, kind, name)
    state, description = (deploy.isvc_state if names.engine == "kserve" else deploy.sdep_state)(served)
    served_status = (served or {}).get("status") or {}
    if names.engine == "kserve":  # KServe's status has no replica counts; its URL instead
        replicas = available = None
        out["url"] = served_status.get("url")
    else:
        deployments = served_status.get("deploymentStatus") or {}
        replicas = served_status.get("replicas")
        available = sum(int(d.get("availableReplicas") or 0) for d in deployments.values())
    out.update({
        "exists": True,
        "revision": release.get("version"),
        "helmStatus": (release.get("info") or {}).get("status"),
        "chart": ((release.get("chart") or {}).get("metadata") or {}).get("version"),
        "engine": names.engine,
        ("inferenceService" if names.engine == "kserve" else "seldonDeployment"): name,
        "state": state,
        "description": description,
        "replicas": replicas,
        "availableReplicas": available,
        "modelUri": (values.get("model") or {}).get("uri"),
        "modelSha256": (values.get("model") or {}).get("sha256"),
        # The model this spec trains here, beside the one deployed: equal when the release is current.
        "localSha256": local.sha256 if local else None,
    })  # fmt: skip
    return out


def delete(spec: Spec) -> dict[str, Any]:
    """`helm uninstall` the release and delete its training Jobs; never touches local artifacts or
    the model store."""
    t = Names.for_spec(spec).target
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
