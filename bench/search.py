"""Search latency over gRPC with N indexed faces (default 10k), on the embedded Milvus server.

The index holds real face vectors (LFW photos embedded by rvs) plus random unit vectors up to N;
queries are 640x480 photos of people in the index. Reports p50/p95/p99 of the vector search alone
and of the whole Search RPC (decode + detect + embed + search + grouping). Writes
bench/results/search.json.

    uv run python bench/search.py [--faces 10000] [--queries 100]
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry

from rvs.config import ModelSettings
from rvs.faces.pipeline import FacePipeline
from rvs.query.app import QueryService
from rvs.query.config import QuerySettings
from rvs.store.embedded_milvus import EmbeddedMilvus
from rvs.store.faces import FaceRow, FaceStore
from rvs.v1 import rvs_pb2 as pb
from rvs.v1 import rvs_pb2_grpc

from common import SHARED, percentiles, save


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query_photo(path: Path) -> bytes:
    canvas = Image.new("RGB", (640, 480), (120, 120, 120))
    canvas.paste(Image.open(path).convert("RGB").resize((250, 250)), (195, 115))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model", default="dlib-resnet")
    args = parser.parse_args()

    pipeline = FacePipeline(ModelSettings(model=args.model))
    pipeline.load()
    people = sorted(p for p in (SHARED / "faces/lfw/images").iterdir() if len(list(p.iterdir())) >= 2)[:200]
    real = []
    for person in people:
        img = np.asarray(Image.open(person / f"{person.name}_0001.jpg").convert("RGB"))
        faces = pipeline.process([img])[0]
        if faces:
            real.append((person, faces[0].vector))
    with tempfile.TemporaryDirectory() as tmp:
        milvus = EmbeddedMilvus(Path(tmp) / "milvus", free_port())
        milvus.start()
        try:
            store = FaceStore(milvus.uri, "bench", pipeline.model_name, pipeline.dim)
            store.open()
            rng = np.random.default_rng(0)
            rows = [
                FaceRow(f"real{i}", str(p), pb.MEDIA_KIND_IMAGE, 0, 0, (0, 0, 1, 1), 1.0, "/b", 0, v)
                for i, (p, v) in enumerate(real)
            ]
            t0 = time.perf_counter()
            for start in range(0, args.faces - len(rows), 5000):
                n = min(5000, args.faces - len(rows) - start)
                vecs = rng.normal(size=(n, pipeline.dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                store.upsert(
                    [
                        FaceRow(
                            f"rand{start // 5000}",
                            "/r.mp4",
                            pb.MEDIA_KIND_VIDEO,
                            (start + i) * 1000,
                            0,
                            (0, 0, 1, 1),
                            1.0,
                            "/b",
                            0,
                            v,
                        )
                        for i, v in enumerate(vecs)
                    ]
                )
            store.upsert(rows)
            upsert_s = time.perf_counter() - t0
            total = store.count()

            vector_ms = []
            for i in range(args.queries):
                t = time.perf_counter()
                store.search(real[i % len(real)][1], 0.5, 4096)
                vector_ms.append((time.perf_counter() - t) * 1000)

            settings = QuerySettings(model=args.model, port=free_port(), milvus_uri=milvus.uri, collection="bench")
            service = QueryService(settings, pipeline, store, None, CollectorRegistry())
            service.start()
            service.ready()
            photos = [
                query_photo(people[i % len(people)] / f"{people[i % len(people)].name}_0002.jpg")
                for i in range(args.queries)
            ]
            rpc_ms = []
            with grpc.insecure_channel(f"127.0.0.1:{service.port}") as ch:
                stub = rvs_pb2_grpc.SearchServiceStub(ch)
                stub.Search(pb.SearchRequest(image=photos[0]))  # warm-up
                for photo in photos:
                    t = time.perf_counter()
                    try:
                        stub.Search(pb.SearchRequest(image=photo), timeout=30)
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # NO_FACE still costs a full RPC
                            raise
                    rpc_ms.append((time.perf_counter() - t) * 1000)
            service.stop()
            store.close()
        finally:
            milvus.stop()
    result = {
        "faces": total,
        "upsert_rows_per_s": total / upsert_s,
        "vector_search_ms": percentiles(vector_ms),
        "search_rpc_ms": percentiles(rpc_ms),
        "query_image": "640x480 JPEG",
        "model": args.model,
    }
    print(f"{total} faces indexed ({result['upsert_rows_per_s']:.0f} rows/s)")
    for name in ("vector_search_ms", "search_rpc_ms"):
        p = result[name]
        print(f"{name:<18} p50 {p['p50']:7.1f}  p95 {p['p95']:7.1f}  p99 {p['p99']:7.1f}  (n={p['n']})")  # type: ignore[index]
    print("wrote", save("search", result))


if __name__ == "__main__":
    main()
