"""Run a cluster's Pod under podman as the kubelet would: the only module that knows podman's
pod and container command line (mlctl/podspec.py turns the Pod's fields into its flags).

`PodRunner.run(pod)` takes a `ClusterPod` (mlctl/pods.py) and:

- creates the pod's shared network namespace on the `mlctl` podman network, answering to the
  DNS names of the Services that route to it (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`,
  `<svc>.<ns>.svc.cluster.local`), with the ports the caller asks for published on 127.0.0.1;
  a Service port that is not its targetPort (KServe's 80 → 8080) is redirected to it inside the
  pod's network namespace, which is kube-proxy's part (`forward_service_ports`);
- prepares its volumes on the host: emptyDir (fresh, owned by fsGroup as the kubelet does it),
  persistentVolumeClaim (a host folder per claim), configMap and downwardAPI (files);
- pulls images by their imagePullPolicy with the pod's imagePullSecrets (a 0600 auth file);
- runs the init containers one by one to completion, then the containers, each with its
  env (values from Secrets as podman secrets, never on a command line), resources and
  securityContext mapped field by field (`security_flags`);
- waits as asked: every container finished (a Job's pod) or every readiness probe passing.

A field the mapping does not handle is refused (`Unsupported`), never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets as pysecrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl import poll, tools
from mlctl.errors import MlctlError
from mlctl.pods import ClusterPod
from mlctl.podspec import (
    CONTAINER_FIELDS,
    POD_FIELDS,
    RESTART,
    Cluster,
    PodmanError,
    Unsupported,
    _refuse_unknown,
    container_env,
    mount_flags,
    prepare_volumes,
    resource_flags,
    security_flags,
)

log = logging.getLogger("mlctl")
RM_ATTEMPTS = 5
"""Tries of `podman pod rm` while podman reports a container's mount busy (see PodRunner.remove)."""

NETWORK = "mlctl"
LABEL = "io.mlctl"
POLL_S = 0.25


def binary() -> str:
    return tools.find_tool("podman")


def _podman(*args: str, timeout: float = 120, input: str | None = None) -> str:
    return tools.run([binary(), *args], timeout=timeout, input=input)


def call(*args: str, timeout: float = 120, input: str | None = None) -> str:
    """`podman ARGS`: its stdout, or a ToolError naming the command and podman's answer."""
    return _podman(*args, timeout=timeout, input=input)


def available() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    try:
        _podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except MlctlError as exc:
        return exc.message.splitlines()[0]
    return None


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
        raise PodmanError(
            f"{where}: cannot pull image {ref}: {tools.tail(exc.stderr, 3)}",
            hint="build it (mlctl build) or pull it where the registry is reachable",
        ) from exc


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

    def excerpt(self, container: str, tail: int = 20) -> str:
        """What a failure report quotes of a container's log: see log_excerpt."""
        return log_excerpt(self.logs(container), tail)


