"""Put a locally trained artifact where the cluster's model server fetches it (`modelStore.uri`).

- `s3://bucket/prefix`: PUT `model.pt`, then `metadata.json` (so a complete metadata file implies
  complete weights), signed with AWS Signature V4 by the standard library alone. Each object
  carries its sha256 as `x-amz-meta-sha256`; a HEAD that already shows the same digest skips the
  file, so a rerun uploads nothing. The endpoint is `$MLCTL_S3_ENDPOINT` or `storage.uploadEndpoint`
  when set (the store as seen from this machine, when `storage.rclone.endpoint` is a
  cluster-internal address), else
  `storage.rclone.endpoint` (path-style requests, as MinIO and most S3-compatible stores want), else
  AWS's regional endpoint (virtual-hosted style).
- `pvc://claim/path`: a short-lived busybox pod mounts the claim; `sha256sum` inside it decides,
  `kubectl cp` copies what differs, and the digest is checked again after the copy. The pod is
  deleted afterwards and carries an activeDeadlineSeconds, so it cannot outlive a crashed mlctl
  for long.
- An artifact trained in the cluster (its path is already the store URI) is left alone.
- Other schemes (gs://, azure://, …): a UsageError saying what is supported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mlctl import helm, kubectl
from mlctl.artifacts import METADATA, Artifact
from mlctl.errors import MlctlError, UsageError
from mlctl.secrets import Secrets
from mlctl.spec import Spec

SUPPORTED = ("s3", "pvc")
ENDPOINT_ENV = "MLCTL_S3_ENDPOINT"
SHA_HEADER = "x-amz-meta-sha256"
# A public image with sh, sha256sum, tar (for kubectl cp) and sleep; the release's own pull Secret
# may not exist yet when the first upload runs.
PVC_HELPER_IMAGE = "busybox:1.36"
PVC_MOUNT = "/store"


@dataclass(frozen=True)
class UploadResult:
    uri: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        return {"uri": self.uri, "uploaded": self.uploaded, "unchanged": self.unchanged, "note": self.note}


def ensure_uploaded(spec: Spec, artifact: Artifact, secrets: Secrets) -> UploadResult:
    """Make sure `artifact` is at `spec.model_store.uri`; uploads only what differs."""
    uri = spec.model_store.uri
    if isinstance(artifact.path, str) and "://" in artifact.path:
        if artifact.path.rstrip("/") != uri.rstrip("/"):
            raise UsageError(f"the artifact lives at {artifact.path}, but modelStore.uri is {uri}")
        return UploadResult(uri, note="trained in the cluster: the Job wrote the artifact to the store")
    files = _local_files(artifact)
    scheme = spec.model_store.scheme
    if scheme == "s3":
        return _upload_s3(spec, files, secrets)
    if scheme == "pvc":
        return _upload_pvc(spec, files)
    raise UsageError(
        f"mlctl cannot upload to {scheme}:// (it uploads to {', '.join(s + '://' for s in SUPPORTED)})",
        hint=f"copy {artifact.path}/ to {uri} yourself, or train with `runner: {{kind: kubernetes}}` "
        "so the Job uploads it with rclone",
    )


def _local_files(artifact: Artifact) -> dict[str, tuple[Path, str]]:
    """{object name: (local file, sha256)}: the weights first, then the metadata."""
    out = {}
    for path in (artifact.weights, Path(artifact.path) / METADATA):
        try:
            out[path.name] = (path, hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError as exc:
            raise MlctlError(f"upload: cannot read {path}: {exc.strerror}") from None
    if out[artifact.weights.name][1] != artifact.sha256:
        raise MlctlError(f"upload: {artifact.weights} does not match its metadata's sha256", hint="retrain with --force")
    return out


# --- S3 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    endpoint: str  # scheme://host[:port]
    bucket: str
    prefix: str
    region: str
    path_style: bool

    def url(self, key: str) -> str:
        quoted = urllib.parse.quote(key, safe="/-_.~")
        if self.path_style:
            return f"{self.endpoint}/{self.bucket}/{quoted}"
        scheme, host = self.endpoint.split("://", 1)
        return f"{scheme}://{self.bucket}.{host}/{quoted}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name


def s3_location(spec: Spec) -> S3Location:
    rest = spec.model_store.uri.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    options = spec.storage.rclone
    region = options.get("region") or "us-east-1"
    endpoint = os.environ.get(ENDPOINT_ENV) or spec.storage.upload_endpoint or options.get("endpoint") or ""
    if endpoint:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        return S3Location(endpoint.rstrip("/"), bucket, prefix.strip("/"), region, path_style=True)
    return S3Location(f"https://s3.{region}.amazonaws.com", bucket, prefix.strip("/"), region, path_style=False)


def _credentials(secrets: Secrets) -> tuple[str, str, str | None]:
    if secrets.storage_access_key_id and secrets.storage_secret_access_key:
        return secrets.storage_access_key_id, secrets.storage_secret_access_key, None
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret, os.environ.get("AWS_SESSION_TOKEN")
    raise UsageError(
        "upload: no S3 credentials to upload the model with (storage.existingSecret lives in the cluster, "
        "out of mlctl's reach)",
        hint="set storage.accessKeyId/secretAccessKey in the spec, or export AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY for the upload",
    )


def sign_v4(method: str, url: str, headers: dict[str, str], payload_sha256: str, region: str,
            access_key: str, secret_key: str, now: dt.datetime) -> dict[str, str]:  # fmt: skip
    """`headers` plus host, x-amz-date, x-amz-content-sha256 and Authorization (AWS SigV4, S3)."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    out = {**headers, "host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    canon = {k.lower().strip(): " ".join(str(v).split()) for k, v in out.items()}
    signed = ";".join(sorted(canon))
    query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    request = "\n".join([method, parts.path or "/", query, *(f"{k}:{canon[k]}" for k in sorted(canon)), "",
                         signed, payload_sha256])  # fmt: skip
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                            f"Signature={signature}")  # fmt: skip
    return out


