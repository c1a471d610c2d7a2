"""Run a cluster's Pod under podman, field by field, as the kubelet would: the only module that
knows podman's pod and container command line.

`PodRunner.run(pod)` takes a `ClusterPod` (mlctl/pods.py) and:

- creates the pod's shared network namespace on the `mlctl` podman network, answering to the
  DNS names of the Services that route to it (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`,
  `<svc>.<ns>.svc.cluster.local`), with the ports the caller asks for published on 127.0.0.1;
- prepares its volumes on the host: emptyDir (fresh, owned by fsGroup as the kubelet does it),
  persistentVolumeClaim (a host folder per claim), configMap and downwardAPI (files);
- pulls images by their imagePullPolicy with the pod's imagePullSecrets (a 0600 auth file);
- runs the init containers one by one to completion, then the containers, each with its
  env (values from Secrets as podman secrets, never on a command line), resources and
  securityContext mapped field by field (`security_flags`);
- waits as asked: every container finished (a Job's pod) or every readiness probe passing.

A field this mapping does not handle is refused (`Unsupported`), never dropped silently:
`podman kube play` 4.3 ignores several securityContext fields (pod-level runAsUser,
runAsNonRoot, fsGroup, seccompProfile), which is why mlctl maps them itself. Fields that mean
nothing on one machine are accepted and named in IGNORED with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets as pysecrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl import tools
from mlctl.errors import MlctlError
from mlctl.pods import ClusterPod

log = logging.getLogger("mlctl")

NETWORK = "mlctl"
LABEL = "io.mlctl"
POLL_S = 0.25

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
POD_FIELDS = {"containers", "initContainers", "volumes", "securityContext", "restartPolicy",
              "terminationGracePeriodSeconds", "activeDeadlineSeconds", *IGNORED}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "resources",
                    "volumeMounts", "securityContext", "readinessProbe", "livenessProbe", "startupProbe",
                    "workingDir", *IGNORED}
# securityContext fields: pod level, container level. Anything else is refused.
POD_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile"}
CONTAINER_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "allowPrivilegeEscalation",
                      "readOnlyRootFilesystem", "capabilities", "privileged", "seccompProfile", "procMount"}
RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


class PodmanError(MlctlError):
    """A pod could not be run as its manifest asks."""


class Unsupported(PodmanError):
    """The manifest uses a field this mapping does not handle."""


def binary() -> str:
    return tools.find_tool("podman")


def _podman(*args: str, timeout: float = 120, input: str | None = None) -> str:
    return tools.run([binary(), *args], timeout=timeout, input=input)


def available() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    try:
        _podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except MlctlError as exc:
        return exc.message.splitlines()[0]
    return None


# --- the securityContext, field by field ----------------------------------------------------------


def _refuse_unknown(where: str, given: dict, known: set[str]) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise Unsupported(f"{where}: {', '.join(extra)} cannot be run under podman by mlctl",
                          hint="remove the field, or run the release on a cluster")


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
        raise Unsupported(f"{where}: seccompProfile {seccomp} (only RuntimeDefault, podman's default profile, "
                          "and Unconfined map)")
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
            raise Unsupported(f"{where}: resources.limits.nvidia.com/gpu: this machine has no GPU for podman",
                              hint="set the GPU count to 0 for a run here")
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
        raise PodmanError(f"{kind} {name} is not in the rendered release, and mlctl cannot read the cluster's",
                          hint=f"the podman target runs only what the chart creates; an existing {kind} is "
                               "a cluster object")

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
            raise Unsupported(f"volume {name}: {', '.join(sorted(kinds))} volumes are not handled",
                              hint="emptyDir, persistentVolumeClaim, configMap and downwardAPI are")
        out[name] = host
    return out


def mount_flags(container: dict, volumes: dict[str, Path], pod: dict, where: str) -> list[str]:
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["spec"].get("volumes") or []
              if "persistentVolumeClaim" in v}
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
            put(e["name"], cluster.config_map(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]].decode(),
                False)
        elif "fieldRef" in ref:
            put(e["name"], _downward(pod, ref["fieldRef"]["fieldPath"]), False)
        else:
            raise Unsupported(f"{where}: env {e['name']} valueFrom {sorted(ref)}")
    return env


# --- images ---------------------------------------------------------------------------------------


def image_present(ref: str) -> bool:
    try:
        _podman("image", "exists", ref, timeout=60)
    except tools.ToolError:
        return False
    return True


def image_user(ref: str) -> str:
    out = _podman("image", "inspect", "--format", "{{.Config.User}}", ref, timeout=60)
    return out.strip()


@contextmanager
def auth_file(config: dict | None) -> Iterator[Path | None]:
    """A 0600 containers auth file holding `config` (a .dockerconfigjson), removed afterwards."""
    if not config:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="mlctl-auth-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def pull(ref: str, policy: str, auth: Path | None, where: str) -> None:
    """Make the image present as imagePullPolicy asks."""
    present = image_present(ref)
    if policy == "Never" and not present:
        raise PodmanError(f"{where}: image {ref} is not on this machine and imagePullPolicy is Never")
    if present and policy != "Always":
        return
    try:
        _podman("pull", "--quiet", *(["--authfile", str(auth)] if auth else []), ref, timeout=1800)
    except tools.ToolError as exc:
        raise PodmanError(f"{where}: cannot pull image {ref}: {tools.tail(exc.stderr, 3)}",
                          hint="build it (mlctl build) or pull it where the registry is reachable") from None


# --- running --------------------------------------------------------------------------------------


@dataclass
class Container:
    name: str
    podman_name: str
    init: bool


@dataclass
class PodRun:
    pod: ClusterPod
    podman_name: str
    containers: list[Container]
    ports: dict[int, int]
    """container port → host port on 127.0.0.1."""
    started: float
    ready_after_s: float | None = None

    def logs(self, container: str, tail: int | None = None) -> str:
        return logs(f"{self.podman_name}-{container}", tail)


def logs(podman_container: str, tail: int | None = None) -> str:
    try:
        p = subprocess.run([binary(), "logs", *(["--tail", str(tail)] if tail else []), podman_container],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(no log: {exc})"
    return (p.stdout + p.stderr).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_network(name: str = NETWORK) -> None:
    try:
        _podman("network", "exists", name, timeout=60)
    except tools.ToolError:
        _podman("network", "create", name, timeout=60)


def podman_name(namespace: str, pod_name: str) -> str:
    return f"{namespace}.{pod_name}"


class PodRunner:
    """Runs ClusterPods of one release on the `mlctl` network."""

    def __init__(self, cluster: Cluster, labels: dict[str, str], network: str = NETWORK,
                 on_event: Callable[[str], None] = lambda _: None,
                 on_log: Callable[[str, str], None] | None = None, secrets: Sequence[str] = ()) -> None:
        self.cluster, self.labels, self.network = cluster, labels, network
        self.on_event = on_event
        self.on_log = on_log
        """Hears (container, line) for each new log line of containers that run to completion."""
        self.secrets = [s for s in secrets if s]
        """Values masked in every log line and error this runner passes on."""

    def mask(self, text: str) -> str:
        return tools.masked([text], self.secrets)[0]

    def run(self, pod: ClusterPod, publish: Sequence[int] = (), wait: str = "ready",
            timeout_s: float = 300) -> PodRun:
        """Create and start the pod; `wait` is "ready" (readiness probes pass), "complete"
        (every container exits; PodmanError unless all exit 0) or "none" (return once started)."""
        manifest = pod.manifest
        spec = manifest["spec"]
        name = podman_name(self.cluster.namespace, pod.name)
        _refuse_unknown(f"pod {pod.name}", spec, POD_FIELDS)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            _refuse_unknown(f"container {c['name']}", c, CONTAINER_FIELDS)
        self.remove(name)
        pod_dir = self.cluster.state_dir / "pods" / pod.name
        shutil.rmtree(pod_dir, ignore_errors=True)
        pod_dir.mkdir(parents=True)
        volumes = prepare_volumes(manifest, self.cluster, pod_dir)
        ensure_network(self.network)
        ports = {p: free_port() for p in publish}
        aliases = [a for s in pod.services for a in ("--network-alias", *s.dns_names()) if a != "--network-alias"]
        labels = {**self.labels, f"{LABEL}.role": pod.role, f"{LABEL}.pod": pod.name}
        argv = ["pod", "create", "--name", name, "--hostname", pod.name[:63], "--network", self.network,
                *[a for alias in aliases for a in ("--network-alias", alias)],
                *[a for p, h in ports.items() for a in ("--publish", f"127.0.0.1:{h}:{p}")],
                *[a for k, v in labels.items() for a in ("--label", f"{k}={v}")]]
        _podman(*argv)
        run = PodRun(pod, name, [], ports, time.monotonic())
        self.on_event(f"pod {pod.name} created")
        with self._pull_auth(manifest) as auth:
            for c in spec.get("initContainers") or []:
                self._start(run, c, volumes, auth, init=True, timeout_s=timeout_s)
            for c in spec["containers"]:
                self._start(run, c, volumes, auth, init=False, timeout_s=timeout_s)
        if wait == "complete":
            self._wait_complete(run, timeout_s)
        elif wait == "ready":
            self._wait_ready(run, timeout_s)
        return run

    @contextmanager
    def _pull_auth(self, manifest: dict) -> Iterator[Path | None]:
        auths: dict[str, Any] = {}
        for ref in manifest["spec"].get("imagePullSecrets") or []:
            data = self.cluster.secret_data(ref["name"])
            auths.update(json.loads(data.get(".dockerconfigjson", "{}")).get("auths", {}))
        with auth_file({"auths": auths} if auths else None) as path:
            yield path

    def _secrets(self, podman_container: str, values: dict[str, str]) -> list[str]:
        """podman secrets of type env for values from Secrets (stdin, never argv); returns flags."""
        flags = []
        for i, (var, value) in enumerate(values.items()):
            secret = f"{_secret_prefix(podman_container)}{i}-{pysecrets.token_hex(3)}"
            _podman("secret", "create", "--label", f"{LABEL}.container={podman_container}", secret, "-",
                    input=value)
            flags += ["--secret", f"{secret},type=env,target={var}"]
        return flags

    def _start(self, run: PodRun, c: dict, volumes: dict[str, Path], auth: Path | None, init: bool,
               timeout_s: float) -> None:
        manifest, spec = run.pod.manifest, run.pod.manifest["spec"]
        where = f"pod {run.pod.name}: {'init container' if init else 'container'} {c['name']}"
        pull(c["image"], c.get("imagePullPolicy", "IfNotPresent"), auth, where)
        flags = security_flags(spec.get("securityContext") or {}, c.get("securityContext") or {},
                               image_user(c["image"]), where)
        flags += resource_flags(c.get("resources") or {}, where)
        flags += mount_flags(c, volumes, manifest, where)
        env = container_env(c, manifest, self.cluster, where)
        pname = f"{run.podman_name}-{c['name']}"
        env_file = run_dir = None
        try:
            fd, env_file = tempfile.mkstemp(prefix="mlctl-env-")
            with os.fdopen(fd, "w") as f:
                for k, v in env.plain.items():
                    if "\n" in v:
                        raise Unsupported(f"{where}: env {k} holds a newline, which podman's env files cannot carry")
                    f.write(f"{k}={v}\n")
            flags += ["--env-file", env_file, *self._secrets(pname, env.secret)]
            if c.get("command"):
                flags += ["--entrypoint", json.dumps(c["command"])]
            if c.get("workingDir"):
                flags += ["--workdir", c["workingDir"]]
            grace = spec.get("terminationGracePeriodSeconds", 30)
            restart = "no" if init else RESTART[spec.get("restartPolicy", "Always")]
            argv = ["--pod", run.podman_name, "--name", pname, "--pull", "never", "--restart", restart,
                    "--stop-timeout", str(grace), "--label", f"{LABEL}.container={c['name']}",
                    *flags, c["image"], *[str(a) for a in c.get("args") or []]]
            try:
                _podman("create", *argv)
                _podman("start", pname)
            except tools.ToolError as exc:
                raise self._failed(run, c["name"], where, exc) from None
            self.on_event(f"{'init container' if init else 'container'} {c['name']} started")
            if init:
                code = self._wait_exit(run, c["name"], pname, run.started + timeout_s, where)
                if code != 0:
                    raise self._failed(run, c["name"], where, None, code)
        finally:
            if env_file:
                Path(env_file).unlink(missing_ok=True)
        run.containers.append(Container(c["name"], pname, init))

    def _exit_code(self, pname: str) -> int:
        return int(_podman("inspect", "--format", "{{.State.ExitCode}}", pname).strip() or 0)

    def _wait_exit(self, run: PodRun, container: str, pname: str, deadline: float, where: str) -> int:
        """Wait for a container to exit, passing its new log lines on; its exit code."""
        seen = 0
        while True:
            running = self._state(pname).get("Running")
            if self.on_log is not None:
                lines = logs(pname).splitlines()
                for line in lines[seen:]:
                    self.on_log(container, self.mask(line))
                seen = len(lines)
            if not running:
                return self._exit_code(pname)
            if time.monotonic() > deadline:
                self.stop(run.podman_name)
                raise PodmanError(self.mask(f"{where} did not finish in time; its last log lines:\n"
                                             f"{run.logs(container, 20)}"))
            time.sleep(1.0 if self.on_log else POLL_S)

    def _failed(self, run: PodRun, container: str, where: str, exc: tools.ToolError | None,
                code: int | None = None) -> PodmanError:
        tail = run.logs(container, 20) or (exc.stderr.strip() if exc else "") or "(empty log)"
        why = f"exited {code}" if code is not None else "could not start"
        return PodmanError(self.mask(f"{where} {why}; its last log lines:\n{tail}"),
                           hint=f"podman logs {run.podman_name}-{container}")

    def _state(self, pname: str) -> dict:
        out = _podman("inspect", "--format", "{{json .State}}|{{.RestartCount}}", pname)
        state_json, _, restarts = out.strip().rpartition("|")
        state = json.loads(state_json)
        state["RestartCount"] = int(restarts or 0)
        return state

    def _wait_complete(self, run: PodRun, timeout_s: float) -> None:
        for c in [c for c in run.containers if not c.init]:
            where = f"pod {run.pod.name}: container {c.name}"
            code = self._wait_exit(run, c.name, c.podman_name, run.started + timeout_s, where)
            if code != 0:
                raise self._failed(run, c.name, where, None, code)

    def _wait_ready(self, run: PodRun, timeout_s: float) -> None:
        deadline = run.started + timeout_s
        probes = {c["name"]: c.get("readinessProbe") for c in run.pod.manifest["spec"]["containers"]}
        passed = {name: probe is None for name, probe in probes.items()}
        next_probe = {name: run.started + (p or {}).get("initialDelaySeconds", 0) for name, p in probes.items()}
        while not all(passed.values()):
            now = time.monotonic()
            for c in [c for c in run.containers if not c.init]:
                state = self._state(c.podman_name)
                if not state.get("Running") or state["RestartCount"]:
                    self.stop(run.podman_name)
                    what = (f"exited {state.get('ExitCode')}" if not state.get("Running")
                            else f"restarted {state['RestartCount']} time(s)")
                    raise PodmanError(self.mask(f"pod {run.pod.name}: container {c.name} {what} while starting; "
                                                f"its last log lines:\n{run.logs(c.name, 20)}"),
                                      hint=f"podman logs {c.podman_name}")
                probe = probes.get(c.name)
                if probe and not passed[c.name] and now >= next_probe[c.name]:
                    passed[c.name] = probe_ok(probe, run.ports)
                    next_probe[c.name] = now + probe.get("periodSeconds", 10)
            if now > deadline:
                self.stop(run.podman_name)
                waiting = ", ".join(n for n, ok in passed.items() if not ok)
                raise PodmanError(self.mask(f"pod {run.pod.name}: {waiting} not ready within {timeout_s:.0f} s; "
                                            "last log lines:\n" + "\n".join(run.logs(n, 10) for n in passed
                                                                              if not passed[n])))
            time.sleep(POLL_S)
        run.ready_after_s = time.monotonic() - run.started
        self.on_event(f"pod {run.pod.name} ready after {run.ready_after_s:.1f} s")

    # --- lookup and removal -----------------------------------------------------------------------

    def pods(self) -> list[dict]:
        """This release's podman pods: [{name, status, labels, containers}]."""
        filters = [a for k, v in self.labels.items() for a in ("--filter", f"label={k}={v}")]
        out = _podman("pod", "ps", "--format", "json", *filters)
        return [{"name": p["Name"], "status": p["Status"], "labels": p.get("Labels") or {},
                 "containers": {c.get("Names", "").removeprefix(f"{p['Name']}-"): c.get("Status")
                                for c in p.get("Containers") or [] if not c.get("Names", "").endswith("-infra")}}
                for p in json.loads(out or "[]")]

    def running(self, pod_name: str, containers: Sequence[str]) -> bool:
        """Whether the pod's named containers all run (its init containers have exited by design)."""
        try:
            return all(self._state(f"{pod_name}-{c}").get("Running") for c in containers)
        except MlctlError:
            return False

    def stop(self, name: str) -> None:
        try:
            _podman("pod", "stop", "--time", "2", name, timeout=120)
        except tools.ToolError:
            pass

    def remove(self, name: str) -> bool:
        """Remove a pod, its containers and their podman secrets; False when there was none."""
        try:
            _podman("pod", "exists", name, timeout=60)
        except tools.ToolError:
            return False
        containers = json.loads(_podman("pod", "inspect", name, "--format", "json")).get("Containers") or []
        _podman("pod", "rm", "--force", "--time", "2", name, timeout=180)
        prefixes = tuple(_secret_prefix(c.get("Name", "")) for c in containers)
        for secret in _podman("secret", "ls", "--format", "{{.Name}}").split():
            if secret.startswith(prefixes):
                _podman("secret", "rm", secret)
        return True