def logs(podman_container: str, tail: int | None = None) -> str:
    """The container's stdout and stderr in the order it wrote them (as `kubectl logs`)."""
    try:
        p = subprocess.run(
            [binary(), "logs", *(["--tail", str(tail)] if tail else []), podman_container],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(no log: {exc})"
    return p.stdout.strip()


_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|^[\w.]*(Error|Exception|Mismatch): ")


def log_excerpt(text: str, tail: int = 20, errors: int = 5) -> str:
    """The last `tail` lines, after the first error lines that fell outside them.

    A crashing server's last lines are often its shutdown (gunicorn's master reaping workers,
    tracebacks of child processes) while the reason was logged earlier; both are needed.
    """
    lines = text.strip().splitlines()
    head, last = lines[:-tail], lines[-tail:]
    first = list(dict.fromkeys(line for line in head if _ERROR_LINE.search(line)))[:errors]  # each once
    if not first:
        return "\n".join(last)
    return "\n".join([*first, f"[... {len(head)} earlier line(s), first error lines above ...]", *last])


def ensure_network(name: str = NETWORK) -> None:
    try:
        _podman("network", "exists", name, timeout=60)
    except tools.ToolError:
        _podman("network", "create", name, timeout=60)


def podman_name(namespace: str, pod_name: str) -> str:
    return f"{namespace}.{pod_name}"


class PodRunner:
    """Runs ClusterPods of one release on the `mlctl` network."""

    def __init__(
        self,
        cluster: Cluster,
        labels: dict[str, str],
        network: str = NETWORK,
        on_event: Callable[[str], None] = lambda _: None,
        on_log: Callable[[str, str], None] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.cluster, self.labels, self.network = cluster, labels, network
        self.on_event = on_event
        self.on_log = on_log
        """Hears (container, line) for each new log line of containers that run to completion."""
        self.secrets = [s for s in secrets if s]
        """Values masked in every log line and error this runner passes on."""

    def mask(self, text: str) -> str:
        return tools.masked([text], self.secrets)[0]

    def run(
        self,
        pod: ClusterPod,
        publish: Sequence[int] = (),
        wait: str = "ready",
        timeout_s: float = 300,
        labels: dict[str, str] | None = None,
    ) -> PodRun:
        """Create and start the pod; `wait` is "ready" (readiness probes pass), "complete"
        (every container exits; PodmanError unless all exit 0) or "none" (return once started).
        `labels` go on the podman pod beside the runner's own."""
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
        ports = {p: tools.free_port() for p in publish}
        aliases = [a for s in pod.services for a in ("--network-alias", *s.dns_names()) if a != "--network-alias"]
        labels = {**(labels or {}), **self.labels, f"{LABEL}.role": pod.role, f"{LABEL}.pod": pod.name}
        argv = [
            "pod",
            "create",
            "--name",
            name,
            "--hostname",
            pod.name[:63],
            "--network",
            self.network,
            *[a for alias in aliases for a in ("--network-alias", alias)],
            *[a for p, h in ports.items() for a in ("--publish", f"127.0.0.1:{h}:{p}")],
            *[a for k, v in labels.items() for a in ("--label", f"{k}={v}")],
        ]
        _podman(*argv)
        run = PodRun(pod, name, [], ports, time.monotonic())
        self.on_event(f"pod {pod.name} created")
        for service, port, target in forward_service_ports(name, pod):
            self.on_event(f"Service {service} port {port} → the pod's {target}")
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
            _podman("secret", "create", "--label", f"{LABEL}.container={podman_container}", secret, "-", input=value)
            flags += ["--secret", f"{secret},type=env,target={var}"]
        return flags

    def _start(
        self, run: PodRun, c: dict, volumes: dict[str, Path], auth: Path | None, init: bool, timeout_s: float
    ) -> None:
        manifest, spec = run.pod.manifest, run.pod.manifest["spec"]
        where = f"pod {run.pod.name}: {'init container' if init else 'container'} {c['name']}"
        pull(c["image"], c.get("imagePullPolicy", "IfNotPresent"), auth, where)
        flags = security_flags(
            spec.get("securityContext") or {}, c.get("securityContext") or {}, image_user(c["image"]), where
        )
        flags += resource_flags(c.get("resources") or {}, where)
        flags += mount_flags(c, volumes, manifest, where)
        env = container_env(c, manifest, self.cluster, where)
        pname = f"{run.podman_name}-{c['name']}"
        env_file = None
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
            argv = [
                "--pod",
                run.podman_name,
                "--name",
                pname,
                "--pull",
                "never",
                "--restart",
                restart,
                "--stop-timeout",
                str(grace),
                "--label",
                f"{LABEL}.container={c['name']}",
                *flags,
                c["image"],
                *[str(a) for a in c.get("args") or []],
            ]
            try:
                _podman("create", *argv)
                _podman("start", pname)
            except tools.ToolError as exc:
                raise self._failed(run, c["name"], where, exc) from exc
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

        def exited() -> int | None:
            nonlocal seen
            running = self._state(pname).get("Running")
            if self.on_log is not None:
                lines = logs(pname).splitlines()
                for line in lines[seen:]:
                    self.on_log(container, self.mask(line))
                seen = len(lines)
            return None if running else self._exit_code(pname)

        def timed_out() -> int:
            self.stop(run.podman_name)
            raise PodmanError(self.mask(f"{where} did not finish in time; its log:\n{run.excerpt(container)}"))

        return poll.until(exited, deadline=deadline, every_s=1.0 if self.on_log else POLL_S, on_timeout=timed_out)

    def _failed(
        self, run: PodRun, container: str, where: str, exc: tools.ToolError | None, code: int | None = None
    ) -> PodmanError:
        tail = run.excerpt(container) or (exc.stderr.strip() if exc else "") or "(empty log)"
        why = f"exited {code}" if code is not None else "could not start"
        return PodmanError(
            self.mask(f"{where} {why}; its log:\n{tail}"), hint=f"podman logs {run.podman_name}-{container}"
        )

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

        def ready() -> bool | None:
            now = time.monotonic()
            for c in [c for c in run.containers if not c.init]:
                state = self._state(c.podman_name)
                if not state.get("Running") or state["RestartCount"]:
                    self.stop(run.podman_name)
                    what = (
                        f"exited {state.get('ExitCode')}"
                        if not state.get("Running")
                        else f"restarted {state['RestartCount']} time(s)"
                    )
                    raise PodmanError(
                        self.mask(
                            f"pod {run.pod.name}: container {c.name} {what} while starting; "
                            f"its log:\n{run.excerpt(c.name)}"
                        ),
                        hint=f"podman logs {c.podman_name}",
                    )
                probe = probes.get(c.name)
                if probe and not passed[c.name] and now >= next_probe[c.name]:
                    passed[c.name] = probe_ok(probe, run.ports)
                    next_probe[c.name] = now + probe.get("periodSeconds", 10)
            return True if all(passed.values()) else None

        def timed_out() -> bool:
            self.stop(run.podman_name)
            waiting = ", ".join(n for n, ok in passed.items() if not ok)
            raise PodmanError(
                self.mask(
                    f"pod {run.pod.name}: {waiting} not ready within {timeout_s:.0f} s; "
                    "their logs:\n" + "\n".join(run.excerpt(n, 10) for n in passed if not passed[n])
                )
            )

        poll.until(ready, deadline=deadline, every_s=POLL_S, on_timeout=timed_out)
        run.ready_after_s = time.monotonic() - run.started
        self.on_event(f"pod {run.pod.name} ready after {run.ready_after_s:.1f} s")

    # --- lookup and removal -----------------------------------------------------------------------

    def pods(self) -> list[dict]:
        """This release's podman pods: [{name, status, labels, containers}]."""
        filters = [a for k, v in self.labels.items() for a in ("--filter", f"label={k}={v}")]
        out = _podman("pod", "ps", "--format", "json", *filters)
        return [
            {
                "name": p["Name"],
                "status": p["Status"],
                "labels": p.get("Labels") or {},
                "containers": {
                    c.get("Names", "").removeprefix(f"{p['Name']}-"): c.get("Status")
                    for c in p.get("Containers") or []
                    if not c.get("Names", "").endswith("-infra")
                },
            }
            for p in json.loads(out or "[]")
        ]

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
        # podman 4.3 sometimes finds a just-stopped container's /dev/shm mount still busy
        # ("unlinkat …/userdata/shm: device or resource busy"); a moment later the removal works.
        poll.retry(
            lambda: _podman("pod", "rm", "--force", "--time", "2", name, timeout=180),
            attempts=RM_ATTEMPTS,
            every_s=1.0,
            retry_if=lambda exc: isinstance(exc, tools.ToolError) and "device or resource busy" in str(exc),
        )
        prefixes = tuple(_secret_prefix(c.get("Name", "")) for c in containers)
        for secret in _podman("secret", "ls", "--format", "{{.Name}}").split():
            if secret.startswith(prefixes):
                _podman("secret", "rm", secret)
        return True


def _secret_prefix(podman_container: str) -> str:
    """podman secret names are at most 64 characters: a digest of the container's name stands in."""
    return f"mlctl-{hashlib.sha256(podman_container.encode()).hexdigest()[:16]}-"


def service_forwards(pod: ClusterPod) -> list[tuple[str, int, int]]:
    """(Service, port, targetPort) for each Service port of the pod that is not its targetPort."""
    return sorted({(s.name, port, target) for s in pod.services for port, target in s.ports.values() if port != target})


def forward_service_ports(name: str, pod: ClusterPod) -> list[tuple[str, int, int]]:
    """Make the pod answer on its Services' ports where they differ from the targetPort.

    On a cluster kube-proxy DNATs `<Service>:<port>` to `<pod IP>:<targetPort>`. Here a Service's
    DNS names are the pod's own network aliases, so the same rewrite goes into the pod's network
    namespace: an iptables REDIRECT in its nat PREROUTING chain (traffic from other pods; the
    127.0.0.1 ports mlctl publishes are the targetPorts already). It needs root, as rootful podman
    does; the pod is started (its infra container) so that the namespace exists.
    """
    forwards = service_forwards(pod)
    if not forwards:
        return []
    if os.geteuid() != 0:
        service, port, target = forwards[0]
        raise Unsupported(
            f"pod {pod.name}: Service {service} maps port {port} to {target}, and only root can "
            "redirect ports in a pod's network namespace",
            hint="run the podman target as root (rootful podman)",
        )
    _podman("pod", "start", name)
    infra = json.loads(_podman("pod", "inspect", name, "--format", "json"))["InfraContainerID"]
    pid = _podman("inspect", "--format", "{{.State.Pid}}", infra).strip()
    for _, port, target in forwards:
        tools.run(
            [tools.find_tool("nsenter"), "--target", pid, "--net", "--", tools.find_tool("iptables"), "-w", "-t", "nat",
             "-A", "PREROUTING", "-p", "tcp", "--dport", str(port), "-j", "REDIRECT", "--to-ports", str(target)],
            timeout=60,
        )  # fmt: skip
    return forwards


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
