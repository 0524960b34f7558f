"""FaceStore: upsert, search and delete face vectors in a Milvus collection."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import (
    AutoIDException,
    DataNotMatchException,
    DataTypeNotMatchException,
    DataTypeNotSupportException,
    FieldsTypeException,
    FieldTypeException,
    MilvusException,
    ParamError,
    PrimaryKeyException,
)

from rvs.core.config import StoreSettings
from rvs.core.retry import Backoff
from rvs.core.store.index import VectorIndex
from rvs.v1 import rvs_pb2 as pb

log = logging.getLogger(__name__)

MAX_SEARCH_LIMIT = 16384  # Milvus's cap on one search's (and one query's) result count
_OUTPUT_FIELDS = ["media_id", "uri", "kind", "time_ms", "x1", "y1", "x2", "y2", "det_score", "source", "ingested_at_ms"]


class IndexModelMismatch(RuntimeError):
    """The collection holds vectors of another model; mixing models in one index is refused."""


class StoreUnavailable(RuntimeError):
    """Milvus cannot be reached, timed out or is not ready; the caller retries."""


class StoreRejected(ValueError):
    """Milvus refused the request itself (bad data, bad expression): retrying cannot help."""


# What a pymilvus call raises: its own exceptions, and gRPC's (a deadline) that it passes through.
_ERRORS = (MilvusException, grpc.RpcError)
# pymilvus's own checks of a request before sending it.
_CLIENT_INPUT_ERRORS = (
    ParamError,
    DataTypeNotMatchException,
    DataTypeNotSupportException,
    DataNotMatchException,
    PrimaryKeyException,
    FieldsTypeException,
    FieldTypeException,
    AutoIDException,
)
# Milvus's error codes (merr) for a request it refuses: invalid, missing or too large parameters.
_PARAMETER_CODES = range(1100, 1200)
# Milvus's "undefined" code: what its proxy answers for a request it cannot plan or check, e.g. an
# unparsable filter expression or a vector of the wrong length. Outages come with service codes
# (not ready, unavailable, rate limited) or as gRPC errors instead.
_UNDEFINED_CODE = 65535


def is_rejection(exc: Exception) -> bool:
    """Whether Milvus (or pymilvus, before sending) refused the request itself, rather than failed to
    serve it; judged by error class and code, not by message text."""
    if not isinstance(exc, MilvusException) or isinstance(exc.code, grpc.StatusCode):
        return False  # gRPC failures, also after pymilvus's retries: connection lost, deadline
    if isinstance(exc, _CLIENT_INPUT_ERRORS) or exc.is_input_error:
        return True
    return exc.code in _PARAMETER_CODES or exc.code == _UNDEFINED_CODE


def _utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` within `max_bytes` of UTF-8 (Milvus's VARCHAR max_length counts
    bytes, not characters), never splitting a character; a lone surrogate becomes '?'."""
    return text.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")


def face_key(media_id: str, time_ms: int, face_index: int) -> str:
    """Deterministic primary key: replays overwrite the same row instead of adding one."""
    return f"{media_id}:{time_ms}:{face_index}"


@dataclass(frozen=True)
class FaceRow:
    media_id: str
    uri: str
    kind: int
    time_ms: int
    face_index: int
    box: tuple[float, float, float, float]
    det_score: float
    source: str
    ingested_at_ms: int
    vector: np.ndarray

    @property
    def key(self) -> str:
        return face_key(self.media_id, self.time_ms, self.face_index)


@dataclass(frozen=True)
class FaceHit:
    key: str
    media_id: str
    uri: str
    kind: int
    time_ms: int
    box: tuple[float, float, float, float]
    det_score: float
    source: str
    score: float
    ingested_at_ms: int = 0  # unix ms of the media item's time 0 (a photo's discovery)


@dataclass(frozen=True)
class StoredFace:
    """An indexed face with its vector, as tracks and "find this person" read it back."""

    key: str
    media_id: str
    time_ms: int
    box: tuple[float, float, float, float]
    det_score: float
    vector: np.ndarray


