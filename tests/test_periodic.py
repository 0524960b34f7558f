"""The background jobs' loop: a pass that raises never ends the job, and a stop ends it at once."""

from __future__ import annotations

import threading
import time

from rvs.core.periodic import Periodic


class Away(Exception):
    pass


def test_a_failed_pass_does_not_end_the_job_and_stop_ends_it_at_once() -> None:
    passes: list[float] = []
    three = threading.Event()

    def run() -> None:
        passes.append(time.monotonic())
        if len(passes) == 3:
            three.set()
        raise (Away("the store is away") if len(passes) == 1 else RuntimeError("a bug"))

    job = Periodic("test", 0.05, run, at_start=True, retried=(Away,))
    started = time.monotonic()
    job.start()
    assert three.wait(5), passes
    assert passes[0] - started < 0.04  # at start, not after an interval
    t0 = time.monotonic()
    job.stop()
    assert time.monotonic() - t0 < 1 and not job._thread.is_alive()  # type: ignore[union-attr]


def test_without_at_start_the_first_pass_waits_an_interval_and_a_stop_before_it_runs_none() -> None:
    passes: list[float] = []
    job = Periodic("test", 30, lambda: passes.append(time.monotonic()))
    job.start()
    time.sleep(0.1)
    job.stop()
    assert passes == []
