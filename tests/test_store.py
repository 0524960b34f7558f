"""FaceStore against a real Milvus server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rvs.core.store.faces import FaceRow, FaceStore, IndexModelMismatch, SearchFilter, StoreRejected, StoreUnavailable
from rvs.core.store.index import VectorIndex
from rvs.v1 import rvs_pb2 as pb

from conftest import free_port

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def row(media: str, t: int, face: int, vec: np.ndarray, kind: int = pb.MEDIA_KIND_VIDEO, source: str = "/a") -> FaceRow:
    return FaceRow(media, f"{source}/{media}", kind, t, face, (1.0, 2.0, 3.0, 4.0), 0.99, source, 1000 + t, vec)


@pytest.fixture
def store(milvus_uri: str, collection_name: str):  # type: ignore[no-untyped-def]
    s = FaceStore(milvus_uri, collection_name, "test-model", DIM, consistency="Strong")
    s.open()
    yield s
    s.client.drop_collection(collection_name)
    s.close()


def test_upsert_is_idempotent_and_searchable_at_once(store: FaceStore) -> None:
    rows = [row("m1", t, 0, unit(t)) for t in range(5)]
    store.upsert(rows)
    store.upsert(rows)  # a replay
    assert store.count() == 5
    assert store.keys("m1") == sorted(r.key for r in rows)
    hits = store.search(unit(3), min_score=0.99, limit=10)
    assert [(h.media_id, h.time_ms) for h in hits] == [("m1", 3)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_threshold_and_filters(store: FaceStore) -> None:
    q = unit(0)
    near = q + 0.1 * unit(99)
    near /= np.linalg.norm(near)
    store.upsert(
        [
            row("img", 0, 0, near, kind=pb.MEDIA_KIND_IMAGE, source="/photos"),
            row("vid", 0, 0, near, source="/videos"),
            row("vid", 1000, 0, unit(7), source="/videos"),
        ]
    )
    assert {h.media_id for h in store.search(q, 0.9, 100)} == {"img", "vid"}
    assert all(h.score >= 0.9 for h in store.search(q, 0.9, 100))
    only_images = store.search(q, 0.9, 100, SearchFilter(kind=pb.MEDIA_KIND_IMAGE))
    assert [h.media_id for h in only_images] == ["img"]
    assert [h.media_id for h in store.search(q, 0.9, 100, SearchFilter(source_prefix="/vid"))] == ["vid"]
    assert store.search(q, 0.9, 100, SearchFilter(ingested_after_ms=5000)) == []


def test_delete_media(store: FaceStore) -> None:
    store.upsert([row("a", t, 0, unit(t)) for t in range(3)] + [row("b", 0, 0, unit(9))])
    assert store.delete_media("a") == 3
    assert store.count() == 1 and store.count("a") == 0


def test_other_model_is_refused(store: FaceStore, milvus_uri: str, collection_name: str) -> None:
    other = FaceStore(milvus_uri, collection_name, "another-model", DIM)
    with pytest.raises(IndexModelMismatch, match="test-model"):
        other.open()


def test_session_consistency_sees_its_own_upserts_at_once(milvus_uri: str, collection_name: str) -> None:
    store = FaceStore(milvus_uri, collection_name, "test-model", DIM, consistency="Session")
    store.open()
    try:
        store.upsert([row("fresh", 0, 0, unit(42))])
        assert [h.media_id for h in store.search(unit(42), 0.99, 10)] == ["fresh"]
    finally:
        store.client.drop_collection(collection_name)
        store.close()


# Each index type rvs may build: HNSW (exact distances on a graph) and the IVF ones, whose lists a
# search probes; SQ8 scores on byte-coded vectors, so a face right at the threshold may fall either side.
INDEXES = {
    "hnsw": (VectorIndex("HNSW", {"M": 16, "efConstruction": 200}, 64), 0.0),
    "ivf_flat": (VectorIndex("IVF_FLAT", {"nlist": 128}, 16), 0.0),
    "ivf_sq8": (VectorIndex("IVF_SQ8", {"nlist": 128}, 16), 0.02),
}


@pytest.mark.parametrize(("index", "margin"), INDEXES.values(), ids=list(INDEXES))
def test_indexed_range_search_returns_every_face_above_threshold(
    milvus_uri: str, collection_name: str, index: VectorIndex, margin: float
) -> None:
    """Once the index is built, a search above a threshold (HNSW at a small ef, IVF probing 16 lists)
    still returns all 3,000 samples of one person among 20,000 others, and a top-k search (no
    threshold) may ask for more than 2,048."""
    store = FaceStore(milvus_uri, collection_name, "test-model", DIM, consistency="Strong", index=index)
    store.open()
    try:
        assert store.index == index  # built as asked
        rng = np.random.default_rng(1)
        q = unit(0)
        near = q + rng.normal(size=(3000, DIM)).astype(np.float32) * 0.05
        others = rng.normal(size=(20_000, DIM)).astype(np.float32)
        for vectors, media in ((near, "person"), (others, "crowd")):
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for start in range(0, len(vectors), 5000):
                batch = vectors[start : start + 5000]
                store.upsert([row(media, (start + i) * 1000, 0, v) for i, v in enumerate(batch)])
        store.client.flush(store.collection)
        deadline = time.monotonic() + 120
        while (info := store.client.describe_index(store.collection, "embedding"))["indexed_rows"] < 23_000:
            assert time.monotonic() < deadline, f"index not built: {info}"
            time.sleep(1)
        threshold = float((near @ q).min()) - 1e-3 - margin
        crowd_above = int((others @ q >= threshold + margin).sum())
        hits = store.search(q, threshold, 16384)
        assert sum(h.media_id == "person" for h in hits) == 3000
        assert sum(h.media_id == "crowd" for h in hits) >= crowd_above
        assert all(h.score >= threshold for h in hits)
        assert len(store.search(q, -1.0, 4096)) > 2048  # a top-k search is approximate: most, without error
    finally:
        store.drop()
        store.close()


def test_a_collection_keeps_the_index_it_was_built_with(
    store: FaceStore, milvus_uri: str, collection_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings for another index apply to new collections: an existing one is searched with the
    parameters of its own index (IVF's nprobe on HNSW would be refused)."""
    store.upsert([row("m1", t, 0, unit(t)) for t in range(5)])
    wanted = VectorIndex("IVF_SQ8", {"nlist": 64}, 8)
    again = FaceStore(milvus_uri, collection_name, "test-model", DIM, consistency="Strong", index=wanted)
    again.open()
    try:
        assert again.index.describe() == "HNSW(M=16, efConstruction=200)" and again.index.breadth == 8
        assert "was built with HNSW(M=16, efConstruction=200), not IVF_SQ8(nlist=64)" in caplog.text
        assert [h.time_ms for h in again.search(unit(3), 0.99, 10)] == [3]
    finally:
        again.close()


