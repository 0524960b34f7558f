"""The vector index of a face collection: which Milvus index type, built with which parameters, and the
search parameters that go with it. The defaults are the ones `bench/search.py` measured (README,
Scale and sizing); a collection keeps the index it was built with, and searches use that one's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

IndexType = Literal["HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "FLAT"]
INDEX_TYPES: tuple[IndexType, ...] = ("HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "FLAT")

# What each type is built with, and the search parameter that trades speed for recall.
_BUILD_KEYS: dict[str, tuple[str, ...]] = {
    "HNSW": ("M", "efConstruction"),
    "IVF_FLAT": ("nlist",),
    "IVF_SQ8": ("nlist",),
    "IVF_PQ": ("nlist", "m", "nbits"),
    "DISKANN": (),
    "FLAT": (),
}


@dataclass(frozen=True)
class VectorIndex:
    """An index type with its build parameters, and the breadth a search explores: HNSW's `ef`,
    the IVF lists probed (`nprobe`), DiskANN's `search_list` (FLAT is exact and has none)."""

    type: str
    build: dict[str, int] = field(default_factory=dict)
    breadth: int = 128

    def params(self, limit: int) -> dict[str, int]:
        """Search parameters for at most `limit` results."""
        if self.type == "HNSW":
            return {"ef": max(self.breadth, limit)}  # HNSW cannot return more than ef
        if self.type.startswith("IVF_"):
            return {"nprobe": min(self.breadth, self.build.get("nlist", self.breadth))}
        if self.type == "DISKANN":
            return {"search_list": max(self.breadth, limit)}
        return {}

    def range_params(self, min_score: float) -> dict[str, object]:
        """A range search (every face above `min_score`). HNSW's `ef` bounds only how wide each
        step looks, not how many results come back: the small `breadth` finds every face above the
        threshold (tests/test_store.py) several times faster than ef >= limit."""
        return {"radius": float(min_score), **self.params(0)}

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.build.items())
        return f"{self.type}({shown})" if shown else self.type

    @classmethod
    def from_milvus(cls, described: dict[str, object], breadth: int) -> VectorIndex:
        """The index an existing collection was built with (MilvusClient.describe_index)."""
        flat = {**described, **(p if isinstance(p := described.get("params"), dict) else {})}
        kind = str(flat.get("index_type", "HNSW"))
        build = {k: int(str(flat[k])) for k in _BUILD_KEYS.get(kind, ()) if k in flat}
        return cls(kind, build, breadth)
