"""`mlctl status` and `mlctl delete` for either target: plain functions returning dicts."""

from __future__ import annotations

from pathlib import Path

from mlctl.spec import load_spec


def status(path: Path, target: str | None = None) -> dict:
    spec = load_spec(path)
    target = target or spec.target
    if target == "kubernetes":
        from mlctl import deploy

        return {"target": target, **deploy.status(spec)}
    if target == "podman":
        from mlctl import podman_target

        return {"target": target, **podman_target.status(spec)}
    from mlctl import artifacts, local

    state = local.current(spec)
    artifact = artifacts.read_artifact(artifacts.artifact_dir(spec), verify=False)
    return {
        "target": target,
        "running": state is not None,
        "url": state.url if state else None,
        "pid": state.pid if state else None,
        "servingSha256": state.sha256 if state else None,
        "artifact": str(artifact.path) if artifact else None,
        "artifactSha256": artifact.sha256 if artifact else None,
        "upToDate": bool(state and artifact and state.sha256 == artifact.sha256),
    }


def delete(path: Path, target: str | None = None) -> dict:
    spec = load_spec(path)
    target = target or spec.target
    if target == "kubernetes":
        from mlctl import deploy

        out = deploy.delete(spec)
        what = "uninstalled" if out["uninstalled"] else "no release to uninstall"
        return {"target": target, **out, "summary": f"{out['namespace']}/{out['release']}: {what}"}
    if target == "podman":
        from mlctl import podman_target

        out = podman_target.delete(spec)
        what = f"removed {len(out['removed'])} pod(s)" if out["removed"] else "no pods to remove"
        return {"target": target, **out, "summary": f"{out['namespace']}/{out['release']} under podman: {what}; "
                                                    "the model store and claims are kept"}
    from mlctl import local

    state = local.stop(spec)
    summary = f"stopped the local server (pid {state.pid}, {state.url})" if state else "no local server was running"
    return {"target": target, "stopped": state is not None, "summary": summary + "; trained artifacts are kept"}