_STORED_FIELDS = ["id", "media_id", "time_ms", "x1", "y1", "x2", "y2", "det_score", "embedding"]


def _stored(row: dict[str, object]) -> StoredFace:
    return StoredFace(
        key=str(row["id"]),
        media_id=str(row["media_id"]),
        time_ms=int(row["time_ms"]),  # type: ignore[call-overload]
        box=(float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"])),  # type: ignore[arg-type]
        det_score=float(row["det_score"]),  # type: ignore[arg-type]
        vector=np.asarray(row["embedding"], dtype=np.float32),
    )


def _quote(value: str) -> str:
    # A JSON string literal is a Milvus expression string literal; characters stay raw UTF-8,
    # because Milvus's parser rejects the surrogate-pair escapes of characters beyond U+FFFF.
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class SearchFilter:
    kind: int = 0  # 0: all kinds
    source_prefix: str = ""
    ingested_after_ms: int = 0
    ingested_before_ms: int = 0
    # Seen in [seen_after_ms, seen_before_ms) (0: open), for photos exactly; for a video, every face
    # of a media item that can have a segment there: begun before the window ends, and begun at most
    # `longest_video_ms` before it starts (a face's row has no end time to compare).
    seen_after_ms: int = 0
    seen_before_ms: int = 0
    longest_video_ms: int | None = None  # None: unknown, no lower bound for videos

    def _seen(self) -> str:
        before = f" and ingested_at_ms < {int(self.seen_before_ms)}" if self.seen_before_ms else ""
        photos = f"ingested_at_ms >= {int(self.seen_after_ms)}{before}"
        videos = before.removeprefix(" and ")
        if self.seen_after_ms and self.longest_video_ms is not None:
            reach = f"ingested_at_ms > {int(self.seen_after_ms) - int(self.longest_video_ms)}"
            videos = f"{reach}{before}"
        photo = f"kind == {int(pb.MEDIA_KIND_IMAGE)}"
        video = f"kind != {int(pb.MEDIA_KIND_IMAGE)}"
        kinds = [f"({photo} and {photos})", f"({video} and {videos})" if videos else video]
        return f"({' or '.join(kinds)})"

    def expression(self) -> str:
        parts = []
        if self.kind:
            parts.append(f"kind == {int(self.kind)}")
        if self.source_prefix:
            if "%" in self.source_prefix:
                raise ValueError("source_prefix must not contain '%'")
            parts.append(f"source like {_quote(self.source_prefix + '%')}")
        if self.ingested_after_ms:
            parts.append(f"ingested_at_ms >= {int(self.ingested_after_ms)}")
        if self.ingested_before_ms:
            parts.append(f"ingested_at_ms < {int(self.ingested_before_ms)}")
        if self.seen_after_ms or self.seen_before_ms:
            parts.append(self._seen())
        return " and ".join(parts)


class FaceStore:
    def __init__(
        self,
        uri: str,
        collection: str,
        model: str,
        dim: int,
        token: str | None = None,
        timeout_s: float = 10.0,
        consistency: str = "Session",
        index: VectorIndex | None = None,
        shards: int = 1,
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.model = model
        self.dim = dim
        self._token = token
        self._timeout = timeout_s
        self.consistency = consistency
        self._wanted = index or VectorIndex("HNSW", {"M": 16, "efConstruction": 200})
        self.index = self._wanted  # the collection's own once open
        self._shards = shards
        self._client: MilvusClient | None = None

    @property
    def client(self) -> MilvusClient:
        if self._client is None:
            # (Re)connect lazily: after an outage a fresh channel is up at once, where the old one
            # would wait out gRPC's reconnect back-off. Dedicated: pymilvus otherwise shares one
            # connection per address in the process, and a closed client would hand the next one
            # the same broken channel.
            try:
                self._client = MilvusClient(
                    uri=self.uri, token=self._token or "", timeout=self._timeout, dedicated=True
                )
            except MilvusException as exc:
                raise StoreUnavailable(f"cannot connect to Milvus at {self.uri}: {exc}") from exc
        return self._client

    def _failed(self, what: str, exc: Exception) -> StoreUnavailable | StoreRejected:
        """Describe the failure. After an outage, drop the connection so the next call reconnects; a
        refused request or a timeout says nothing against the connection, which every call shares."""
        if is_rejection(exc):
            assert isinstance(exc, MilvusException)
            return StoreRejected(f"{what} refused by Milvus: {exc.message}")
        timed_out = isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        if self._client is not None and not timed_out:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        return StoreUnavailable(f"{what} failed: {exc}")

    def open(self, wait_s: float = 60.0) -> None:
        """Connect and create the collection if absent; refuse a collection made by another model.

        Waits up to `wait_s` for Milvus to be reachable and for a collection that another service
        is creating at the same moment to be ready (it has no index for a short while)."""
        self._retrying(self._open, wait_s)

    def open_client(self, wait_s: float = 60.0) -> None:
        """Connect only (waiting for Milvus like `open`), to look at the server's collections."""

        def connect() -> None:
            try:
                self.client.list_collections()
            except _ERRORS as exc:
                raise self._failed(f"connecting to Milvus at {self.uri}", exc) from exc

        self._retrying(connect, wait_s)

    def _retrying(self, step: Callable[[], None], wait_s: float) -> None:
        def waiting(exc: Exception, delay: float) -> None:
            log.info("Milvus not ready (%s); retrying in %.1fs", exc, delay)

        Backoff(max_s=5.0).run(step, StoreUnavailable, waiting, give_up_after_s=wait_s)

    def _open(self) -> None:
        try:
            if self.client.has_collection(self.collection):
                self._check_model()
            else:
                self._create()
            self.index = self._built_index()
            self.client.load_collection(self.collection)
        except _ERRORS as exc:
            raise self._failed(f"opening Milvus at {self.uri}", exc) from exc

    def _identity(self) -> str:
        return json.dumps({"rvs_model": self.model, "dim": self.dim})

    def _check_model(self) -> None:
        desc = self.client.describe_collection(self.collection)
        try:
            found = json.loads(desc.get("description") or "{}")
        except json.JSONDecodeError:
            found = {}
        if found.get("rvs_model") != self.model or found.get("dim") != self.dim:
            raise IndexModelMismatch(
                f"collection {self.collection!r} holds vectors of model {found.get('rvs_model')!r} "
                f"(dim {found.get('dim')}), not {self.model!r} (dim {self.dim}); vectors of different "
                f"models cannot be compared. Use another RVS_COLLECTION or the collection's model."
            )

    def _create(self) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False, description=self._identity())
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=160)
        schema.add_field("media_id", DataType.VARCHAR, max_length=64)
        schema.add_field("uri", DataType.VARCHAR, max_length=4096)
        schema.add_field("kind", DataType.INT8)
        schema.add_field("time_ms", DataType.INT64)
        schema.add_field("face_index", DataType.INT16)
        for name in ("x1", "y1", "x2", "y2", "det_score"):
            schema.add_field(name, DataType.FLOAT)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("ingested_at_ms", DataType.INT64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name="embedding", index_type=self._wanted.type, metric_type="COSINE", params=self._wanted.build
        )
        # Growing segments are searched too: new faces need no flush to be found.
        self.client.create_collection(
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level=self.consistency,
            shards_num=self._shards,
        )
        log.info(
            "created collection %s for model %s (dim %d, %s)",
            self.collection,
            self.model,
            self.dim,
            self._wanted.describe(),
        )

    def _built_index(self) -> VectorIndex:
        """The index the collection has, whatever the settings say now: searches must use its parameters."""
        described = self.client.describe_index(self.collection, "embedding") or {}
        built = VectorIndex.from_milvus(described, self._wanted.breadth)
        if built.describe() != self._wanted.describe():
            log.warning(
                "collection %s was built with %s, not %s as configured: the configured index applies to new "
                "collections (rvs reindex builds one)",
                self.collection,
                built.describe(),
                self._wanted.describe(),
            )
        return built

    def upsert(self, rows: Sequence[FaceRow]) -> None:
        if not rows:
            return
        data = [
            {
                "id": r.key,
                "media_id": r.media_id,
                "uri": _utf8_prefix(r.uri, 4096),
                "kind": int(r.kind),
                "time_ms": int(r.time_ms),
                "face_index": int(r.face_index),
                "x1": r.box[0],
                "y1": r.box[1],
                "x2": r.box[2],
                "y2": r.box[3],
                "det_score": float(r.det_score),
                "source": _utf8_prefix(r.source, 2048),
                "ingested_at_ms": int(r.ingested_at_ms),
                "embedding": r.vector.astype(np.float32).tolist(),
            }
            for r in rows
        ]
        try:
            self.client.upsert(self.collection, data, timeout=self._timeout)
        except _ERRORS as exc:
            raise self._failed(f"upsert of {len(rows)} faces", exc) from exc

    def search(
        self,
        vector: np.ndarray,
        min_score: float,
        limit: int,
        where: SearchFilter | None = None,
        timeout_s: float | None = None,
    ) -> list[FaceHit]:
        """Faces with cosine similarity above `min_score`, best first, at most `limit`."""
        limit = max(1, min(limit, MAX_SEARCH_LIMIT))
        params = self.index.range_params(min_score) if min_score > -1.0 else self.index.params(limit)
        try:
            results = self.client.search(
                self.collection,
                data=[vector.astype(np.float32).tolist()],
                limit=limit,
                filter=(where.expression() if where else ""),
                output_fields=_OUTPUT_FIELDS,
                search_params={"metric_type": "COSINE", "params": params},
                consistency_level=self.consistency,
                timeout=min(self._timeout, timeout_s) if timeout_s is not None else self._timeout,
            )
        except _ERRORS as exc:
            raise self._failed("search", exc) from exc
        hits = []
        for hit in results[0]:
            e = hit["entity"]
            score = float(hit["distance"])
            if score < min_score:
                continue
            hits.append(
                FaceHit(
                    key=str(hit["id"]),
                    media_id=e["media_id"],
                    uri=e["uri"],
                    kind=int(e["kind"]),
                    time_ms=int(e["time_ms"]),
                    box=(e["x1"], e["y1"], e["x2"], e["y2"]),
                    det_score=float(e["det_score"]),
                    source=e["source"],
                    score=min(score, 1.0),
                    ingested_at_ms=int(e["ingested_at_ms"]),
                )
            )
        return hits

    def _query(self, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, object]]:
        try:
            rows = self.client.query(
                self.collection,
                filter=expr,
                output_fields=fields,
                limit=limit,
                consistency_level=self.consistency,
                timeout=self._timeout,
            )
        except _ERRORS as exc:
            raise self._failed("query", exc) from exc
        return list(rows)

    def faces(self, keys: Sequence[str]) -> list[StoredFace]:
        """The indexed faces with these ids (unknown ids are left out), with their vectors."""
        found: list[StoredFace] = []
        unique = sorted(set(keys))
        for i in range(0, len(unique), 1000):
            chunk = json.dumps(unique[i : i + 1000], ensure_ascii=False)
            found += [_stored(r) for r in self._query(f"id in {chunk}", _STORED_FIELDS)]
        return found

    def faces_of(self, media_id: str, window_ms: int = 3_600_000) -> list[StoredFace]:
        """Every face of one media item with its vector, in time order. A Milvus query returns at
        most 16,384 rows: a longer video is read in windows of time, narrowed where one is full."""
        where = f"media_id == {_quote(media_id)}"
        if self._count(where) < MAX_SEARCH_LIMIT:
            rows = self._query(where, _STORED_FIELDS, MAX_SEARCH_LIMIT)
        else:
            rows, start = [], 0
            while self._count(f"{where} and time_ms >= {start}"):
                window = self._query(
                    f"{where} and time_ms >= {start} and time_ms < {start + window_ms}",
                    _STORED_FIELDS,
                    MAX_SEARCH_LIMIT,
                )
                if len(window) >= MAX_SEARCH_LIMIT and window_ms > 1:
                    window_ms //= 2
                    continue
                rows += window
                start += window_ms
        return sorted((_stored(r) for r in rows), key=lambda f: (f.time_ms, f.key))

    def delete_media(self, media_id: str) -> int:
        try:
            result = self.client.delete(
                self.collection, filter=f"media_id == {_quote(media_id)}", timeout=self._timeout
            )
        except _ERRORS as exc:
            raise self._failed(f"delete of {media_id}", exc) from exc
        return int(result.get("delete_count", 0)) if isinstance(result, dict) else len(result)

    def drop(self) -> None:
        """Delete the whole collection (evaluation runs clean up after themselves)."""
        try:
            self.client.drop_collection(self.collection)
        except _ERRORS as exc:
            raise self._failed(f"drop of {self.collection}", exc) from exc

    def count(self, media_id: str | None = None) -> int:
        return self._count(f"media_id == {_quote(media_id)}" if media_id else 'media_id != ""')

    def _count(self, expr: str) -> int:
        rows = self._query(expr, ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0  # type: ignore[call-overload]

    def keys(self, media_id: str) -> list[str]:
        """Primary keys of one media's faces (for tests and audits)."""
        rows = self.client.query(
            self.collection,
            filter=f"media_id == {_quote(media_id)}",
            output_fields=["id"],
            consistency_level=self.consistency,
        )
        return sorted(r["id"] for r in rows)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def collection_for(base: str, model: str) -> str:
    """The collection of one model: RVS_COLLECTION plus the model (one collection per model, so a
    reindex builds the new one while searches read the old)."""
    return f"{base}__{model.replace('-', '_')}"


def recorded_model(client: MilvusClient, collection: str) -> str | None:
    """The model a collection records in its description; None if there is no such collection."""
    if not client.has_collection(collection):
        return None
    try:
        found = json.loads(client.describe_collection(collection).get("description") or "{}")
    except json.JSONDecodeError:
        found = {}
    return str(found.get("rvs_model", ""))


def legacy_model(settings: StoreSettings, uri: str) -> str | None:
    """The model of a collection named RVS_COLLECTION itself, as rvs made before one collection per
    model (None when there is none): that index is adopted, not started again empty."""
    store = FaceStore(uri, settings.collection, "", 0, _token(settings))
    store.open_client()
    try:
        return recorded_model(store.client, settings.collection)
    except _ERRORS as exc:
        raise store._failed(f"reading collections at {uri}", exc) from exc
    finally:
        store.close()


def _token(settings: StoreSettings) -> str | None:
    return settings.milvus_token.get_secret_value() if settings.milvus_token else None


def open_face_store(settings: StoreSettings, uri: str, model: str, dim: int) -> FaceStore:
    """The face store of `model` that a service's settings describe, connected and ready (`uri`:
    where Milvus is): `collection_for(RVS_COLLECTION, model)`, or RVS_COLLECTION itself when that is a
    collection of this model made before per-model collections (adopted: no data lost on upgrade)."""
    name = collection_for(settings.collection, model)
    if legacy_model(settings, uri) == model:
        probe = FaceStore(uri, name, model, dim, _token(settings))
        probe.open_client()
        try:
            if not probe.client.has_collection(name):
                name = settings.collection
        except _ERRORS as exc:
            raise probe._failed(f"reading collections at {uri}", exc) from exc
        finally:
            probe.close()
    store = FaceStore(
        uri,
        name,
        model,
        dim,
        _token(settings),
        consistency=settings.consistency,
        index=settings.vector_index(dim),
        shards=settings.index_shards,
    )
    store.open()
    return store