def _s3_request(method: str, url: str, loc: S3Location, creds: tuple[str, str, str | None],
                body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:  # fmt: skip
    extra = dict(headers or {})
    if creds[2]:
        extra["x-amz-security-token"] = creds[2]
    signed = sign_v4(method, url, extra, hashlib.sha256(body).hexdigest(), loc.region, creds[0], creds[1],
                     dt.datetime.now(dt.timezone.utc))  # fmt: skip
    signed.pop("host")  # urllib sets it from the URL
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=signed)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MlctlError(
            f"upload: cannot reach the S3 endpoint {loc.endpoint} ({reason})",
            hint="if storage.rclone.endpoint is an address inside the cluster, set storage.uploadEndpoint "
            f"(or export {ENDPOINT_ENV}) to the store's address as seen from this machine",
        ) from None


def _upload_s3(spec: Spec, files: dict[str, tuple[Path, str]], secrets: Secrets) -> UploadResult:
    loc = s3_location(spec)
    creds = _credentials(secrets)
    result = UploadResult(spec.model_store.uri)
    for name, (path, digest) in files.items():
        url = loc.url(loc.key(name))
        status, headers = _s3_request("HEAD", url, loc, creds)
        if status == 200 and headers.get(SHA_HEADER) == digest:
            result.unchanged.append(name)
            continue
        if status not in (200, 404):
            raise MlctlError(f"upload: HEAD s3://{loc.bucket}/{loc.key(name)} answered HTTP {status}",
                             hint="check the bucket name and the credentials' permissions")  # fmt: skip
        body = path.read_bytes()
        ctype = "application/json" if name.endswith(".json") else "application/octet-stream"
        status, _ = _s3_request("PUT", url, loc, creds, body, {"content-type": ctype, SHA_HEADER: digest})
        if status != 200:
            raise MlctlError(f"upload: PUT s3://{loc.bucket}/{loc.key(name)} answered HTTP {status}",
                             hint="check the bucket exists and the credentials may write to it")  # fmt: skip
        result.uploaded.append(name)
    return result


# --- PVC -------------------------------------------------------------------------------------


def _helper_pod(name: str, claim: str, release: str) -> dict:
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": release,
                                              "app.kubernetes.io/component": "mlctl-upload"}},  # fmt: skip
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 1800,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},  # fmt: skip
            "containers": [{
                "name": "store", "image": PVC_HELPER_IMAGE, "command": ["sleep", "1800"],
                "securityContext": security,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "store", "mountPath": PVC_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
            }],  # fmt: skip
            "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": claim}},
                        {"name": "tmp", "emptyDir": {}}],  # fmt: skip
        },
    }


def _remote_sha(t: helm.Target, pod: str, path: str) -> str | None:
    try:
        out = kubectl.exec_(t, pod, ["sha256sum", path])
    except MlctlError:
        return None  # absent (or unreadable, which the copy will then report)
    return out.split()[0] if out.strip() else None


def _upload_pvc(spec: Spec, files: dict[str, tuple[Path, str]]) -> UploadResult:
    k = spec.kubernetes
    t = helm.Target(k.release, k.namespace, k.context)
    claim, _, sub = spec.model_store.uri.split("://", 1)[1].partition("/")
    folder = f"{PVC_MOUNT}/{sub.strip('/')}".rstrip("/")
    pod = f"{k.release}-mlctl-upload"[:63]
    result = UploadResult(spec.model_store.uri)
    kubectl.apply_objects(t, [_helper_pod(pod, claim, k.release)])
    try:
        kubectl.wait(t, f"pod/{pod}", "Ready", timeout_s=min(300, k.timeout_seconds))
        for name, (path, digest) in files.items():
            remote = f"{folder}/{name}"
            if _remote_sha(t, pod, remote) == digest:
                result.unchanged.append(name)
                continue
            kubectl.exec_(t, pod, ["mkdir", "-p", folder])
            kubectl.cp(t, str(path), f"{pod}:{remote}")
            if _remote_sha(t, pod, remote) != digest:
                raise MlctlError(f"upload: {spec.model_store.uri}/{name} does not have the expected sha256 after the copy")
            result.uploaded.append(name)
    finally:
        kubectl.delete(t, "pod", pod, wait=False)
    return result
