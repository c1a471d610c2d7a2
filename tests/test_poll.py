"""mlctl.poll: the one wait loop and the one retry, on a clock that moves only when told."""

from __future__ import annotations

import pytest

from mlctl import poll
from tests.helpers import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(poll, "_clock", fake)
    monkeypatch.setattr(poll, "_sleep", fake.sleep)
    return fake


def answers(*values, clock: FakeClock | None = None, takes: float = 0.0):
    """A probe that returns `values` in turn, each call taking `takes` seconds of the clock."""
    it = iter(values)

    def probe():
        if clock is not None:
            clock.now += takes
        return next(it)

    return probe


def never():
    raise AssertionError("on_timeout called")


def test_until_returns_the_first_answer_and_sleeps_between_probes(clock):
    got = poll.until(answers(None, None, "ready"), deadline=poll.deadline_in(60), every_s=5, on_timeout=never)
    assert got == "ready" and clock.sleeps == [5, 5]


def test_falsy_answers_other_than_none_end_the_wait(clock):
    assert poll.until(answers(0), deadline=10, every_s=1, on_timeout=never) == 0
    assert poll.until(answers(False), deadline=10, every_s=1, on_timeout=never) is False


def test_a_probe_that_blocks_is_not_followed_by_a_second_wait(clock):
    # Each call takes 3 s of a 5 s spacing: the loop sleeps the 2 s left, not 5.
    probe = answers(None, None, True, clock=clock, takes=3)
    assert poll.until(probe, deadline=poll.deadline_in(60), every_s=5, on_timeout=never) is True
    assert clock.sleeps == [2, 2] and clock.now == 13
    probe = answers(None, True, clock=clock, takes=7)
    poll.until(probe, deadline=poll.deadline_in(60), every_s=5, on_timeout=never)
    assert clock.sleeps == [2, 2]  # a call longer than the spacing is followed at once


def test_timeout_probes_once_more_at_the_deadline_then_asks_on_timeout(clock):
    calls = []

    def probe():
        calls.append(clock.now)

    assert poll.until(probe, deadline=poll.deadline_in(12), every_s=5, on_timeout=lambda: "late") == "late"
    assert calls == [0, 5, 10, 12] and clock.sleeps == [5, 5, 2]


def test_the_probe_runs_once_even_past_the_deadline(clock):
    clock.now = 100
    assert poll.until(answers("done"), deadline=50, every_s=1, on_timeout=never) == "done"


def test_an_error_from_the_probe_ends_the_wait(clock):
    def probe():
        raise RuntimeError("Failed")

    with pytest.raises(RuntimeError, match="Failed"):
        poll.until(probe, deadline=poll.deadline_in(60), every_s=5, on_timeout=never)
    assert clock.sleeps == []


def test_on_timeout_may_raise(clock):
    def timed_out():
        raise TimeoutError("still Creating")

    with pytest.raises(TimeoutError, match="still Creating"):
        poll.until(lambda: None, deadline=poll.deadline_in(3), every_s=1, on_timeout=timed_out)


def flaky(*outcomes):
    """A call that raises or returns each of `outcomes` in turn."""
    it = iter(outcomes)

    def call():
        outcome = next(it)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return call


def test_retry_retries_what_retry_if_accepts(clock):
    call = flaky(ConnectionError("refused"), ConnectionError("refused"), "answer")
    got = poll.retry(call, attempts=5, every_s=2, retry_if=lambda e: isinstance(e, ConnectionError))
    assert got == "answer" and clock.sleeps == [2, 2]


def test_retry_gives_up_after_the_last_attempt(clock):
    call = flaky(*[ConnectionError(str(n)) for n in range(1, 4)])
    with pytest.raises(ConnectionError, match="^3$"):
        poll.retry(call, attempts=3, every_s=2, retry_if=lambda e: True)
    assert clock.sleeps == [2, 2]


def test_retry_stops_at_an_error_retry_if_refuses(clock):
    call = flaky(ConnectionError("refused"), ValueError("400 bad image"), "never reached")
    with pytest.raises(ValueError, match="400"):
        poll.retry(call, attempts=5, every_s=2, retry_if=lambda e: isinstance(e, ConnectionError))
    assert clock.sleeps == [2]


def test_retry_needs_an_attempt(clock):
    with pytest.raises(ValueError, match="at least 1"):
        poll.retry(lambda: "x", attempts=0, every_s=1, retry_if=lambda e: True)
