"""`rvs watch`: the watch list (add a person from photos, list, delete) and the alerts as they come
(WatchAlerts, followed again after the query service restarts; an alert is printed once)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToJson

from rvs.cli.clients import Rpc, calling, json_text
from rvs.v1 import rvs_pb2 as pb

# action -> (what its positional arguments are, how many at least, how many at most; None: any)
_ARGS = {
    "add": ("NAME PHOTO...", 2, None),
    "list": ("", 0, 0),
    "delete": ("WATCH_ID", 1, 1),
    "alerts": ("", 0, 0),
}
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RECONNECT_S = 2.0


def since_ms(text: str, now_ms: int) -> int:
    """--since: a time ago (90s, 10m, 2h, 1d), an ISO 8601 time (UTC unless it says), or unix ms."""
    if m := _AGO.fullmatch(text.strip()):
        return now_ms - round(float(m[1]) * _UNIT_S[m[2]] * 1000)
    if text.strip().isdigit():
        return int(text)
    when = datetime.fromisoformat(text.strip())
    return round((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def run(args: argparse.Namespace) -> int:
    usage, least, most = _ARGS[args.action]
    if not least <= len(args.args) <= (most if most is not None else len(args.args)):
        print(f"rvs watch {args.action}: give {usage or 'no arguments'}", file=sys.stderr)
        return 2
    if args.action == "add":
        try:
            images = [Path(p).read_bytes() for p in args.args[1:]]
        except OSError as exc:
            print(f"rvs watch add: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        request = pb.AddWatchRequest(
            name=args.args[0], images=images, kind=pb.WATCH_KIND_MUTE if args.mute else pb.WATCH_KIND_ALERT
        )
        if args.threshold is not None:
            request.threshold = args.threshold
        return calling("watch", args, lambda rpc: _show(args, rpc.add_watch(request)))
    if args.action == "alerts":
        try:
            since = since_ms(args.since, _now_ms()) if args.since else _now_ms()
        except ValueError:
            print(
                f"rvs watch alerts: --since {args.since!r} is not 10m, 2h, 1d, an ISO time or unix ms", file=sys.stderr
            )
            return 2
        return calling("watch", args, lambda rpc: _follow(args, rpc, since))

    def delete(rpc: Rpc) -> None:
        rpc.delete_watch(args.args[0])
        print(f"deleted {args.args[0]}")

    actions: dict[str, Callable[[Rpc], None]] = {"list": lambda rpc: _list(args, rpc.list_watches()), "delete": delete}
    return calling("watch", args, actions[args.action])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _show(args: argparse.Namespace, watch: pb.Watch) -> None:
    print(json_text(watch) if args.json else _line(watch))


def _list(args: argparse.Namespace, listed: pb.ListWatchesResponse) -> None:
    if args.json:
        print(json_text(listed))
        return
    print(f"{len(listed.watches)} watch entries")
    for watch in listed.watches:
        print(_line(watch))


def _line(watch: pb.Watch) -> str:
    kind = "mute" if watch.kind == pb.WATCH_KIND_MUTE else "alert"
    threshold = f"threshold {watch.threshold:.2f}" if watch.HasField("threshold") else "the model's threshold"
    models = ", ".join(watch.models)
    return f"{watch.watch_id}  {watch.name}: {kind}, {threshold}, {watch.photos} photo(s), models {models}"


def _follow(args: argparse.Namespace, rpc: Rpc, since: int) -> None:
    """Print alerts until Ctrl-C; after a lost connection, ask again from the last one's time (each
    alert printed once)."""
    seen: set[str] = set()
    while True:
        request = pb.WatchAlertsRequest(since_ms=since, watch_ids=args.watch_id or [], source_prefix=args.source or "")
        try:
            for alert in rpc.watch_alerts(request):
                if alert.alert_id in seen:
                    continue
                seen.add(alert.alert_id)
                since = max(since, alert.raised_at_ms)
                print(MessageToJson(alert, indent=None) if args.json else alert_line(alert), flush=True)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            print(f"rvs watch alerts: the query service is away; trying again in {_RECONNECT_S:.0f} s", file=sys.stderr)
        time.sleep(_RECONNECT_S)


def alert_line(alert: pb.Alert) -> str:
    seen = datetime.fromtimestamp(alert.seen_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    who = alert.name if alert.kind == pb.ALERT_KIND_WATCH else "unknown person"
    s = alert.time_ms / 1000
    box = alert.box
    return (
        f"{seen}Z  {who}  score {alert.score:.3f}  {alert.source}  {alert.uri or alert.media_id} at "
        f"{int(s // 60)}:{s % 60:04.1f}  box ({box.x1:.0f},{box.y1:.0f})-({box.x2:.0f},{box.y2:.0f})  {alert.alert_id}"
    )
