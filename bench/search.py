"""Index types for the face collection, at 100k and 1M faces, for each model dimension (128: sface and
dlib-resnet; 512: the facenet models), on the embedded Milvus server rvs runs.

For each size and each index (HNSW at several M and ef, IVF_FLAT, IVF_SQ8, IVF_PQ at several nprobe,
FLAT = Milvus's exact search as the baseline; DISKANN with --indexes DISKANN, which the embedded
server fails to build) it reports
- top-20 search p50/p99 and recall@20 against exact search (numpy, the same vectors),
- range search (every face above the model's threshold: what Search does) p50/p99 and its recall,
- build time, and the server memory the loaded index holds (its RSS loaded, less after a release), per 100k faces.
Then, with the chosen index (RVS_INDEX_* defaults, or --default): upsert throughput while the index
builds in the background, how soon a newly upserted face is found by another client (as the query
service is), the delete of one media item (1,000 faces) at the largest size, and the whole Search RPC
(a 640x480 JPEG: decode + detect + embed + search + grouping) with the dimension's model.

The vectors are synthetic but shaped like faces at 1 fps: identities share a common direction (two
people score ~0.2, as real embeddings do), each identity appears in tracks of 10 samples (a track's
samples ~0.95 alike), and a query is another photo of an identity. Random unit vectors would make
every index look worse than on faces, and real faces are too few here for 1M.

    uv run --group bench python bench/search.py [--sizes 100000,1000000] [--dims 128,512]
        [--indexes all|HNSW,IVF_SQ8,...] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from rvs.core.config import ModelSettings, StoreSettings
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.faces.registry import MODELS
from rvs.core.net import free_port
from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.core.store.faces import FaceRow, FaceStore
from rvs.core.store.index import VectorIndex
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import (
    SHARED,
    facenet_weights,
    percentiles,
    query_photo,
    save,
    timed_search_rpcs,
    tree_rss_mib,
    wait_indexed,
)

LFW = SHARED / "faces" / "lfw" / "images"
K = 20
FACES_PER_MEDIA = 1000
TRACK = 10  # samples per appearance
TRACKS_PER_IDENTITY = 5
MODEL_OF_DIM = {128: ("sface", "yunet"), 512: ("facenet-vggface2", "mtcnn")}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _near(centers: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at about `similarity` (cosine) from each of `centers`."""
    spread = np.sqrt(1 / similarity**2 - 1) / np.sqrt(centers.shape[1])
    return _unit(centers + rng.normal(scale=spread, size=centers.shape).astype(np.float32))


