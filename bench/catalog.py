"""Catalog reads at 1k / 10k / 100k media items: rvs's SQL paths vs the previous algorithm (load and
convert every row, then filter, count and page in Python), on the same catalog file in the same run.

Times what ListMedia asks for per page (first, middle and last page; a page of one state), what
the query service's /metrics collector does per scrape (media by state), and unfinished() (progress
log, `wait_idle`). Prints a table; writes bench/results/catalog.json.

    uv run python bench/catalog.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from rvs.core.catalog import Catalog, CatalogCollector
from rvs.v1 import rvs_pb2 as pb

from common import percentiles, save

PAGE = 100  # ListMedia's default page size


# -- the previous algorithm, the baseline: every row read and converted for every call -------------


def _old_state(row: sqlite3.Row) -> int:
    if row["deleted"]:
        return pb.MEDIA_STATE_DELETED
    if row["error_reason"]:
        return pb.MEDIA_STATE_FAILED
    if row["frame_count"] is not None:
        return pb.MEDIA_STATE_DONE if row["frames_embedded"] >= row["frame_count"] else pb.MEDIA_STATE_EMBEDDING
    if row["sampling_started"]:
        return pb.MEDIA_STATE_SAMPLING
    return pb.MEDIA_STATE_QUEUED


def _old_proto(row: sqlite3.Row) -> pb.Media:
    return pb.Media(
        media_id=row["media_id"],
        uri=row["uri"],
        kind=row["kind"],
        state=_old_state(row),  # type: ignore[arg-type]
        frames_sampled=max(row["frames_sampled"], row["frame_count"] or 0),
        frames_embedded=row["frames_embedded"],
        faces_found=row["faces_found"],
        sampling_complete=row["frame_count"] is not None,
        duration_ms=row["duration_ms"],
        frames_expected=row["frame_count"] if row["frame_count"] is not None else row["frames_expected"],
        faces_rejected=json.loads(row["faces_rejected"]),
        error_reason=row["error_reason"],
        error_detail=row["error_detail"],
        source=row["source"],
        discovered_at_ms=row["discovered_at_ms"],
        updated_at_ms=row["updated_at_ms"],
    )


class OldCatalog:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path)
        self._db.row_factory = sqlite3.Row

    def list_media(self, state: int = 0, offset: int = 0, limit: int = 100) -> list[pb.Media]:
        rows = self._db.execute("SELECT * FROM media ORDER BY discovered_at_ms, media_id").fetchall()
        media = [_old_proto(r) for r in rows]
        if state:
            media = [m for m in media if m.state == state]
        return media[offset : offset + limit]

    def unfinished(self) -> list[pb.Media]:
        states = (pb.MEDIA_STATE_QUEUED, pb.MEDIA_STATE_SAMPLING, pb.MEDIA_STATE_EMBEDDING)
        return [m for m in self.list_media(limit=1 << 30) if m.state in states]

    def counts(self) -> dict[int, int]:
        counts = dict.fromkeys((v for v in pb.MediaState.values() if v), 0)
        for media in self.list_media(limit=1 << 30):
            counts[media.state] += 1
        return counts


# -- the catalog ------------------------------------------------------------------------------------


def build(path: Path, n: int) -> None:
    """n media items, mostly done, some in every other state, folded from events as in service."""
    catalog = Catalog(path)
    for i in range(n):
        mid = f"{i:064x}"
        at = 1_700_000_000_000 + i
        events = [pb.MediaEvent(media_id=mid, at_ms=at, discovered=pb.MediaDiscovered(uri=f"/inbox/{i}.jpg", kind=1))]
        kind = i % 50
        if kind == 1:
            events.append(pb.MediaEvent(media_id=mid, at_ms=at, sampling_started=pb.SamplingStarted()))
        elif kind == 2:
            events.append(pb.MediaEvent(media_id=mid, at_ms=at, failed=pb.MediaFailed(reason="DECODE_ERROR")))
        elif kind == 3:
            events.append(pb.MediaEvent(media_id=mid, at_ms=at, removed=pb.MediaRemoved()))
        elif kind != 0:  # 0: still queued
            events.append(pb.MediaEvent(media_id=mid, at_ms=at, sampled=pb.MediaSampled(frame_count=1)))
            if kind != 4:  # 4: still embedding
                embedded = pb.FramesEmbedded(sample_indices=[0], face_counts=[1])
                events.append(pb.MediaEvent(media_id=mid, at_ms=at, embedded=embedded))
        for e in events:
            catalog.apply(e)
    catalog.close()


def time_ms(call: Callable[[], object], repeat: int) -> dict[str, float]:
    values = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        values.append((time.perf_counter() - t0) * 1000)
    return percentiles(values + values[-1:]) if len(values) > 1 else {"p50": values[0]}


def reads(catalog: Catalog | OldCatalog, n: int, scrape: Callable[[], object]) -> dict[str, Callable[[], object]]:
    return {
        "ListMedia first page": lambda: catalog.list_media(offset=0, limit=PAGE + 1),
        "ListMedia middle page": lambda: catalog.list_media(offset=n // 2, limit=PAGE + 1),
        "ListMedia last page": lambda: catalog.list_media(offset=max(0, n - PAGE), limit=PAGE + 1),
        "ListMedia page of EMBEDDING": lambda: catalog.list_media(state=pb.MEDIA_STATE_EMBEDDING, limit=PAGE + 1),
        "/metrics rvs_index_media": scrape,
        "unfinished()": catalog.unfinished,
        "wait_idle's check": lambda: (
            bool(catalog.unfinished()) if isinstance(catalog, OldCatalog) else catalog.has_unfinished()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--baseline-repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            path = Path(tmp) / f"catalog-{n}.db"
            t0 = time.perf_counter()
            build(path, n)
            print(f"built a catalog of {n:,} media in {time.perf_counter() - t0:.1f}s")
            ours = Catalog(path)
            registry = CollectorRegistry()
            registry.register(CatalogCollector(ours))
            old = OldCatalog(path)
            old_registry = CollectorRegistry()
            old_registry.register(CatalogCollector(old))  # type: ignore[arg-type]  # the same collector, old counts
            new_reads = reads(ours, n, functools.partial(generate_latest, registry))
            old_reads = reads(old, n, functools.partial(generate_latest, old_registry))
            for (what, new), old_call in zip(new_reads.items(), old_reads.values(), strict=True):
                assert new() == old_call(), what  # the same answers
                rvs = time_ms(new, args.repeat)
                before = time_ms(old_call, args.baseline_repeat)
                rows.append({"media": n, "read": what, "rvs_ms": rvs, "previous_ms": before})
            assert ours.counts() == old.counts()
            ours.close()
    print(f"{'media':>8} {'read':<30} {'rvs p50 ms':>11} {'p99':>7} {'previous ms':>12} {'speedup':>9}")
    for r in rows:
        rvs, before = r["rvs_ms"], r["previous_ms"]
        print(
            f"{r['media']:>8,} {r['read']:<30} {rvs['p50']:11.2f} {rvs.get('p99', rvs['p50']):7.2f}"
            f" {before['p50']:12.1f} {before['p50'] / rvs['p50']:8.0f}x"
        )
    print("wrote", save("catalog", {"page_size": PAGE, "rows": rows}))


if __name__ == "__main__":
    main()
