"""The local target: one model server per spec, running in the background on this machine.

`mlctl apply` (target local) starts it detached and records it in `<output>/../run/<name>.json`;
a second apply with the same artifact and serving settings finds it alive and changes nothing;
`mlctl status` reads the record; `mlctl delete` stops the process group. The server itself is
the engine's real one, `seldon-core-microservice` or KServe's ModelServer (mlctl/targets/local/server.py
starts it).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from mlctl import poll
from mlctl.artifacts import LocalArtifact as Artifact
from mlctl.errors import MlctlError
from mlctl.spec import Spec
from mlctl.targets.local import server


@dataclass(frozen=True)
class LocalState:
    pid: int
    url: str
    port: int
    sha256: str
    artifact: str
    settings: str  # hash of the serving settings the process was started with
    log: str
    started: float

    def as_dict(self) -> dict:
        return asdict(self)


def _run_dir(spec: Spec) -> Path:
    return spec.training.output.parent / "run"


def _state_file(spec: Spec) -> Path:
    return _run_dir(spec) / f"{spec.name}.json"


def _settings(spec: Spec) -> str:
    s = spec.serving
    payload = [s.workers, s.threads, s.torch_threads, s.precision, s.local.port, s.local.host, s.rest_timeout_ms]
    if s.engine != "seldon":  # the Seldon record's hash stays what it was
        payload += [s.engine, spec.name]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    """The recorded server still runs: the pid exists and (a recycled pid is not ours) is a model
    server's (Seldon's binary, or the KServe runtime's module)."""
    try:
        return any("seldon" in part or server.KSERVE_MODULE in part for part in psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # someone else's process: alive, and not provably ours
        return True


def current(spec: Spec) -> LocalState | None:
    """The recorded server if its process is still alive; a stale record is removed."""
    file = _state_file(spec)
    try:
        state = LocalState(**json.loads(file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not _alive(state.pid):
        file.unlink(missing_ok=True)
        return None
    return state


def start(spec: Spec, artifact: Artifact, ready_timeout: float = 120) -> LocalState:
    """Start the server detached (its own session, output to a log file) and wait until it
    is ready (Seldon: a real prediction, /health/status; KServe: the model's ready endpoint)."""
    run_dir = _run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    port = spec.serving.local.port
    if not server.port_is_free(port):
        raise MlctlError(
            f"port {port} is already in use", hint="stop what uses it, or set serving.local.port in the spec"
        )
    cfg = server.ServerConfig.for_spec(spec.serving, artifact.path, port, model_name=spec.name, package=spec.model)
    log = run_dir / f"{spec.name}.log"
    # Not used as a context manager: the server is meant to outlive this command.
    srv = server.LocalServer(cfg, start_timeout=ready_timeout, log_path=log).start()
    assert srv.proc is not None
    state = LocalState(
        srv.proc.pid, srv.url, port, artifact.sha256, str(artifact.path), _settings(spec), str(log), time.time()
    )
    _state_file(spec).write_text(json.dumps(state.as_dict(), indent=2))
    return state


def serves(state: LocalState | None, spec: Spec, artifact: Artifact | None) -> bool:
    """Whether `state` is a live server of this artifact with the spec's serving settings."""
    return (
        state is not None
        and artifact is not None
        and state.sha256 == artifact.sha256
        and state.settings == _settings(spec)
    )


def ensure(spec: Spec, artifact: Artifact) -> tuple[LocalState, str]:
    """The running server for this artifact and settings: `up to date`, `started` or `restarted`."""
    state = current(spec)
    if state is not None and serves(state, spec, artifact):
        return state, "up to date"
    action = "started"
    if state is not None:
        stop(spec)
        action = "restarted"
    return start(spec, artifact), action


def stop(spec: Spec) -> LocalState | None:
    """Stop the recorded server (its whole process group); None when none was running."""
    state = current(spec)
    if state is not None:
        _terminate(state.pid)
    _state_file(spec).unlink(missing_ok=True)
    return state


def _terminate(pid: int, grace: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def gone() -> bool | None:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        return None

    if poll.until(gone, deadline=poll.deadline_in(grace), every_s=0.1, on_timeout=lambda: False):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