def _secret_prefix(podman_container: str) -> str:
    """podman secret names are at most 64 characters: a digest of the container's name stands in."""
    return f"mlctl-{hashlib.sha256(podman_container.encode()).hexdigest()[:16]}-"


def published_port(pod: str, port: int) -> int | None:
    """The 127.0.0.1 port a pod's `port` is published on, or None."""
    try:
        infra = json.loads(_podman("pod", "inspect", pod, "--format", "json")).get("InfraContainerID")
        out = _podman("port", infra, f"{port}/tcp").strip().splitlines()
    except (MlctlError, ValueError):
        return None
    return int(out[0].rsplit(":", 1)[-1]) if out else None


def probe_ok(probe: dict, ports: dict[int, int]) -> bool:
    """One readiness probe, from this machine to the pod's published port, as the kubelet probes."""
    timeout = probe.get("timeoutSeconds", 1)
    if "httpGet" in probe:
        get = probe["httpGet"]
        port = ports.get(int(get["port"]))
        if port is None:
            raise PodmanError(f"the probe's port {get['port']} is not published")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{get.get('path', '/')}", timeout=timeout) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, OSError):
            return False
    if "tcpSocket" in probe:
        port = ports.get(int(probe["tcpSocket"]["port"]))
        if port is None:
            raise PodmanError(f"the probe's port {probe['tcpSocket']['port']} is not published")
        with socket.socket() as s:
            s.settimeout(timeout)
            return s.connect_ex(("127.0.0.1", port)) == 0
    raise Unsupported(f"probe {sorted(probe)} (httpGet and tcpSocket map)")


def probe_ports(pod: ClusterPod) -> set[int]:
    """The container ports readiness and liveness probes reach."""
    out = set()
    for c in pod.manifest["spec"]["containers"]:
        for key in ("readinessProbe", "livenessProbe"):
            probe = c.get(key) or {}
            target = probe.get("httpGet") or probe.get("tcpSocket")
            if target:
                out.add(int(target["port"]))
    return out
