"""What every service process is to its launcher: a component that starts, stops and says whether it
is healthy; `serve` runs one until SIGTERM or SIGINT, then stops it (draining and committing)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
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


S = TypeVar("S", bound=CommonSettings)


def run_until_signal(component: Component) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        component.start()
        stop.wait()
    finally:
        component.stop()
    return 0


def build_settings(name: str, cls: type[S], args: argparse.Namespace) -> S | None:
    """The settings from the flags and the environment, or None after printing why they are invalid."""
    try:
        return cls(**overrides(args, cls))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"rvs {name}: invalid settings: {problems}", file=sys.stderr)
        return None


def serve(name: str, settings: S, build: Callable[[S], Component]) -> int:
    """Run the component `build` makes from `settings` until a signal; a start-up failure (no model, no
    Milvus, a model mismatch, a bad setting) is one line on stderr and exit status 1."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        return run_until_signal(build(settings))
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
