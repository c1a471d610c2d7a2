"""A Pod's fields as podman's flags, one field at a time: what the kubelet would do with each.

mlctl/podman.py runs pods with these. Every field of a Pod, a container and a securityContext is
either mapped here, accepted and named in IGNORED with the reason it means nothing on one machine,
or refused (`Unsupported`): `podman kube play` 4.3 drops several securityContext fields
(pod-level runAsUser, runAsNonRoot, fsGroup, seccompProfile) without a word, which is why mlctl
maps them itself.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.errors import MlctlError

# Fields accepted and deliberately not acted on, with the reason (one machine, no API server).
IGNORED = {
    "nodeSelector": "one node: nothing to select",
    "tolerations": "one node: no taints",
    "affinity": "one node",
    "schedulerName": "no scheduler",
    "dnsPolicy": "the podman network's DNS stands for the cluster's",
    "serviceAccountName": "no API server: no token to mount (the chart turns automounting off anyway)",
    "automountServiceAccountToken": "no API server",
    "terminationMessagePath": "podman keeps the log instead",
    "terminationMessagePolicy": "podman keeps the log instead",
    "lifecycle": "preStop drains a Service endpoint; here nothing routes to a pod being removed",
    "ports": "documentation; Services and published ports come from the caller",
    "imagePullSecrets": "used for pulls",
}
POD_FIELDS = {
    "containers",
    "initContainers",
    "volumes",
    "securityContext",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    *IGNORED,
}
CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "securityContext",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "workingDir",
    *IGNORED,
}
# securityContext fields: pod level, container level. Anything else is refused.
POD_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile"}
CONTAINER_SECURITY = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "privileged",
    "seccompProfile",
    "procMount",
}
RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


class PodmanError(MlctlError):
    """A pod could not be run as its manifest asks."""


class Unsupported(PodmanError):
    """The manifest uses a field this mapping does not handle."""


# --- the securityContext, field by field ----------------------------------------------------------


def _refuse_unknown(where: str, given: dict, known: set[str]) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise Unsupported(
            f"{where}: {', '.join(extra)} cannot be run under podman by mlctl",
            hint="remove the field, or run the release on a cluster",
        )


def security_flags(pod_sc: dict, container_sc: dict, image_user: str, where: str) -> list[str]:
    """The podman flags for a container's effective securityContext (the container's fields over
    the pod's, as the kubelet merges them)."""
    _refuse_unknown(f"{where}: pod securityContext", pod_sc, POD_SECURITY)
    _refuse_unknown(f"{where}: securityContext", container_sc, CONTAINER_SECURITY)
    merged = {**{k: v for k, v in pod_sc.items() if k in CONTAINER_SECURITY}, **container_sc}
    flags: list[str] = []
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if uid is None:
        user = image_user.split(":", 1)[0] or "0"
        if merged.get("runAsNonRoot") and not user.isdigit():
            # The kubelet cannot prove a named user is not root.
            raise PodmanError(f"{where}: runAsNonRoot and the image's user {user!r} is not numeric")
        uid = int(user) if user.isdigit() else None
    if merged.get("runAsNonRoot") and uid == 0:
        raise PodmanError(f"{where}: runAsNonRoot, but the container would run as root (uid 0)")
    if uid is not None:
        flags += ["--user", f"{uid}:{gid if gid is not None else 0}"]
    elif gid is not None:
        flags += ["--user", f"{image_user}:{gid}"]
    for group in [*([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []), *pod_sc.get("supplementalGroups", [])]:
        flags += ["--group-add", str(group)]
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if merged.get("readOnlyRootFilesystem"):
        # --read-only-tmpfs=false: podman would add tmpfs on /tmp, /run, /var/tmp; the kubelet
        # adds nothing, so a container missing its /tmp volume must fail here too.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    caps = merged.get("capabilities") or {}
    _refuse_unknown(f"{where}: securityContext.capabilities", caps, {"add", "drop"})
    flags += [a for c in caps.get("drop") or [] for a in ("--cap-drop", c)]
    flags += [a for c in caps.get("add") or [] for a in ("--cap-add", c)]
    if merged.get("privileged"):
        flags += ["--privileged"]
    seccomp = (merged.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp not in (None, "RuntimeDefault"):
        raise Unsupported(
            f"{where}: seccompProfile {seccomp} (only RuntimeDefault, podman's default profile, and Unconfined map)"
        )
    if merged.get("procMount") not in (None, "Default"):
        raise Unsupported(f"{where}: procMount {merged['procMount']}")
    return flags


# --- resources ------------------------------------------------------------------------------------


def _cpu(q: str) -> str:
    return f"{float(q[:-1]) / 1000:g}" if str(q).endswith("m") else f"{float(q):g}"


_BYTES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _memory(q: str) -> str:
    q = str(q)
    for suffix, factor in _BYTES.items():
        if q.endswith(suffix):
            return str(int(float(q[: -len(suffix)]) * factor))
    return str(int(float(q)))


def resource_flags(resources: dict, where: str) -> list[str]:
    """Limits become podman's cgroup limits; requests only matter to a scheduler."""
    limits = resources.get("limits") or {}
    _refuse_unknown(f"{where}: resources", resources, {"limits", "requests"})
    flags = []
    for name, value in limits.items():
        if name == "cpu":
            flags += ["--cpus", _cpu(value)]
        elif name == "memory":
            flags += ["--memory", _memory(value)]
        elif name == "nvidia.com/gpu":
            raise Unsupported(
                f"{where}: resources.limits.nvidia.com/gpu: this machine has no GPU for podman",
                hint="set the GPU count to 0 for a run here",
            )
        elif name != "ephemeral-storage":
            raise Unsupported(f"{where}: resources.limits.{name}")
    return flags


# --- volumes --------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """What the kubelet sees around a pod: the rendered Secrets and ConfigMaps, the host folders
    standing for the claims, and where pod state lives."""

    objects: list[dict]
    namespace: str
    state_dir: Path
    """Pods' volumes (pods/<pod>/…) and the claims (claims/<claim>/)."""
    seeds: dict[str, Path] = field(default_factory=dict)
    """emptyDir name → a host folder copied into it when the pod starts (see the podman target)."""

    def claim(self, name: str) -> Path:
        path = self.state_dir / "claims" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def find(self, kind: str, name: str) -> dict:
        for obj in self.objects:
            if obj.get("kind") == kind and obj["metadata"]["name"] == name:
                return obj
        raise PodmanError(
            f"{kind} {name} is not in the rendered release, and mlctl cannot read the cluster's",
            hint=f"the podman target runs only what the chart creates; an existing {kind} is a cluster object",
        )

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.find("Secret", name)
        out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return {**out, **(secret.get("stringData") or {})}

    def config_map(self, name: str) -> dict[str, bytes]:
        cm = self.find("ConfigMap", name)
        out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        return {**out, **{k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}}


def _owned_by_group(path: Path, gid: int | None, mode: int) -> None:
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)


def _downward(pod: dict, field_path: str) -> str:
    meta = pod["metadata"]
    if field_path in ("metadata.annotations", "metadata.labels"):
        items = meta.get(field_path.split(".")[1]) or {}
        return "".join(f"{k}={json.dumps(str(v))}\n" for k, v in sorted(items.items()))
    if field_path in ("metadata.name", "metadata.namespace"):
        return str(meta.get(field_path.split(".")[1], ""))
    raise Unsupported(f"downwardAPI fieldRef {field_path}")


def prepare_volumes(pod: dict, cluster: Cluster, pod_dir: Path) -> dict[str, Path]:
    """{volume name: host folder} for every volume of the pod, created as the kubelet would."""
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    out: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        kinds = set(volume) - {"name"}
        host = pod_dir / "volumes" / name
        if kinds == {"emptyDir"}:
            if (volume["emptyDir"] or {}).get("medium"):
                raise Unsupported(f"volume {name}: emptyDir medium {volume['emptyDir']['medium']}")
            host.mkdir(parents=True)
            seed = cluster.seeds.get(name)
            if seed is not None:
                shutil.copytree(seed, host, dirs_exist_ok=True)
                for p in host.rglob("*"):
                    os.chmod(p, 0o664 if p.is_file() else 0o2775)
            # The kubelet makes an emptyDir 0777; with fsGroup, group-owned and setgid.
            _owned_by_group(host, fs_group, 0o2777 if fs_group is not None else 0o777)
        elif kinds == {"persistentVolumeClaim"}:
            host = cluster.claim(volume["persistentVolumeClaim"]["claimName"])
            if fs_group is not None:  # fsGroup's recursive ownership change on mount
                for p in [host, *host.rglob("*")]:
                    _owned_by_group(p, fs_group, (os.stat(p).st_mode & 0o777) | (0o2070 if p.is_dir() else 0o060))
        elif kinds == {"configMap"}:
            host.mkdir(parents=True)
            for key, data in cluster.config_map(volume["configMap"]["name"]).items():
                (host / key).write_bytes(data)
                os.chmod(host / key, volume["configMap"].get("defaultMode", 0o644))
        elif kinds == {"downwardAPI"}:
            host.mkdir(parents=True)
            for item in volume["downwardAPI"]["items"]:
                (host / item["path"]).write_text(_downward(pod, item["fieldRef"]["fieldPath"]))
                os.chmod(host / item["path"], volume["downwardAPI"].get("defaultMode", 0o644))
        else:
            raise Unsupported(
                f"volume {name}: {', '.join(sorted(kinds))} volumes are not handled",
                hint="emptyDir, persistentVolumeClaim, configMap and downwardAPI are",
            )
        out[name] = host
    return out


def mount_flags(container: dict, volumes: dict[str, Path], pod: dict, where: str) -> list[str]:
    claims = {
        v["name"]: v["persistentVolumeClaim"] for v in pod["spec"].get("volumes") or [] if "persistentVolumeClaim" in v
    }
    flags = []
    for m in container.get("volumeMounts") or []:
        _refuse_unknown(f"{where}: volumeMount {m.get('name')}", m, {"name", "mountPath", "readOnly", "subPath"})
        if m["name"] not in volumes:
            raise PodmanError(f"{where}: volumeMount {m['name']} names no volume of the pod")
        source = volumes[m["name"]]
        if m.get("subPath"):
            source = source / m["subPath"]
            source.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath
        read_only = m.get("readOnly") or claims.get(m["name"], {}).get("readOnly")
        flags += ["--volume", f"{source}:{m['mountPath']}{':ro' if read_only else ''}"]
    return flags


# --- env ------------------------------------------------------------------------------------------


@dataclass
class Env:
    plain: dict[str, str] = field(default_factory=dict)
    secret: dict[str, str] = field(default_factory=dict)
    """Values that come from Secrets: passed as podman secrets of type env."""


def container_env(container: dict, pod: dict, cluster: Cluster, where: str) -> Env:
    """envFrom first, then env (env wins on a clash), as the kubelet builds it."""
    env = Env()

    def put(name: str, value: str, secret: bool) -> None:
        env.plain.pop(name, None)
        env.secret.pop(name, None)
        (env.secret if secret else env.plain)[name] = value

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            for k, v in cluster.secret_data(source["secretRef"]["name"]).items():
                put(prefix + k, v, True)
        elif "configMapRef" in source:
            for k, v in cluster.config_map(source["configMapRef"]["name"]).items():
                put(prefix + k, v.decode(), False)
        else:
            raise Unsupported(f"{where}: envFrom {sorted(source)}")
    for e in container.get("env") or []:
        if "value" in e or not e.get("valueFrom"):
            put(e["name"], str(e.get("value", "")), False)
            continue
        ref = e["valueFrom"]
        if "secretKeyRef" in ref:
            put(e["name"], cluster.secret_data(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]], True)
        elif "configMapKeyRef" in ref:
            put(
                e["name"],
                cluster.config_map(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]].decode(),
                False,
            )
        elif "fieldRef" in ref:
            put(e["name"], _downward(pod, ref["fieldRef"]["fieldPath"]), False)
        else:
            raise Unsupported(f"{where}: env {e['name']} valueFrom {sorted(ref)}")
    return env
