"""`mlctl serve`: the spec's engine's real server on its trained artifact, in the foreground."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlctl import artifacts, poll
from mlctl.errors import MlctlError, UsageError
from mlctl.specload import load_spec
from mlctl.targets.local import server


@contextmanager
def serve(path: Path, port: int | None = None) -> Iterator[server.LocalServer]:
    """Start the server for the spec's artifact; stop it (whole process group) on exit."""
    spec = load_spec(path)
    artifact = artifacts.read_local(artifacts.artifact_dir(spec))
    if artifact is None:
        raise UsageError(
            f"no trained model for this spec yet ({artifacts.artifact_dir(spec)})",
            hint=f"run `mlctl train {path}` (or `mlctl apply {path}`) first",
        )
    port = port or spec.serving.local.port
    cfg = server.ServerConfig.for_spec(spec.serving, artifact.path, port, model_name=spec.name, package=spec.model)
    if not server.port_is_free(port):
        raise MlctlError(
            f"port {port} is already in use",
            hint="`mlctl delete SPEC` stops the server `mlctl apply` started, or pass --port",
        )
    srv = server.LocalServer(cfg).start()
    try:
        yield srv
    finally:
        srv.close()


def wait_until_interrupted(srv: server.LocalServer) -> None:
    """Block until Ctrl-C or SIGTERM, or until the server dies (an error, with its log tail)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:

        def stopped() -> bool | None:
            if srv.proc is not None and srv.proc.poll() is not None:
                raise MlctlError(f"the model server exited ({srv.proc.returncode})\n{srv.log_tail()}")
            return True if stop else None

        poll.until(stopped, deadline=math.inf, every_s=0.5, on_timeout=lambda: True)
    except KeyboardInterrupt:
        pass
