"""Run the real model server locally: Seldon Core v1's (seldon-core-microservice) or KServe's.

Each server lives in its own environment (.venv-serve: seldon-core pins old Flask/click;
.venv-kserve: the KServe SDK), so mlctl starts it as a subprocess: argv built here, its own
process group so every worker stops with it, readiness = each path of `readiness_paths` answering
200 in turn (Seldon: `/health/ping`, then `/health/status`, a real prediction in a worker;
KServe: `/v2/health/live`, then the model's `/v2/models/<name>/ready`). Nothing here imports torch,
seldon_core or kserve.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import psutil

from mlctl import poll
from mlctl.errors import MlctlError
from mlctl.tools import PROJECT_ROOT, free_port
from runtime.settings import DEFAULTS, PACKAGE_ENV, ServingSettings

if TYPE_CHECKING:
    from mlctl.spec import ServingSpec

MODEL_CLASS = "runtime.seldon.Model"
SERVER_BIN = "seldon-core-microservice"
ENV_SERVER_BIN = "MLCTL_SERVE_BIN"
KSERVE_MODULE = "runtime.kserve_server"
ENV_KSERVE_PYTHON = "MLCTL_KSERVE_PYTHON"
LOG_TAIL_LINES = 40


class ServerError(MlctlError):
    """The local model server could not be found, started or stopped."""


@dataclass(frozen=True)
class ServerConfig:
    """How to run one local server."""

    model_dir: Path
    http_port: int = 0
    """0 picks a free port."""
    grpc_port: int = 0
    metrics_port: int = 0
    workers: int = DEFAULTS.workers
    threads: int = DEFAULTS.threads
    torch_threads: int = DEFAULTS.torch_threads
    precision: str = DEFAULTS.precision
    """int8 or float32 (runtime/settings.py)."""
    model_class: str = MODEL_CLASS
    host: str = "127.0.0.1"
    """Where clients reach it; both servers bind 0.0.0.0."""
    extra_env: dict[str, str] = field(default_factory=dict)
    engine: str = "seldon"
    """seldon (seldon-core-microservice) or kserve (`python -m runtime.kserve_server`)."""
    model_name: str = "model"
    """The model's name in KServe's V1/V2 paths."""
    package: Path | None = None
    """The model package's folder (its model.yaml); None: the runtime's default."""

    @classmethod
    def for_spec(cls, serving: ServingSpec, model_dir: Path, port: int, model_name: str, package: Path) -> ServerConfig:
        """The spec's serving settings (engine, workers, threads, precision, host) on `port`."""
        return cls(
            model_dir=model_dir,
            package=package,
            http_port=port,
            workers=serving.workers,
            threads=serving.threads,
            torch_threads=serving.torch_threads,
            precision=serving.precision,
            host=serving.local.host,
            engine=serving.engine,
            model_name=model_name,
        )

    @property
    def readiness_paths(self) -> tuple[str, ...]:
        """The paths that answer 200 once the server serves, in the order to ask them."""
        if self.engine == "kserve":
            return ("/v2/health/live", f"/v2/models/{self.model_name}/ready")
        return ("/health/ping", "/health/status")


def port_is_free(port: int) -> bool:
    """Whether the server could bind `port` now (on all interfaces, as the wrapper does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As gunicorn does: connections of a stopped server lingering in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def server_binary() -> str:
    """Find seldon-core-microservice: $MLCTL_SERVE_BIN, .venv-serve/bin, then PATH."""
    tried = []
    explicit = os.environ.get(ENV_SERVER_BIN)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        tried.append(f"${ENV_SERVER_BIN}={explicit} (not an executable file)")
    local = PROJECT_ROOT / ".venv-serve" / "bin" / SERVER_BIN
    if os.access(local, os.X_OK):
        return str(local)
    tried.append(str(local))
    on_path = shutil.which(SERVER_BIN)
    if on_path:
        return on_path
    tried.append(f"{SERVER_BIN} on PATH")
    raise ServerError(
        "seldon-core-microservice not found; tried: " + "; ".join(tried),
        hint="create the serving environment with scripts/setup.sh (it makes .venv-serve), "
        f"or set {ENV_SERVER_BIN} to the binary",
    )


def kserve_python() -> str:
    """The Python that runs the KServe server: $MLCTL_KSERVE_PYTHON, or .venv-kserve's."""
    explicit = os.environ.get(ENV_KSERVE_PYTHON)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise ServerError(f"${ENV_KSERVE_PYTHON}={explicit} is not an executable file")
    local = PROJECT_ROOT / ".venv-kserve" / "bin" / "python"
    if os.access(local, os.X_OK):
        return str(local)
    raise ServerError(
        f"the KServe runtime's Python was not found at {local}",
        hint=f"create it with scripts/setup.sh (it makes .venv-kserve), or set {ENV_KSERVE_PYTHON}",
    )


