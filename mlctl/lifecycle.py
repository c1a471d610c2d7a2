"""`mlctl status` and `mlctl delete` for either target: plain functions returning dicts."""

from __future__ import annotations

from pathlib import Path

from mlctl.specload import load_spec


def status(path: Path, target: str | None = None) -> dict:
    spec = load_spec(path)
    target = target or spec.target
    if target == "kubernetes":
        from mlctl.targets.kubernetes import cluster

        return {"target": target, **cluster.status(spec)}
    if target == "podman":
        from mlctl.targets.podman import target as podman_target

        return {"target": target, **podman_target.status(spec)}
    from mlctl import artifacts
    from mlctl.targets.local import target as local

    state = local.current(spec)
    artifact = artifacts.read_local(artifacts.artifact_dir(spec), verify=False)
    return {
        "target": target,
        "running": state is not None,
        "url": state.url if state else None,
        "pid": state.pid if state else None,
        "servingSha256": state.sha256 if state else None,
        "artifact": artifact.location if artifact else None,
        "artifactSha256": artifact.sha256 if artifact else None,
        "upToDate": bool(state and artifact and state.sha256 == artifact.sha256),
    }


def delete(path: Path, target: str | None = None) -> dict:
    spec = load_spec(path)
    target = target or spec.target
    if target == "kubernetes":
        from mlctl.targets.kubernetes import cluster

        out = cluster.delete(spec)
        what = "uninstalled" if out["uninstalled"] else "no release to uninstall"
        return {"target": target, **out, "summary": f"{out['namespace']}/{out['release']}: {what}"}
    if target == "podman":
        from mlctl.targets.podman import target as podman_target

        out = podman_target.delete(spec)
        what = f"removed {len(out['removed'])} pod(s)" if out["removed"] else "no pods to remove"
        return {
            "target": target,
            **out,
            "summary": f"{out['namespace']}/{out['release']} under podman: {what}; the model store and claims are kept",
        }
    from mlctl.targets.local import target as local

    state = local.stop(spec)
    summary = f"stopped the local server (pid {state.pid}, {state.url})" if state else "no local server was running"
    return {"target": target, "stopped": state is not None, "summary": summary + "; trained artifacts are kept"}


def models(path: Path, target: str | None = None) -> dict:
    """The spec's models: here (training.output), in the store, and which revision serves which."""
    from mlctl import artifacts

    spec = load_spec(path)
    target = target or spec.target
    current = artifacts.model_name(spec)
    local = []
    for folder in sorted(spec.training.output.glob(f"{spec.name}-*")):
        artifact = artifacts.read_local(folder, verify=False) if folder.is_dir() else None
        if artifact is not None:
            local.append(_model_row(artifact, folder.name == current))
    out: dict = {"target": target, "current": current, "local": local}
    if target == "local":
        from mlctl.targets.local import target as local_target

        state = local_target.current(spec)
        out["serving"] = [{"server": state.url, "modelSha256": state.sha256}] if state else []
        return out
    out["stored"] = _stored(spec, target)
    if target == "kubernetes":
        from mlctl.targets.kubernetes import cluster

        out["revisions"] = cluster.revisions(spec)
    else:
        from mlctl.targets.podman import target as podman_target

        out["revisions"] = [{k: v for k, v in r.items() if k != "values"} for r in podman_target.revisions(spec)]
    return out


def _model_row(artifact, current: bool) -> dict:
    return {
        "name": artifact.name,
        "location": artifact.location,
        "sha256": artifact.sha256,
        "testAccuracy": artifact.test_accuracy,
        "created": artifact.metadata.get("created"),
        "current": current,
    }


def _stored(spec, target: str) -> list[dict] | str:
    """The models in the store, or why they cannot be listed from here."""
    from mlctl import artifacts
    from mlctl.errors import MlctlError
    from mlctl.secrets import resolve_secrets
    from mlctl.targets.kubernetes import store

    current = artifacts.model_name(spec)
    if spec.model_store.is_pvc and target == "podman":  # the claim is a folder on this machine
        from mlctl.targets.podman import target as podman_target

        root = podman_target.state_dir(spec) / "claims" / spec.model_store.bucket / spec.model_store.prefix
        found = [artifacts.read_local(f, verify=False) for f in sorted(root.glob(f"{spec.name}-*")) if f.is_dir()]
        return [{**_model_row(a, a.name == current), "location": spec.model_store.join(a.name)} for a in found if a]
    try:
        return [_model_row(a, a.name == current) for a in store.list_stored(spec, resolve_secrets(spec))]
    except MlctlError as exc:
        return f"not listed: {exc.message.splitlines()[0]}"


def rollback(path: Path, target: str | None = None, revision: int | None = None, report=lambda *a: None) -> dict:
    """Serve an earlier revision again: `helm rollback` on a cluster, its recorded values under podman."""
    spec = load_spec(path)
    target = target or spec.target
    if target == "kubernetes":
        from mlctl.targets.kubernetes import cluster

        return {"target": target, **cluster.rollback(spec, revision)}
    if target == "podman":
        from mlctl.targets.podman import target as podman_target

        return {"target": target, **podman_target.rollback(spec, report, revision)}
    from mlctl.errors import UsageError

    raise UsageError(
        "the local target keeps no revisions: it serves the spec's model",
        hint="roll back the spec (e.g. git checkout) and run mlctl apply",
    )
