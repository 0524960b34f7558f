"""The gRPC clients of the query service: `rvs search`, `rvs status` and `rvs reindex`, with their output.

Every one connects the same way (`--target`, TLS with `--tls`/`--tls-ca`, the bearer token of
`--token` or RVS_AUTH_TOKEN) and says what went wrong the same way: `rvs <command>: CODE [REASON]:
message` on stderr, exit status 1."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict, MessageToJson
from google.protobuf.message import Message

from rvs.cli import status_view
from rvs.core.instants import parse_instant, show_instant
from rvs.core.media.kinds import KIND_FILTERS, media_kind
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

# A person's id (rvs.query.people.directory): `rvs search --person` takes an id or a name.
PERSON_ID = re.compile(r"person-[0-9a-f]{16}")


def _rpc_error(exc: Any) -> str:
    from grpc_status import rpc_status

    from rvs.core.api_errors import ERROR_DOMAIN

    reason = ""
    status = rpc_status.from_call(exc)
    if status is not None:
        from google.rpc import error_details_pb2

        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                reason = f" [{info.reason}]"
    return f"{exc.code().name}{reason}: {exc.details()}"


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to the query service, over TLS when asked for."""
    if not (args.tls or args.tls_ca):
        return grpc.insecure_channel(args.target)
    root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    return grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root_certificates=root))


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The bearer token, sent with every call when one is given."""
    token = args.token or os.environ.get("RVS_AUTH_TOKEN")
    return (("authorization", f"Bearer {token}"),) if token else ()


@dataclass
class Rpc:
    """The query service's RPCs, each with the command's deadline and token."""

    stub: rvs_pb2_grpc.SearchServiceStub
    timeout: float
    metadata: tuple[tuple[str, str], ...]

    def search(self, request: pb.SearchRequest) -> pb.SearchResponse:
        return self.stub.Search(request, timeout=self.timeout, metadata=self.metadata)

    def search_by_video(self, request: pb.SearchByVideoRequest) -> pb.SearchByVideoResponse:
        return self.stub.SearchByVideo(request, timeout=self.timeout, metadata=self.metadata)

    def list_media(self, request: pb.ListMediaRequest) -> pb.ListMediaResponse:
        return self.stub.ListMedia(request, timeout=self.timeout, metadata=self.metadata)

    def reindex(self, request: pb.ReindexRequest) -> pb.ReindexStatus:
        return self.stub.Reindex(request, timeout=self.timeout, metadata=self.metadata)

    def get_reindex(self) -> pb.ReindexStatus:
        return self.stub.GetReindex(pb.GetReindexRequest(), timeout=self.timeout, metadata=self.metadata)

    def list_people(self, request: pb.ListPeopleRequest) -> pb.ListPeopleResponse:
        return self.stub.ListPeople(request, timeout=self.timeout, metadata=self.metadata)

    def get_person(self, request: pb.GetPersonRequest) -> pb.GetPersonResponse:
        return self.stub.GetPerson(request, timeout=self.timeout, metadata=self.metadata)

    def update_person(self, request: pb.UpdatePersonRequest) -> pb.Person:
        return self.stub.UpdatePerson(request, timeout=self.timeout, metadata=self.metadata)

    def merge_people(self, request: pb.MergePeopleRequest) -> pb.Person:
        return self.stub.MergePeople(request, timeout=self.timeout, metadata=self.metadata)

    def move_to_person(self, request: pb.MoveToPersonRequest) -> pb.Person:
        return self.stub.MoveToPerson(request, timeout=self.timeout, metadata=self.metadata)

    def add_watch(self, request: pb.AddWatchRequest) -> pb.Watch:
        return self.stub.AddWatch(request, timeout=self.timeout, metadata=self.metadata)

    def list_watches(self) -> pb.ListWatchesResponse:
        return self.stub.ListWatches(pb.ListWatchesRequest(), timeout=self.timeout, metadata=self.metadata)

    def delete_watch(self, watch_id: str) -> pb.DeleteWatchResponse:
        request = pb.DeleteWatchRequest(watch_id=watch_id)
        return self.stub.DeleteWatch(request, timeout=self.timeout, metadata=self.metadata)

    def watch_alerts(self, request: pb.WatchAlertsRequest) -> Iterator[pb.Alert]:
        """Until cancelled: no deadline."""
        return self.stub.WatchAlerts(request, metadata=self.metadata)


def calling(command: str, args: argparse.Namespace, body: Callable[[Rpc], None]) -> int:
    """Run `body` with the RPCs; an RPC error is `rvs <command>: ...` on stderr (status 1), Ctrl-C 130."""
    with _channel(args) as channel:
        try:
            body(Rpc(rvs_pb2_grpc.SearchServiceStub(channel), args.timeout, _metadata(args)))
        except grpc.RpcError as exc:
            print(f"rvs {command}: {_rpc_error(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _fmt_time(ms: int) -> str:
    s = ms / 1000
    return f"{int(s // 60)}:{s % 60:04.1f}"


def search(args: argparse.Namespace) -> int:
    named = [n for n in (args.photo, args.face_id, args.track_id, args.person) if n]
    if len(named) != 1:
        print("rvs search: give one of PHOTO (or a clip), --face-id, --track-id, --person", file=sys.stderr)
        return 2
    # What a photo search and a clip search share: the threshold, the filters and top_k.
    options: dict[str, Any] = {
        "top_k": args.top_k,
        "kinds": KIND_FILTERS[args.kinds],
        "source_prefix": args.source or "",
    }
    if args.min_score is not None:
        options["min_score"] = args.min_score
    try:
        when = _when(args)
    except ValueError as exc:
        print(f"rvs search: {exc}", file=sys.stderr)
        return 2
    request = pb.SearchRequest(
        **options, **when, rejected_face_ids=args.reject_face, rejected_track_ids=args.reject_track
    )
    if args.face is not None:
        request.face_index = args.face
    if args.face_id:
        request.face_id = args.face_id
    elif args.track_id:
        request.track_id = args.track_id
    elif args.person:
        if PERSON_ID.fullmatch(args.person):
            request.person_id = args.person
        else:
            request.person_name = args.person
    else:
        try:
            data = Path(args.photo).read_bytes()
        except OSError as exc:
            print(f"rvs search: cannot read {args.photo}: {exc.strerror}", file=sys.stderr)
            return 2
        if media_kind(args.photo) == pb.MEDIA_KIND_VIDEO:
            if when:
                print("rvs search: --newest, --after and --before are for photos, not clips", file=sys.stderr)
                return 2
            clip = pb.SearchByVideoRequest(video=data, **options)
            return calling("search", args, lambda rpc: _clip(rpc, clip, args.json))
        request.image = data

    def body(rpc: Rpc) -> None:
        response = rpc.search(request)
        if args.json:
            print(json_text(response))
        else:
            print_matches(response)

    return calling("search", args, body)


def _when(args: argparse.Namespace) -> dict[str, Any]:
    """The order and the time window of --newest, --after and --before (ValueError: not a time)."""
    when: dict[str, Any] = {"order": pb.SEARCH_ORDER_NEWEST} if args.newest else {}
    if args.after:
        when["seen_after_ms"] = parse_instant(args.after)
    if args.before:
        when["seen_before_ms"] = parse_instant(args.before)
    return when


def json_text(message: Message) -> str:
    return MessageToJson(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=2)


def _clip(rpc: Rpc, request: pb.SearchByVideoRequest, as_json: bool) -> None:
    response = rpc.search_by_video(request)
    if as_json:
        print(json_text(response))
        return
    print(
        f"{response.tracks_found} person(s) in the clip ({response.samples} samples); "
        f"model {response.model}, min_score {response.min_score:.2f}"
    )
    for k, track in enumerate(response.tracks):
        print(f"\nPerson {k + 1}: {_fmt_time(track.start_ms)} - {_fmt_time(track.end_ms)} in the clip")
        print_hits(track.answer)


def print_matches(response: pb.SearchResponse) -> None:
    faces = response.query_faces
    if faces:
        used = faces[response.used_face_index]
        print(
            f"{len(faces)} face(s) in the query; searched face {response.used_face_index} at "
            f"({used.box.x1:.0f},{used.box.y1:.0f})-({used.box.x2:.0f},{used.box.y2:.0f}); "
            f"model {response.model}, min_score {response.min_score:.2f}"
        )
    else:
        print(f"Searched with an indexed face; model {response.model}, min_score {response.min_score:.2f}")
    print_hits(response)


def print_hits(response: pb.SearchResponse) -> None:
    if not response.matched:
        print("No match: nobody in the index scores above the threshold.")
        return
    if response.images:
        print(f"\nPhotos ({len(response.images)})")
        print(f"  {'score':>6}  file  [face id]")
        for img in response.images:
            print(f"  {img.score:6.3f}  {img.uri}  [{img.face_id}]")
    if response.videos:
        print(f"\nVideos ({len(response.videos)})")
        for v in response.videos:
            stream = f"  stream {v.stream}" if v.stream else ""
            print(f"  {v.best_score:6.3f}  {v.uri}  (length {_fmt_time(v.duration_ms)}){stream}")
            for seg in v.segments:
                print(
                    f"          {_fmt_time(seg.start_ms)} - {_fmt_time(seg.end_ms)}  best {seg.best_score:.3f}"
                    f" at {_fmt_time(seg.best_time_ms)}, track {seg.track_score:.3f} over {seg.samples} samples"
                    f"  [track {seg.track_id}]"
                )
                if seg.start_at_ms:
                    print(f"          seen {show_instant(seg.start_at_ms)} - {show_instant(seg.end_at_ms)}")


def _all_media(rpc: Rpc) -> Callable[[], list[pb.Media]]:
    def fetch() -> list[pb.Media]:
        media: list[pb.Media] = []
        token = ""
        while True:
            page = rpc.list_media(pb.ListMediaRequest(page_size=500, page_token=token))
            media.extend(page.media)
            token = page.next_page_token
            if not token:
                return media

    return fetch


def _reindex_or_none(rpc: Rpc) -> Callable[[], pb.ReindexStatus | None]:
    def fetch() -> pb.ReindexStatus | None:
        try:
            return rpc.get_reindex()
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # no catalog, or an older server
                return None
            raise

    return fetch


def status(args: argparse.Namespace) -> int:
    from rich.console import Console

    def body(rpc: Rpc) -> None:
        fetch, fetch_reindex = _all_media(rpc), _reindex_or_none(rpc)
        if args.json:
            rows = [
                MessageToDict(m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                for m in fetch()
            ]
            print(json.dumps(rows, indent=2))
        elif sys.stdout.isatty() and not args.once:
            status_view.live(fetch, Console(), args.interval, fetch_reindex)
        elif args.follow:
            status_view.follow_lines(fetch, lambda line: print(line, flush=True), args.interval, fetch_reindex)
        else:
            status_view.print_table(fetch(), print, fetch_reindex())

    return calling("status", args, body)


def reindex(args: argparse.Namespace) -> int:
    """Start a reindex into --model (or show the index's state), and with --wait follow it until the
    switch. Searches keep answering from the current model meanwhile."""

    def show(r: pb.ReindexStatus) -> None:
        if args.json:
            print(json.dumps(MessageToDict(r, preserving_proto_field_name=True), indent=2))
        else:
            print("\n".join(status_view.reindex_lines(r)), flush=True)

    def body(rpc: Rpc) -> None:
        state = rpc.reindex(pb.ReindexRequest(model=args.model)) if args.model else rpc.get_reindex()
        show(state)
        shown = state
        while args.wait and state.target_model:
            time.sleep(args.interval)
            state = rpc.get_reindex()
            if state != shown and not args.json:
                show(state)
                shown = state
        if args.wait and args.json:
            show(state)

    return calling("reindex", args, body)
