"""Kubernetes Pod Security Standards (baseline and restricted) checked on a Pod, offline.

The rules are the profile's published controls (kubernetes.io/docs/concepts/security/
pod-security-standards, as of Kubernetes 1.31), one row each in `RULES`, with the fields the
documentation names. No checker from the Kubernetes project installs here (pod-security-admission
is Go), so this module is the table, and tests/test_podsecurity.py holds each row to a pod that
breaks it.

`check(pod)` returns every violation; `level(pod)` the strictest profile the pod meets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

BASELINE, RESTRICTED = "baseline", "restricted"

# Capabilities baseline allows in `add` (the documented list).
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


@dataclass(frozen=True)
class Violation:
    profile: str
    control: str
    where: str
    """`pod` or `container <name>`."""
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.profile} / {self.control}: {self.where}: {self.field} {self.detail}"


def containers(pod: dict) -> Iterator[tuple[str, dict]]:
    spec = pod["spec"]
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or []:
            yield group, c


def _sc(obj: dict) -> dict:
    return obj.get("securityContext") or {}


Check = Callable[[dict], Iterator[tuple[str, str, str]]]  # (where, field, detail)


def _host_process(pod: dict):
    if (_sc(pod["spec"]).get("windowsOptions") or {}).get("hostProcess"):
        yield "pod", "spec.securityContext.windowsOptions.hostProcess", "is true"
    for group, c in containers(pod):
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.windowsOptions.hostProcess", "is true"


def _host_namespaces(pod: dict):
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod["spec"].get(f):
            yield "pod", f"spec.{f}", "is true"


def _privileged(pod: dict):
    for group, c in containers(pod):
        if _sc(c).get("privileged"):
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.privileged", "is true"


def _baseline_capabilities(pod: dict):
    for group, c in containers(pod):
        extra = set((_sc(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if extra:
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.capabilities.add", f"adds {sorted(extra)}"


def _host_path(pod: dict):
    for v in pod["spec"].get("volumes") or []:
        if "hostPath" in v:
            yield "pod", "spec.volumes[*].hostPath", f"volume {v['name']}"


def _host_ports(pod: dict):
    for group, c in containers(pod):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                yield f"container {c['name']}", f"spec.{group}[*].ports[*].hostPort", f"is {p['hostPort']}"


def _apparmor(pod: dict):
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            yield "pod", f"metadata.annotations[{key}]", f"is {value!r}"
    for where, sc, field in _contexts(pod, "appArmorProfile"):
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            yield where, field, f"is {sc['appArmorProfile']['type']!r}"


def _contexts(pod: dict, name: str) -> Iterator[tuple[str, dict, str]]:
    yield "pod", _sc(pod["spec"]), f"spec.securityContext.{name}"
    for group, c in containers(pod):
        yield f"container {c['name']}", _sc(c), f"spec.{group}[*].securityContext.{name}"


def _selinux(pod: dict):
    for where, sc, field in _contexts(pod, "seLinuxOptions"):
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in SELINUX_TYPES:
            yield where, f"{field}.type", f"is {opts['type']!r}"
        for key in ("user", "role"):
            if opts.get(key):
                yield where, f"{field}.{key}", "is set"


def _proc_mount(pod: dict):
    for group, c in containers(pod):
        if _sc(c).get("procMount") not in (None, "Default"):
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.procMount", f"is {_sc(c)['procMount']!r}"


def _seccomp_baseline(pod: dict):
    for where, sc, field in _contexts(pod, "seccompProfile"):
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield where, f"{field}.type", "is Unconfined"


def _sysctls(pod: dict):
    for s in _sc(pod["spec"]).get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            yield "pod", "spec.securityContext.sysctls[*].name", f"{s.get('name')!r} is not a safe sysctl"


def _volume_types(pod: dict):
    for v in pod["spec"].get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield "pod", "spec.volumes[*]", f"volume {v['name']} is {sorted(kinds - RESTRICTED_VOLUMES)}"


def _privilege_escalation(pod: dict):
    for group, c in containers(pod):
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            yield (
                f"container {c['name']}",
                f"spec.{group}[*].securityContext.allowPrivilegeEscalation",
                "is not false",
            )


def _non_root(pod: dict):
    pod_value = _sc(pod["spec"]).get("runAsNonRoot")
    for group, c in containers(pod):
        value = _sc(c).get("runAsNonRoot", pod_value)
        if value is not True:
            yield (
                f"container {c['name']}",
                f"spec.{group}[*].securityContext.runAsNonRoot",
                "is not true (nor spec.securityContext.runAsNonRoot)",
            )


def _non_root_user(pod: dict):
    for where, sc, field in _contexts(pod, "runAsUser"):
        if sc.get("runAsUser") == 0:
            yield where, field, "is 0"


def _seccomp_restricted(pod: dict):
    pod_type = (_sc(pod["spec"]).get("seccompProfile") or {}).get("type")
    for group, c in containers(pod):
        value = (_sc(c).get("seccompProfile") or {}).get("type", pod_type)
        if value not in ("RuntimeDefault", "Localhost"):
            yield (
                f"container {c['name']}",
                f"spec.{group}[*].securityContext.seccompProfile.type",
                f"is {value!r} (nor spec.securityContext.seccompProfile.type RuntimeDefault/Localhost)",
            )


def _restricted_capabilities(pod: dict):
    for group, c in containers(pod):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.capabilities.drop", "does not include ALL"
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            yield f"container {c['name']}", f"spec.{group}[*].securityContext.capabilities.add", f"adds {sorted(extra)}"


# (profile, control as the documentation names it, check)
RULES: tuple[tuple[str, str, Check], ...] = (
    (BASELINE, "HostProcess", _host_process),
    (BASELINE, "Host Namespaces", _host_namespaces),
    (BASELINE, "Privileged Containers", _privileged),
    (BASELINE, "Capabilities", _baseline_capabilities),
    (BASELINE, "HostPath Volumes", _host_path),
    (BASELINE, "Host Ports", _host_ports),
    (BASELINE, "AppArmor", _apparmor),
    (BASELINE, "SELinux", _selinux),
    (BASELINE, "/proc Mount Type", _proc_mount),
    (BASELINE, "Seccomp", _seccomp_baseline),
    (BASELINE, "Sysctls", _sysctls),
    (RESTRICTED, "Volume Types", _volume_types),
    (RESTRICTED, "Privilege Escalation", _privilege_escalation),
    (RESTRICTED, "Running as Non-root", _non_root),
    (RESTRICTED, "Running as Non-root user", _non_root_user),
    (RESTRICTED, "Seccomp", _seccomp_restricted),
    (RESTRICTED, "Capabilities", _restricted_capabilities),
)


def check(pod: dict[str, Any]) -> list[Violation]:
    return [
        Violation(profile, control, where, field, detail)
        for profile, control, rule in RULES
        for where, field, detail in rule(pod)
    ]


def level(pod: dict[str, Any]) -> str:
    """`restricted`, `baseline` or `privileged`: the strictest profile the pod meets."""
    profiles = {v.profile for v in check(pod)}
    return "privileged" if BASELINE in profiles else BASELINE if profiles else RESTRICTED


def container_levels(pod: dict[str, Any]) -> dict[str, str]:
    """{container name: the strictest profile its own fields and the pod's meet}."""
    violations = check(pod)
    pod_wide = {v.profile for v in violations if v.where == "pod"}
    out = {}
    for _, c in containers(pod):
        profiles = pod_wide | {v.profile for v in violations if v.where == f"container {c['name']}"}
        out[c["name"]] = "privileged" if BASELINE in profiles else BASELINE if profiles else RESTRICTED
    return out
