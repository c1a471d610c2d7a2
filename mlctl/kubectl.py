"""The only module that knows kubectl's command line: small named verbs over one runner.

Manifests that may hold Secret data go through 0600 temporary files (`apply_objects`), never
argv, stdin echoes or logs. Every verb takes the `helm.Target` the release lives in, so kubectl
and helm always talk to the same context and namespace.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from mlctl import poll, tools
from mlctl.errors import MlctlError
from mlctl.helm import Target


def binary() -> str:
    return tools.find_tool("kubectl")


def flags(target: Target) -> list[str]:
    """kubectl spells helm's --kube-context as --context."""
    return ["--namespace", target.namespace, *(["--context", target.context] if target.context else [])]


def _kubectl(
    target: Target, *args: str, timeout: float = 60, secrets: Sequence[str] = (), stdin: Path | None = None
) -> str:
    # After `--` everything belongs to the command run in the container (`kubectl exec`), so
    # kubectl's own flags go before it.
    cut = args.index("--") if "--" in args else len(args)
    argv = [binary(), *args[:cut], *flags(target), *args[cut:]]
    return tools.run(argv, timeout=timeout, secrets=secrets, stdin=stdin)


def _not_found(exc: tools.ToolError) -> bool:
    return "NotFound" in exc.stderr or "not found" in exc.stderr


def apply(target: Target, manifest: Path, secrets: Sequence[str] = (), timeout: float = 120) -> str:
    return _kubectl(target, "apply", "-f", str(manifest), timeout=timeout, secrets=secrets)


def apply_objects(target: Target, objects: Sequence[dict], secrets: Sequence[str] = (), timeout: float = 120) -> str:
    """`kubectl apply` a list of objects through a 0600 temporary file, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="mlctl-manifest-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(list(objects), f, sort_keys=False)
        return apply(target, Path(name), secrets=secrets, timeout=timeout)
    finally:
        Path(name).unlink(missing_ok=True)


def get_json(target: Target, kind: str, name: str, timeout: float = 60) -> dict | None:
    """The object as JSON, or None when it does not exist."""
    try:
        out = _kubectl(target, "get", kind, name, "--output", "json", timeout=timeout)
    except tools.ToolError as exc:
        if _not_found(exc):
            return None
        raise
    return json.loads(out)


def list_names(target: Target, kind: str, selector: str, timeout: float = 60) -> list[str]:
    out = _kubectl(target, "get", kind, "--selector", selector, "--output", "json", timeout=timeout)
    return [item["metadata"]["name"] for item in json.loads(out).get("items", [])]


def delete(target: Target, kind: str, name: str, wait: bool = True, timeout: float = 120) -> bool:
    """Delete one object (its pods too, for a Job); False when it was already gone."""
    try:
        _kubectl(
            target,
            "delete",
            kind,
            name,
            "--cascade=foreground",
            f"--wait={'true' if wait else 'false'}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
    except tools.ToolError as exc:
        if _not_found(exc):
            return False
        raise
    return True


def logs(target: Target, obj: str, container: str | None = None, tail: int | None = None, timeout: float = 60) -> str:
    """The container's log (stdout and stderr interleaved, as kubectl returns them); `obj` is
    `job/NAME` or `pod/NAME`."""
    return _kubectl(
        target,
        "logs",
        obj,
        *(["--container", container] if container else []),
        *([f"--tail={tail}"] if tail is not None else []),
        timeout=timeout,
    )


def wait(target: Target, obj: str, condition: str, timeout_s: int) -> str:
    return _kubectl(
        target, "wait", obj, f"--for=condition={condition}", f"--timeout={timeout_s}s", timeout=timeout_s + 30
    )


def wait_for(target: Target, obj: str, jsonpath: str, value: str, timeout_s: int) -> bool:
    """`kubectl wait OBJ --for=jsonpath=JSONPATH=VALUE`: True once the field has the value, False
    when it does not within `timeout_s` (or the object does not exist yet, or the wait fails:
    the caller reads the object to learn why)."""
    try:
        _kubectl(
            target,
            "wait",
            obj,
            f"--for=jsonpath={jsonpath}={value}",
            f"--timeout={timeout_s}s",
            timeout=timeout_s + 30,
        )
    except tools.ToolError:
        return False
    return True


def exec_(
    target: Target,
    pod: str,
    argv: Sequence[str],
    container: str | None = None,
    timeout: float = 120,
    stdin: Path | None = None,
) -> str:
    """Run argv in the pod; with `stdin` that file is its standard input (`kubectl exec -i`)."""
    return _kubectl(
        target,
        "exec",
        pod,
        *(["-i"] if stdin else []),
        *(["--container", container] if container else []),
        "--",
        *argv,
        timeout=timeout,
        stdin=stdin,
    )


def cp(target: Target, source: str, dest: str, timeout: float = 600) -> str:
    """`kubectl cp` (needs `tar` in the container); one side is `POD:/path`."""
    return _kubectl(target, "cp", source, dest, timeout=timeout)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def port_forward(target: Target, service: str, remote_port: int = 8000, timeout_s: float = 30) -> Iterator[int]:
    """Forward a free loopback port to `svc/SERVICE:REMOTE_PORT` while the block runs; yields the
    local port. The kubectl process is stopped on the way out, also on errors and Ctrl-C."""
    port = tools.free_port()
    argv = [
        binary(),
        "port-forward",
        f"svc/{service}",
        f"{port}:{remote_port}",
        "--address",
        "127.0.0.1",
        *flags(target),
    ]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:

            def opened() -> bool | None:
                if _accepts(port):
                    return True
                if proc.poll() is not None:
                    err.seek(0)
                    raise tools.ToolError(argv, proc.returncode, err.read())
                return None

            def timed_out() -> bool:
                raise MlctlError(
                    f"port-forward to svc/{service}:{remote_port} did not open 127.0.0.1:{port} within {timeout_s:.0f}s"
                )

            poll.until(opened, deadline=poll.deadline_in(timeout_s), every_s=0.1, on_timeout=timed_out)
            yield port
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