def runtime_parent() -> Path:
    """The folder holding the `runtime` package the servers run (shipped with mlctl)."""
    import runtime

    return Path(runtime.__file__).resolve().parent.parent


def server_argv(cfg: ServerConfig, binary: str | None = None) -> list[str]:
    """The exact command line (ports must be concrete)."""
    if cfg.engine == "kserve":
        return [
            binary or kserve_python(), "-m", KSERVE_MODULE,
            f"--model_name={cfg.model_name}",
            f"--http_port={cfg.http_port}",
            f"--grpc_port={cfg.grpc_port}",
            f"--workers={cfg.workers}",
            "--enable_grpc=false",
        ]  # fmt: skip
    return [
        binary or server_binary(),
        cfg.model_class,
        "--service-type", "MODEL",
        "--http-port", str(cfg.http_port),
        "--grpc-port", str(cfg.grpc_port),
        "--metrics-port", str(cfg.metrics_port),
    ]  # fmt: skip


def server_env(cfg: ServerConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server runs with: its settings (runtime/settings.py, the one channel the
    server and the wrapper read, as in the cluster), no gRPC server."""
    env = dict(os.environ if base is None else base)
    parents = [str(runtime_parent())]
    if cfg.package is not None:
        parents.insert(0, str(Path(cfg.package).resolve().parent))
        env[PACKAGE_ENV] = str(Path(cfg.package).resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*parents, env.get("PYTHONPATH", "")) if p)
    settings = ServingSettings(
        model_uri=str(Path(cfg.model_dir).resolve()),
        precision=cfg.precision,
        torch_threads=cfg.torch_threads,
        workers=cfg.workers,
        threads=cfg.threads,
        # 0 keeps the wrapper from forking a gRPC process that loads the model a second time.
        grpc_workers=0,
    )
    env.update(settings.to_env())
    env.update(
        # Responses carry data and tags; custom metrics go to the /metrics port only.
        INCLUDE_METRICS_IN_CLIENT_RESPONSE="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(cfg.extra_env)
    return env


class LocalServer:
    """A running model server (either engine); use as a context manager.

    >>> with LocalServer(ServerConfig(model_dir=Path("out"))) as srv:   # doctest: +SKIP
    ...     predict_image(srv.url, "seven.png")
    """

    def __init__(
        self,
        cfg: ServerConfig,
        *,
        start_timeout: float = 90.0,
        log_path: Path | None = None,
        readiness: tuple[str, ...] | None = None,
    ):
        ports = {k: getattr(cfg, k) or free_port() for k in ("http_port", "grpc_port", "metrics_port")}
        self.cfg = ServerConfig(**{**cfg.__dict__, **ports})
        self.start_timeout = start_timeout
        self.log_path = log_path
        self.readiness = readiness or self.cfg.readiness_paths
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.ready_after_s: float | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.http_port}"

    @property
    def metrics_url(self) -> str:
        port = self.cfg.http_port if self.cfg.engine == "kserve" else self.cfg.metrics_port
        return f"http://{self.cfg.host}:{port}/metrics"

    @property
    def argv(self) -> list[str]:
        return server_argv(self.cfg)

    def start(self) -> LocalServer:
        if not (Path(self.cfg.model_dir) / "metadata.json").is_file():
            raise ServerError(
                f"{self.cfg.model_dir} holds no metadata.json",
                hint="point at a folder the model's training command wrote (its --out DIR)",
            )
        argv = self.argv
        # Append mode: the server writes through the same open file (its inherited descriptor),
        # so our seeks in log_text() must never move where its next line lands.
        if self.log_path is not None:
            self.log_path.write_bytes(b"")
            self._log = open(self.log_path, "a+b")
        else:
            self._log = tempfile.TemporaryFile(mode="a+b")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            env=server_env(self.cfg),
            cwd=str(Path(self.cfg.package).resolve().parent if self.cfg.package else runtime_parent()),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_after_s = time.monotonic() - self.started_at
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = poll.deadline_in(self.start_timeout)
        for path in self.readiness:

            def answers(path: str = path) -> bool | None:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise ServerError(
                        f"the model server exited with status {self.proc.returncode} while starting\n"
                        + self.log_tail(),
                        hint="the lines above are the end of its log",
                    )
                return True if _get_ok(self.url + path) else None

            def timed_out(path: str = path) -> bool:
                raise ServerError(
                    f"the model server did not answer {path} within {self.start_timeout:.0f} s\n" + self.log_tail()
                )

            poll.until(answers, deadline=deadline, every_s=0.1, on_timeout=timed_out)

    def log_text(self) -> str:
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def pids(self) -> list[int]:
        """Process ids of the server's tree (parent, gunicorn workers, metrics and gRPC servers)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return sorted([root.pid, *(c.pid for c in root.children(recursive=True))])
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        # Workers can outlive a parent that died first; sweep the group either way.
        _signal_group(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False
