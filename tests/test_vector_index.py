"""The vector index settings: what a new collection is built with, what a search asks of each index
type, and the settings that cannot work together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rvs.core.config import StoreSettings
from rvs.core.store.index import VectorIndex


def test_each_type_is_built_with_its_own_settings() -> None:
    assert StoreSettings(index_type="HNSW", index_m=8, index_ef_construction=100).vector_index(128) == VectorIndex(
        "HNSW", {"M": 8, "efConstruction": 100}, 128
    )
    assert StoreSettings(index_type="IVF_SQ8", index_nlist=256, index_search_breadth=16).vector_index(128) == (
        VectorIndex("IVF_SQ8", {"nlist": 256}, 16)
    )
    assert StoreSettings(index_type="IVF_PQ").vector_index(512).build == {"nlist": 1024, "m": 128, "nbits": 8}
    assert StoreSettings(index_type="FLAT").vector_index(128).build == {}


def test_search_parameters_follow_the_index_type() -> None:
    hnsw = VectorIndex("HNSW", {"M": 16, "efConstruction": 200}, 64)
    assert hnsw.params(20) == {"ef": 64}
    assert hnsw.params(500) == {"ef": 500}  # HNSW returns at most ef results
    assert hnsw.range_params(0.5) == {"radius": 0.5, "ef": 64}  # a range search keeps the small ef
    assert VectorIndex("IVF_FLAT", {"nlist": 1024}, 32).range_params(0.4) == {"radius": 0.4, "nprobe": 32}
    assert VectorIndex("DISKANN", {}, 64).params(100) == {"search_list": 100}
    assert VectorIndex("FLAT").params(20) == {}


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValidationError, match="probes more IVF lists than index_nlist"):
        StoreSettings(index_type="IVF_FLAT", index_nlist=16, index_search_breadth=64)
    with pytest.raises(ValidationError, match="index_type"):
        StoreSettings(index_type="ANNOY")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"index_pq_m \(48\) must divide the model's dimension \(128\)"):
        StoreSettings(index_type="IVF_PQ", index_pq_m=48).vector_index(128)


def test_the_index_of_an_existing_collection_is_read_back() -> None:
    described = {"index_type": "IVF_SQ8", "metric_type": "COSINE", "nlist": "2048", "field_name": "embedding"}
    assert VectorIndex.from_milvus(described, 32) == VectorIndex("IVF_SQ8", {"nlist": 2048}, 32)
    nested = {"index_type": "HNSW", "params": {"M": "16", "efConstruction": "200"}}
    assert VectorIndex.from_milvus(nested, 64).describe() == "HNSW(M=16, efConstruction=200)"
