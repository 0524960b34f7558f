"""What every service process is to its launcher: a component that starts, stops and says whether it
is healthy; `serve` runs one until SIGTERM or SIGINT, then stops it (draining and committing). A
composition (embedded mode) is an ordered list of parts, started in order and stopped in reverse."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import ValidationError

from rvs.core.config import CommonSettings
from rvs.core.logs import setup_logging
from rvs.core.settings_flags import add_settings_flags, overrides

log = logging.getLogger("rvs")


class Component(Protocol):
    def start(self) -> None:
        """Start serving; returns once the component is ready (raises if it cannot start)."""

    def stop(self) -> None:
        """Finish or hand back the work in progress, release everything; safe after a failed start."""

    def healthy(self) -> bool:
        """Whether it is doing its work (its threads are running); False before start and after stop."""


def _nothing() -> None:
    pass


def _always() -> bool:
    return True


@dataclass
class Part:
    """One step of a composition as a Component: open the catalog, start the sampler..."""

    name: str
    start: Callable[[], None] = _nothing
    stop: Callable[[], None] = _nothing
    healthy: Callable[[], bool] = _always


class InOrder:
    """Parts started in order and stopped in reverse. A part whose start fails is stopped with those
    started before it (a stop is safe after a failed start), then the error is raised."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = list(parts)
        self._started: list[Part] = []

    def start(self) -> None:
        for part in self.parts:
            self._started.append(part)
            try:
                part.start()
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception:  # the parts before it are released all the same
                log.exception("stopping %s failed", part.name)

    def healthy(self) -> bool:
        return len(self._started) == len(self.parts) and all(p.healthy() for p in self.parts)

    def unhealthy(self) -> list[str]:
        """The parts started that are not healthy, for a log line."""
        return [p.name for p in self._started if not p.healthy()]


S = TypeVar("S", bound=CommonSettings)


C = TypeVar("C", bound=Component)
Until = Callable[[C, threading.Event], int]  # the work to wait for; the event is set by a signal


def run_until_signal(component: C, until: Until[C] | None = None) -> int:
    """Start `component`, wait for SIGTERM or SIGINT (or for `until` to return its exit status), stop it."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        component.start()
        if until is None:
            stop.wait()
            return 0
        return until(component, stop)
    finally:
        component.stop()


def build_settings(name: str, cls: type[S], args: argparse.Namespace) -> S | None:
    """The settings from the flags and the environment, or None after printing why they are invalid."""
    try:
        return cls(**overrides(args, cls))
    except ValidationError as exc:
        print(f"rvs {name}: invalid settings: {problems(exc)}", file=sys.stderr)
        return None


def problems(exc: ValidationError) -> str:
    """What is wrong with the settings, on one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())


def serve(name: str, settings: S, build: Callable[[S], C], until: Until[C] | None = None) -> int:
    """Run the component `build` makes from `settings` until a signal (or `until`); a start-up failure
    (no model, no Milvus, a model mismatch, a bad setting) is one line on stderr and exit status 1."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        return run_until_signal(build(settings), until)
    except (ValueError, RuntimeError) as exc:
        print(f"rvs {name}: {exc}", file=sys.stderr)
        return 1


def service_parser(
    name: str, description: str, cls: type[CommonSettings], add_help: bool = True
) -> argparse.ArgumentParser:
    """`rvs-<name>`'s flags: one per setting of `cls` (also `rvs <name>`'s, as a parent parser)."""
    parser = argparse.ArgumentParser(prog=f"rvs-{name}", description=description, add_help=add_help)
    add_settings_flags(parser, [cls])
    return parser


def service_main(name: str, cls: type[S], build: Callable[[S], Component], args: argparse.Namespace) -> int:
    """`rvs-<name>` once its flags are parsed: the settings, then `serve`."""
    settings = build_settings(name, cls, args)
    return 2 if settings is None else serve(name, settings, build)