@dataclass
class Faces:
    vectors: np.ndarray  # (n, dim), unit rows; row i is face key key(i)
    queries: np.ndarray  # (q, dim)

    @classmethod
    def make(cls, n: int, dim: int, queries: int, asked_from: int, seed: int = 0) -> Faces:
        """n faces; queries of identities among the first `asked_from` faces (indexed at every size)."""
        rng = np.random.default_rng(seed)
        per_identity = TRACK * TRACKS_PER_IDENTITY
        common = _unit(rng.normal(size=dim))
        identities = _unit(_unit(rng.normal(size=(n // per_identity + 1, dim))) + 0.5 * common)
        tracks = _near(np.repeat(identities, TRACKS_PER_IDENTITY, axis=0), 0.8, rng)
        vectors = np.empty((n, dim), np.float32)
        for first in range(0, n, 100_000):  # in chunks: 1M x 512 floats twice over would be 4 GB
            rows = np.arange(first, min(n, first + 100_000))
            vectors[rows] = _near(tracks[rows // TRACK], 0.95, rng)
        people = asked_from // per_identity
        asked = rng.choice(people, size=queries, replace=queries > people)
        return cls(vectors, _near(identities[asked], 0.8, rng))

    def exact(self, query: np.ndarray, k: int, n: int) -> set[int]:
        """The true top k among the first n faces (those indexed)."""
        scores = self.vectors[:n] @ query
        return set(np.argpartition(-scores, k)[:k].tolist())

    def above(self, query: np.ndarray, min_score: float, n: int) -> set[int]:
        return set(np.flatnonzero(self.vectors[:n] @ query >= min_score).tolist())


def media_of(i: int) -> str:
    return f"m{i // FACES_PER_MEDIA:07d}"


def row_of(key: str) -> int:
    media, time_ms, _ = key.split(":")
    return int(media[1:]) * FACES_PER_MEDIA + int(time_ms) // 1000


def upsert(store: FaceStore, faces: Faces, start: int, stop: int, batch: int = 2000) -> float:
    """Rows start..stop as faces of 1,000-sample videos; rows per second."""
    t0 = time.perf_counter()
    for first in range(start, stop, batch):
        store.upsert(
            [
                FaceRow(
                    media_of(i),
                    f"/{media_of(i)}.mp4",
                    pb.MEDIA_KIND_VIDEO,
                    (i % FACES_PER_MEDIA) * 1000,
                    0,
                    (0, 0, 1, 1),
                    1.0,
                    "/",
                    0,
                    faces.vectors[i],
                )
                for i in range(first, min(stop, first + batch))
            ]
        )
    return (stop - start) / (time.perf_counter() - t0)


def server_rss_mib() -> float:
    """Resident memory of the Milvus server (this process's children), MiB."""
    return sum(rss for pid, rss in tree_rss_mib(os.getpid()).items() if pid != os.getpid())


def rebuild(store: FaceStore, index: VectorIndex) -> float:
    """Replace the collection's index with `index` and load it again; seconds to build and load."""
    client = store.client
    client.release_collection(store.collection)
    client.drop_index(store.collection, "embedding")
    params = client.prepare_index_params()
    params.add_index(field_name="embedding", index_type=index.type, metric_type="COSINE", params=index.build)
    t0 = time.perf_counter()
    client.create_index(store.collection, params)
    wait_indexed(store)
    client.load_collection(store.collection)
    store.index = index
    return time.perf_counter() - t0


def loaded_mib(store: FaceStore, settle_s: float = 15) -> float:
    """What the loaded collection holds of the server's memory: its RSS now, less after a release
    and `settle_s` to hand the memory back (Milvus 2.3.5 reports no segment sizes), MiB. It loads
    the collection again."""
    time.sleep(settle_s)  # the build's own memory handed back first
    loaded = server_rss_mib()
    store.client.release_collection(store.collection)
    time.sleep(settle_s)
    released = server_rss_mib()
    store.client.load_collection(store.collection)
    return loaded - released


def timed_searches(store: FaceStore, faces: Faces, min_score: float | None) -> tuple[list[float], list[set[int]]]:
    """Each query's latency (ms) and answer (rows): top-20, or the range search above `min_score`."""
    ms, found = [], []
    for q in faces.queries[:5]:  # warm-up: the first searches page segments in
        store.search(q, min_score if min_score is not None else -1.0, K)
    for q in faces.queries:
        t = time.perf_counter()
        hits = store.search(q, min_score if min_score is not None else -1.0, K if min_score is None else 4096)
        ms.append((time.perf_counter() - t) * 1000)
        found.append({row_of(h.key) for h in hits})
    return ms, found


def measure_index(store: FaceStore, faces: Faces, index: VectorIndex, min_score: float, n: int) -> dict[str, object]:
    store.index = index
    top_ms, top = timed_searches(store, faces, None)
    range_ms, ranged = timed_searches(store, faces, min_score)
    recall = [len(t & faces.exact(q, K, n)) / K for q, t in zip(faces.queries, top, strict=True)]
    wanted = [faces.above(q, min_score, n) for q in faces.queries]
    range_recall = [len(r & w) / min(len(w), 4096) for r, w in zip(ranged, wanted, strict=True) if w]
    return {
        "search_breadth": index.breadth,
        "top20_ms": percentiles(top_ms),
        "recall_at_20": float(np.mean(recall)),
        "range_ms": percentiles(range_ms),
        "range_recall": float(np.mean(range_recall)) if range_recall else None,
        "range_hits_mean": float(np.mean([len(w) for w in wanted])),
    }


def candidates(dim: int, wanted: set[str] | None, chosen: VectorIndex) -> Iterator[tuple[VectorIndex, list[int]]]:
    """(index, the search breadths to try on it), the chosen one last: it is what the collection keeps."""
    table = [
        (VectorIndex("FLAT"), [0]),
        (VectorIndex("HNSW", {"M": 16, "efConstruction": 200}), [32, 64, 128]),
        (VectorIndex("HNSW", {"M": 8, "efConstruction": 100}), [64, 128]),
        (VectorIndex("IVF_FLAT", {"nlist": 1024}), [16, 32, 64]),
        (VectorIndex("IVF_SQ8", {"nlist": 1024}), [16, 32, 64]),
        (VectorIndex("IVF_PQ", {"nlist": 1024, "m": dim // 4, "nbits": 8}), [32, 64]),
    ]
    if wanted and "DISKANN" in wanted:  # the embedded server's build fails and retries forever
        table.append((VectorIndex("DISKANN"), [64]))
    if not any(i.describe() == chosen.describe() for i, _ in table):
        table.append((chosen, [chosen.breadth]))
    table.sort(key=lambda entry: entry[0].describe() == chosen.describe())
    for index, breadths in table:
        if (
            wanted is None
            or index.type in wanted
            or index.describe() in wanted
            or index.describe() == chosen.describe()
        ):
            yield index, breadths


def grow_and_measure(
    store: FaceStore, faces: Faces, size: int, have: int, dim: int, wanted: set[str] | None, min_score: float,
    chosen: VectorIndex,
) -> tuple[list[dict[str, object]], dict[str, object]]:  # fmt: skip
    """Grow the collection to `size` faces (with `chosen` building in the background), then time
    every candidate index on it."""
    if store.index.describe() != chosen.describe():
        rebuild(store, chosen)
    rows_per_s = upsert(store, faces, have, size)
    growth = {"faces": size, "upsert_rows_per_s_while_indexing": rows_per_s, "index_wait_s": wait_indexed(store)}
    print(
        f"  {dim}-d {size:,}: upserts {rows_per_s:,.0f} rows/s while indexing, then {growth['index_wait_s']:.0f} s to finish"
    )
    rows = []
    for index, breadths in candidates(dim, wanted, chosen):
        try:
            build_s = rebuild(store, index)
        except Exception as exc:  # an index type this server does not offer (DISKANN without enableDisk)
            print(f"  {index.describe():<34} refused: {str(exc)[:160]}")
            rows.append({"faces": size, "dim": dim, "index": index.describe(), "refused": str(exc)[:300]})
            rebuild(store, chosen)
            continue
        mib, rss = loaded_mib(store), server_rss_mib()
        for breadth in breadths:
            m = measure_index(store, faces, VectorIndex(index.type, index.build, breadth), min_score, size)
            row = {"faces": size, "dim": dim, "index": index.describe(), "build_s": build_s,
                   "loaded_rss_mib_per_100k": mib * 100_000 / size, "server_rss_mib": rss, **m}  # fmt: skip
            rows.append(row)
            t, r = m["top20_ms"], m["range_ms"]
            print(
                f"  {index.describe():<34} b={breadth:<4} top-20 p50 {t['p50']:6.1f} p99 {t['p99']:6.1f} ms "  # type: ignore[index]
                f"recall {m['recall_at_20']:.3f} | range p50 {r['p50']:6.1f} p99 {r['p99']:6.1f} ms "  # type: ignore[index]
                f"recall {m['range_recall'] or 0:.3f} | build {build_s:5.0f} s | {row['loaded_rss_mib_per_100k']:.0f} MiB/100k",
                flush=True,
            )
    return rows, growth


def freshness(store: FaceStore, reader: FaceStore, dim: int, n: int = 10) -> dict[str, object]:
    """A face upserted by one client (the embedder) until another (the query service) finds it."""
    rng = np.random.default_rng(1)
    delays = []
    for j in range(n):
        probe = _unit(rng.normal(size=dim))
        key_media = f"fresh{j:05d}"
        store.upsert([FaceRow(key_media, "/fresh.mp4", pb.MEDIA_KIND_VIDEO, 0, 0, (0, 0, 1, 1), 1.0, "/", 0, probe)])
        t0 = time.perf_counter()
        while not any(h.media_id == key_media for h in reader.search(probe, 0.99, 5)):
            time.sleep(0.01)
        delays.append(time.perf_counter() - t0)
        store.delete_media(key_media)
    return {"searchable_after_s": percentiles(delays) if n >= 2 else delays}


def delete_one(store: FaceStore, size: int) -> dict[str, object]:
    """Read one media item's faces (as tracks are built), then delete it (1,000 faces) from a full
    collection and count what is left of it; three items."""
    read_ms, delete_ms, gone_ms = [], [], []
    for m in range(3):
        media = media_of(size // 2 + m * FACES_PER_MEDIA)
        t0 = time.perf_counter()
        assert len(store.faces_of(media)) == FACES_PER_MEDIA
        read_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        deleted = store.delete_media(media)
        delete_ms.append((time.perf_counter() - t0) * 1000)
        while store.count(media):  # until reads see the delete
            assert time.perf_counter() - t0 < 60, f"{media} still has faces a minute after its delete ({deleted})"
            time.sleep(0.01)
        gone_ms.append((time.perf_counter() - t0) * 1000)
    return {"faces_of_media_ms": read_ms, "delete_media_ms": delete_ms, "deleted_unseen_after_ms": gone_ms,
            "faces_per_media": FACES_PER_MEDIA}  # fmt: skip


def search_rpc(uri: str, store: FaceStore, dim: int, queries: int, chosen: VectorIndex) -> dict[str, object]:
    """The whole Search RPC against the full collection, with the dimension's model on a real photo."""
    model, detector = MODEL_OF_DIM[dim]
    pipeline = FacePipeline(ModelSettings(model=model, detector=detector, weights_path=facenet_weights(model, None)))
    pipeline.load()
    people = sorted(p for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").exists())[:50]
    photos = [query_photo(p / f"{p.name}_0002.jpg") for p in people]
    settings = QuerySettings(model=model, detector=detector, port=free_port(), web_port=0, milvus_uri=uri,
                             collection=store.collection)  # fmt: skip
    serving = FaceStore(uri, store.collection, store.model, dim, index=chosen, timeout_s=600)
    serving.open()
    service = QueryService(settings, pipeline, serving, None, CollectorRegistry())
    service.start()
    service.ready()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    stub = rvs_pb2_grpc.SearchServiceStub(channel)
    try:
        ms = timed_search_rpcs(stub, photos, queries)
    finally:
        channel.close()
        service.stop()
    return {"search_rpc_model": f"{model}+{detector}", "search_rpc_ms": percentiles(ms)}


def run_dim(
    uri: str, dim: int, sizes: list[int], args: argparse.Namespace, chosen: VectorIndex, done: dict[str, object]
) -> None:
    """Fills `done` as it goes (saved after each size: a 1M run takes an hour)."""
    model = MODEL_OF_DIM[dim][0]
    min_score = MODELS[model].default_min_score
    faces = Faces.make(max(sizes), dim, args.queries, min(sizes))
    store = FaceStore(uri, f"bench_{dim}", model, dim, index=chosen, timeout_s=600)
    store.open()
    reader = FaceStore(uri, store.collection, model, dim, index=chosen, timeout_s=600)
    reader.open()
    rows: list[dict[str, object]] = []
    growth: list[dict[str, object]] = []
    done.update(dim=dim, model=model, min_score=min_score, chosen=chosen.describe(), rows=rows, growth=growth)
    have = 0
    try:
        for size in sizes:
            measured, grown = grow_and_measure(store, faces, size, have, dim, args.wanted, min_score, chosen)
            rows += measured
            growth.append(grown)
            have = size
            args.checkpoint()
        if store.index.describe() != chosen.describe():
            rebuild(store, chosen)
        store.index = chosen
        extra = {**freshness(store, reader, dim), **delete_one(store, have)}
        if not args.no_rpc:
            extra |= search_rpc(uri, store, dim, args.rpc_queries, chosen)
        print(f"  {dim}-d at {have:,} with {chosen.describe()}: {extra}", flush=True)
    finally:
        reader.close()
        store.drop()
        store.close()
    done.update(extra)
    args.checkpoint()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dims", default="128,512")
    parser.add_argument("--indexes", default="all", help="all, or index types / descriptions to time")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rpc-queries", type=int, default=100)
    parser.add_argument("--no-rpc", action="store_true")
    parser.add_argument("--out", default="search")
    args = parser.parse_args()
    args.wanted = None if args.indexes == "all" else set(args.indexes.split(","))
    sizes = [int(x) for x in args.sizes.split(",")]
    results: list[dict[str, object]] = []
    args.checkpoint = lambda: print(
        "wrote", save(args.out, {"sizes": sizes, "queries": args.queries, "results": results})
    )
    with tempfile.TemporaryDirectory() as tmp:
        milvus = EmbeddedMilvus(Path(tmp) / "milvus", free_port())
        milvus.start()
        try:
            for dim in (int(d) for d in args.dims.split(",")):
                chosen = StoreSettings().vector_index(dim)
                print(f"{dim}-d, chosen index {chosen.describe()} breadth {chosen.breadth}", flush=True)
                results.append({})
                run_dim(milvus.uri, dim, sizes, args, chosen, results[-1])
        finally:
            milvus.stop()


if __name__ == "__main__":
    main()
