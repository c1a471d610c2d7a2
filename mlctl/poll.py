"""Waiting, written once: poll a probe on a deadline, or retry a call a few times.

Every wait in mlctl is `until`: a SeldonDeployment becoming Available, a training Job finishing, a
port-forward opening, the local server answering, a process group exiting, a podman container
exiting or passing its readiness probes. The probe answers None for "not yet", a value for "done"
and raises for "this will never succeed"; the caller says what a timeout means (usually an error
that names the object and its last state, built only when needed).

Probes are spaced `every_s` apart counted from the start of each call, so a probe that blocks
(`kubectl wait --timeout=5s`) is not followed by a second idle wait. Tests replace `_clock` and
`_sleep` here to run every wait in no time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_clock = time.monotonic
_sleep = time.sleep


def deadline_in(seconds: float) -> float:
    """The `deadline` for `until` that lies `seconds` from now."""
    return _clock() + seconds


def until(
    probe: Callable[[], T | None],
    *,
    deadline: float,
    every_s: float,
    on_timeout: Callable[[], T],
) -> T:
    """Call `probe` until it returns something other than None and return that; once `deadline`
    (a `_clock` reading, see `deadline_in`) has passed, return `on_timeout()` instead, which
    usually raises. The probe runs at least once, even past the deadline."""
    while True:
        started = _clock()
        answer = probe()
        if answer is not None:
            return answer
        now = _clock()
        if now >= deadline:
            return on_timeout()
        pause = min(every_s - (now - started), deadline - now)
        if pause > 0:
            _sleep(pause)


def retry(call: Callable[[], T], *, attempts: int, every_s: float, retry_if: Callable[[Exception], bool]) -> T:
    """`call()`, again after `every_s` while it raises an exception that `retry_if` accepts, at most
    `attempts` times in all; the last exception (or one `retry_if` refuses) propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not retry_if(exc):
                raise
        _sleep(every_s)
    raise ValueError("attempts must be at least 1")
