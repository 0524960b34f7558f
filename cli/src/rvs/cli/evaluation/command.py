"""`rvs eval images DIR` / `rvs eval videos MANIFEST`: one row per model, written (.md, .json, .png) and
printed. Without --milvus-uri a temporary embedded Milvus holds the vectors. `rvs eval people DIR`
(clustering, rvs.cli.evaluation.people) needs no Milvus and writes .md and .json. `rvs eval synth
OUT_DIR` writes the synthetic clips and their manifest (rvs.cli.evaluation.synth)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rvs.cli.evaluation import report
from rvs.core.config import ModelSettings
from rvs.core.faces.registry import DETECTORS, MODELS
from rvs.core.faces.types import ModelUnavailable
from rvs.core.logs import setup_logging
from rvs.core.net import free_port
from rvs.core.store.embedded_milvus import EmbeddedMilvus

Progress = Callable[[str], None]


def pairing(text: str) -> dict[str, str]:
    """ "sface+yunet" -> model sface with detector yunet; "sface" -> sface with the default detector."""
    model, _, detector = text.partition("+")
    return {"model": model, "detector": detector} if detector else {"model": model}


def run(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    if args.what == "synth":
        return _synth(Path(args.path), Path(args.lfw))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in models if not _known(pairing(m))]:
        print(
            f"rvs eval: unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}, each optionally "
            f"+{' or +'.join(DETECTORS)}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.what == "people":
        return _people(args, models, out)
    work = Path(tempfile.mkdtemp(prefix="rvs-eval-"))
    milvus = None if args.milvus_uri else EmbeddedMilvus(work / "milvus", free_port())

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    try:
        if milvus is not None:
            milvus.start()
        uri = args.milvus_uri or (milvus.uri if milvus else "")
        if args.what == "images":
            table, payload = _images(args, models, uri, out, progress)
        else:
            table, payload = _videos(args, models, uri, work, out)
    except (ModelUnavailable, OSError, ValueError) as exc:
        print(f"rvs eval: {exc}", file=sys.stderr)
        return 1
    finally:
        if milvus is not None:
            milvus.stop()
        logging.shutdown()
    out.with_suffix(".json").write_text(payload + "\n")
    print(payload if args.json else table)
    if not args.json:
        print(
            f"\nwrote {out.with_suffix('.md')}, {out.with_suffix('.json')}, {out.with_suffix('.png')}", file=sys.stderr
        )
    return 0


def _synth(out: Path, lfw: Path) -> int:
    from rvs.cli.evaluation import synth

    try:
        manifest = synth.build(out, lfw)
    except (OSError, ValueError) as exc:
        print(f"rvs eval synth: {exc}", file=sys.stderr)
        return 1
    print(manifest)
    return 0


def _people(args: argparse.Namespace, models: list[str], out: Path) -> int:
    from rvs.cli.evaluation import people
    from rvs.core.faces.pipeline import FacePipeline

    results = []
    try:
        for model in models:
            pipeline = FacePipeline(ModelSettings(**pairing(model), weights_path=args.weights_path))
            pipeline.load()
            progress = (lambda _: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
            results.append(people.evaluate(Path(args.path), pipeline, args.people or people.DEFAULT_PEOPLE, progress))
    except (ModelUnavailable, OSError, ValueError) as exc:
        print(f"rvs eval: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.shutdown()
    table, payload = people.table(results), report.as_json(results)
    out.with_suffix(".md").write_text(table + "\n")
    out.with_suffix(".json").write_text(payload + "\n")
    print(payload if args.json else table)
    if not args.json:
        print(f"\nwrote {out.with_suffix('.md')}, {out.with_suffix('.json')}", file=sys.stderr)
    return 0


def _known(p: dict[str, str]) -> bool:
    return p["model"] in MODELS and p.get("detector") in (None, *DETECTORS)


def _images(args: argparse.Namespace, models: list[str], uri: str, out: Path, progress: Progress) -> tuple[str, str]:
    from rvs.cli.evaluation import images
    from rvs.core.faces.pipeline import FacePipeline
    from rvs.core.store.faces import FaceStore

    root = Path(args.path)
    pairs = None
    if not args.no_pairs:
        pairs = next((p for p in (root / "pairs.txt", root.parent / "pairs.txt") if p.exists()), None)
    results: list[images.ImageEval] = []
    defaults: dict[str, float] = {}  # each row's default threshold, as its search would use it
    for model in models:
        pipeline = FacePipeline(ModelSettings(**pairing(model), weights_path=args.weights_path))
        pipeline.load()
        store = FaceStore(uri, f"eval_{len(results)}_{os.getpid()}", pipeline.model_name, pipeline.dim)
        store.open()
        try:
            results.append(images.evaluate(root, pipeline, store, args.people, pairs, args.pair_folds, progress))
        finally:
            store.drop()
            store.close()
        defaults[results[-1].model] = pipeline.encoder.default_min_score
    table = report.image_table(results)
    report.plot(results, out.with_suffix(".png"), defaults)
    out.with_suffix(".md").write_text(table + "\n")
    return table, report.as_json(results)


def _videos(args: argparse.Namespace, models: list[str], uri: str, work: Path, out: Path) -> tuple[str, str]:
    from rvs.cli.evaluation import video_people, videos

    results = [
        videos.evaluate(Path(args.path), {**pairing(m), "weights_path": args.weights_path}, uri, work / f"data-{m}")
        for m in models
    ]
    table = report.video_table(results)
    people = [(r.model, r.people) for r in results if r.people is not None]
    if people:
        table += "\n\n" + video_people.table(people)
    details = "\n\n".join(
        part for r in results for part in (report.video_segments_table(r), report.video_queries_table(r)) if part
    )
    out.with_suffix(".md").write_text(table + "\n\n" + details + "\n")
    report.video_plot(results, out.with_suffix(".png"))
    return table, report.as_json(results)