def test_a_refused_request_is_rejected_and_keeps_the_shared_connection(store: FaceStore) -> None:
    """Milvus refusing a request (an expression it cannot parse, a vector of the wrong length) is
    StoreRejected, not an outage: no retry can help, and the connection other calls share stays."""
    store.upsert([row("m", 0, 0, unit(0))])
    connection = store.client
    with pytest.raises(StoreRejected, match="search refused by Milvus"):
        store.search(unit(0), 0.5, 10, SearchFilter(ingested_after_ms=-(2**63)))
    with pytest.raises(StoreRejected):
        store.upsert([row("m", 1, 0, np.ones(DIM + 1, np.float32))])
    assert store.client is connection
    assert [h.media_id for h in store.search(unit(0), 0.99, 10)] == ["m"]


def test_an_unreachable_server_is_unavailable(collection_name: str) -> None:
    store = FaceStore(f"http://127.0.0.1:{free_port()}", collection_name, "test-model", DIM, timeout_s=1)
    with pytest.raises(StoreUnavailable):
        store.count()


def test_text_is_cut_to_the_schema_in_utf8_bytes(store: FaceStore) -> None:
    """Milvus's VARCHAR max_length counts bytes: a 4,096-character uri of 2-byte characters is 8 KB."""
    long = FaceRow("m", "/" + "é" * 5000, pb.MEDIA_KIND_IMAGE, 0, 0, (1, 2, 3, 4), 0.99, "€" * 1000, 1, unit(5))
    store.upsert([long])
    (hit,) = store.search(unit(5), 0.99, 10)
    assert long.uri.startswith(hit.uri) and 4096 - 2 < len(hit.uri.encode()) <= 4096
    assert long.source.startswith(hit.source) and 2048 - 3 < len(hit.source.encode()) <= 2048
