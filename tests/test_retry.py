"""The one back-off loop every service retries with."""

from __future__ import annotations

import threading

import pytest

from rvs.core.retry import Backoff, Stopped


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"down ({self.calls})")
        return "done"


def test_pauses_double_up_to_the_cap_until_the_step_succeeds() -> None:
    pauses: list[float] = []
    step = Flaky(5)
    result = Backoff(first_s=0.001, max_s=0.004).run(step, ConnectionError, lambda _e, d: pauses.append(d))
    assert result == "done" and step.calls == 6
    assert pauses == [0.001, 0.002, 0.004, 0.004, 0.004]


def test_other_errors_are_not_retried() -> None:
    step = Flaky(1, ValueError)
    with pytest.raises(ValueError):
        Backoff(first_s=0.001).run(step, ConnectionError, lambda _e, _d: None)
    assert step.calls == 1


def test_gives_up_with_the_last_error_when_the_next_pause_would_pass_the_deadline() -> None:
    step = Flaky(1000)
    with pytest.raises(ConnectionError):
        Backoff(first_s=0.01, max_s=0.01).run(step, ConnectionError, lambda _e, _d: None, give_up_after_s=0.05)
    assert 2 <= step.calls <= 6


def test_stopping_ends_a_pause_at_once() -> None:
    stopping = threading.Event()

    def stop_on_first_retry(_exc: Exception, _delay: float) -> None:
        stopping.set()

    step = Flaky(1000)
    with pytest.raises(Stopped):
        Backoff(first_s=60).run(step, ConnectionError, stop_on_first_retry, stopping)
    assert step.calls == 1


def test_a_pause_grows_from_the_first_to_the_cap() -> None:
    backoff = Backoff(first_s=1.0, max_s=60.0)
    assert [backoff.grow(d) for d in (0.2, 1.0, 16.0, 40.0, 60.0)] == [1.0, 2.0, 32.0, 60.0, 60.0]
