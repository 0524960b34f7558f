"""Search latency at 10k, 100k and 1M indexed faces: the embedded Milvus server rvs runs vs milvus-lite
(and, with --backends, vs the same server run outside its network sandbox, to price the relay).

For each backend the index grows in steps (10k, 100k, 1M faces by default); at each step, once the
index has been built, it reports p50/p95/p99 of
- the vector search alone (FaceStore.search: range search above the model's threshold, as Search does),
- the whole Search RPC over gRPC with a 640x480 JPEG query (decode + detect + embed + search + grouping).
The index holds the vectors of 200 real LFW faces plus random unit vectors; queries are other photos
of those people, pasted into 640x480 frames. facenet's weights cannot be downloaded here: a randomly
initialised InceptionResnetV1 (same cost, 512-d) stands in unless --weights-path is given.

    uv run --group bench python bench/backends.py [--sizes 10000,100000,1000000] [--lite-max 100000]
        [--backends milvus,milvus-lite,milvus-unsandboxed]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry

from rvs.core.config import ModelSettings
from rvs.core.faces.pipeline import FacePipeline
from rvs.core.net import free_port
from rvs.core.store.embedded_milvus import EmbeddedMilvus
from rvs.core.store.faces import FaceRow, FaceStore
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


@contextmanager
def backend(name: str, tmp: Path) -> Iterator[str]:
    """The URI of a fresh store of the given kind."""
    if name == "milvus-lite":
        yield str(tmp / "lite.db")  # pymilvus runs milvus-lite for a local .db path
        return
    milvus = EmbeddedMilvus(tmp / "milvus", free_port(), isolate=name != "milvus-unsandboxed")
    milvus.start()
    try:
        yield milvus.uri
    finally:
        milvus.stop()


def fill(store: FaceStore, start: int, stop: int, dim: int, rng: np.random.Generator) -> None:
    for first in range(start, stop, 5000):
        vecs = rng.normal(size=(min(5000, stop - first), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.upsert(
            [
                FaceRow(
                    f"rand{(first + i) // 3600}",
                    "/random.mp4",
                    pb.MEDIA_KIND_VIDEO,
                    ((first + i) % 3600) * 1000,
                    0,
                    (0, 0, 1, 1),
                    1.0,
                    "/",
                    0,
                    v,
                )
                for i, v in enumerate(vecs)
            ]
        )


def measure(
    name: str, uri: str, sizes: list[int], pipeline: FacePipeline, queries: int, model: str
) -> list[dict[str, object]]:
    people = sorted(p for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").exists())[:200]
    real = []
    for person in people:
        faces = pipeline.process([np.asarray(Image.open(person / f"{person.name}_0001.jpg").convert("RGB"))])[0]
        if faces:
            real.append((person, faces[0].vector))
    photos = [query_photo(p / f"{p.name}_0002.jpg") for p, _ in real]
    store = FaceStore(uri, "bench", pipeline.model_name, pipeline.dim, timeout_s=600)
    store.open()
    store.upsert(
        [
            FaceRow(f"real{i}", str(p), pb.MEDIA_KIND_IMAGE, 0, 0, (0, 0, 1, 1), 1.0, "/", 0, v)
            for i, (p, v) in enumerate(real)
        ]
    )
    settings = QuerySettings(model=model, port=free_port(), web_port=0, milvus_uri=uri, collection="bench")
    service = QueryService(settings, pipeline, store, None, CollectorRegistry())
    service.start()
    service.ready()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    stub = rvs_pb2_grpc.SearchServiceStub(channel)
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    have = len(real)
    try:
        for size in sizes:
            t0 = time.perf_counter()
            fill(store, have, size, pipeline.dim, rng)
            insert_s = time.perf_counter() - t0
            index_s = wait_indexed(store)
            have = size
            min_score = pipeline.encoder.default_min_score
            for v in (v for _, v in real[:5]):  # warm-up: first searches load segments
                store.search(v, min_score, settings.search_candidates)
            vector_ms = []
            for i in range(queries):
                t = time.perf_counter()
                store.search(real[i % len(real)][1], min_score, settings.search_candidates)
                vector_ms.append((time.perf_counter() - t) * 1000)
            rpc_ms = timed_search_rpcs(stub, photos, queries)
            row = {
                "backend": name,
                "faces": store.count(),
                "insert_rows_per_s": (size - len(real)) / insert_s if size > len(real) else None,
                "index_wait_s": index_s,
                # Resident memory of the store's server processes (children of this one) with this many faces.
                "server_rss_mib": sum(rss for pid, rss in tree_rss_mib(os.getpid()).items() if pid != os.getpid()),
                "vector_search_ms": percentiles(vector_ms),
                "search_rpc_ms": percentiles(rpc_ms),
            }
            rows.append(row)
            v, r = row["vector_search_ms"], row["search_rpc_ms"]
            print(
                f"{name:<12} {row['faces']:>9,} faces: vector p50 {v['p50']:7.1f} p99 {v['p99']:7.1f} ms | "  # type: ignore[index]
                f"RPC p50 {r['p50']:7.1f} p99 {r['p99']:7.1f} ms | insert {insert_s:.0f} s, index wait {index_s:.0f} s"  # type: ignore[index]
                f" | server RSS {row['server_rss_mib']:.0f} MiB",
                flush=True,
            )
    finally:
        channel.close()
        service.stop()
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--lite-max", type=int, default=100_000, help="largest index milvus-lite is timed at")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model", default="facenet-vggface2")
    parser.add_argument("--weights-path", type=Path, default=None)
    parser.add_argument("--backends", default="milvus,milvus-lite", help="milvus, milvus-lite, milvus-unsandboxed")
    parser.add_argument("--out", default="search", help="results file name in bench/results/")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    weights = facenet_weights(args.model, args.weights_path)
    pipeline = FacePipeline(ModelSettings(model=args.model, weights_path=weights))
    pipeline.load()

    rows = []
    for name in args.backends.split(","):
        chosen = [s for s in sizes if name != "milvus-lite" or s <= args.lite_max]
        with tempfile.TemporaryDirectory() as tmp, backend(name, Path(tmp)) as uri:
            rows += measure(name, uri, chosen, pipeline, args.queries, args.model)

    sandboxed = {r["faces"]: r for r in rows if r["backend"] == "milvus"}
    for r in (r for r in rows if r["backend"] == "milvus-unsandboxed" and r["faces"] in sandboxed):
        v, w = sandboxed[r["faces"]]["vector_search_ms"], r["vector_search_ms"]
        print(f"sandbox relay at {r['faces']:,} faces: vector p50 {v['p50']:.2f} vs {w['p50']:.2f} ms unsandboxed")  # type: ignore[index]
    print(f"\nmodel {pipeline.model_name} ({pipeline.dim}-d), HNSW M=16 efConstruction=200, {args.queries} queries")
    print(
        f"{'faces':>9} {'backend':<12} {'vector p50':>10} {'p99':>8} {'RPC p50':>8} {'p99':>8}  {'vs milvus-lite (p50)':>20}"
    )
    lite = {r["faces"]: r for r in rows if r["backend"] == "milvus-lite"}
    for r in rows:
        v, q = r["vector_search_ms"], r["search_rpc_ms"]
        base = lite.get(r["faces"])
        ratio = (
            f"{base['vector_search_ms']['p50'] / v['p50']:.1f}x / {base['search_rpc_ms']['p50'] / q['p50']:.1f}x"  # type: ignore[index]
            if base and r["backend"] == "milvus"
            else ""
        )
        print(
            f"{r['faces']:>9,} {r['backend']:<12} {v['p50']:10.1f} {v['p99']:8.1f} {q['p50']:8.1f} {q['p99']:8.1f}  {ratio:>20}"  # type: ignore[index]
        )
    print("wrote", save(args.out, {"model": pipeline.model_name, "query_image": "640x480 JPEG", "rows": rows}))


if __name__ == "__main__":
    main()
