from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, HttpUrl, SecretStr, model_validator

from rvs.core.config import BusSettings, ModelSettings, StoreSettings, is_loopback
from rvs.core.retention import RetentionRules


class QuerySettings(ModelSettings, StoreSettings, BusSettings):
    """The gRPC API and the search page."""

    host: str = "127.0.0.1"
    """Interface the gRPC server binds to (0.0.0.0 in containers)."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port."""
    max_message_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    """Largest request accepted (the query image travels inside it)."""
    max_image_pixels: int = Field(50_000_000, ge=1)
    """Query images with more pixels than this are refused before decoding."""
    default_top_k: int = Field(20, ge=1)
    """Photos and videos returned when a request leaves top_k at 0."""
    max_top_k: int = Field(1000, ge=1)
    """Largest top_k a request may ask for."""
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    """Default similarity threshold; unset uses the model's recommended value."""
    search_candidates: int = Field(4096, ge=1, le=16384)
    """Faces fetched from Milvus per search before grouping into photos and video segments."""
    track_min_samples: int = Field(2, ge=1)
    """A video track whose template reaches min_score matches if it has this many samples, or its best
    sample is a strong match: one sample of a stranger that grazes the threshold is not a hit."""
    strong_match_margin: float = Field(0.1, ge=0.0, le=2.0)
    """A track's single sample at least min_score + this is a match on its own (a face seen once)."""
    track_candidate_margin: float = Field(0.1, ge=0.0, le=2.0)
    """Videos with a face down to min_score minus this are judged by their tracks: a template can
    score above every face it averages."""
    track_link_min_score: float | None = Field(None, ge=-1.0, le=1.0)
    """Faces of consecutive samples at least this similar are one track wherever they are in the
    frame; unset uses the model's threshold."""
    track_link_overlap_margin: float = Field(0.4, ge=0.0, le=1.0)
    """A face whose box overlaps the track's last box (IoU >= 0.3) continues it at a lower bar:
    track_link_min_score lowered by this share of its distance from 1 (models spread their scores
    differently: 0.54 becomes 0.36 for sface, 0.92 becomes 0.89 for dlib-resnet)."""
    track_max_missed: int = Field(2, ge=0)
    """Samples a track may miss (the face turned or hidden) and still continue."""
    track_cache_faces: int = Field(500_000, ge=0)
    """Faces of videos whose tracks are kept between searches (least recently used dropped first)."""
    max_rejections: int = Field(256, ge=0)
    """Faces and tracks one query may reject ("not this person")."""
    max_query_video_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest clip SearchByVideo and the page accept (under max_message_bytes)."""
    max_query_video_s: float = Field(300.0, gt=0)
    """Longest clip SearchByVideo samples; a longer one is refused (VIDEO_TOO_LONG)."""
    query_video_fps: float = Field(1.0, gt=0, le=10)
    """Samples per second taken from a query clip."""
    max_query_tracks: int = Field(8, ge=1, le=64)
    """Tracks of a query clip answered when the request leaves max_tracks at 0 (longest first); the
    largest a request may ask for is 64."""
    people_clustering: bool = True
    """Cluster finished media's tracks and photo faces into people here (ListPeople and the People
    view). Exactly one query service of an index must: the others read its result from the bus."""
    people_interval_s: float = Field(5.0, gt=0)
    """Seconds between two clustering passes over newly finished media."""
    people_batch_media: int = Field(500, ge=1)
    """Media items clustered in one pass (a backlog is taken batch after batch)."""
    people_min_score: float | None = Field(None, ge=-1.0, le=1.0)
    """Similarity at which units are one person; unset: derived from the model's threshold."""
    people_min_faces: int | None = Field(None, ge=1)
    """Faces a new person needs (a track counts its samples); unset: the clustering default."""
    retention_days: float = Field(0.0, ge=0)
    """Media whose end (a stream segment's start or a file's discovery, plus its length) is older
    than this many days are removed from the index and the catalog (0: kept forever)."""
    source_retention_days: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Per source prefix, its own retention_days, as JSON ({"stream:cam1": 7, "s3://uploads/tmp/": 1});
    the longest matching prefix wins (0: forever)."""
    retention_interval_s: float = Field(3600.0, gt=0)
    """Seconds between two retention passes (every query service runs them: removal is idempotent)."""
    max_query_faces: int = Field(64, ge=1, le=1024)
    """Faces of a query photo that are reported (largest first) and may be chosen with face_index;
    only the searched one is embedded."""
    rpc_workers: int = Field(8, ge=1)
    """Searches (and search page requests) whose costly steps (decoding, detection, embedding) run at
    once; more wait for a slot within their deadline. Health checks and cheap RPCs never wait for one."""
    max_concurrent_rpcs: int = Field(64, ge=1)
    """RPCs in flight beyond this are refused with RESOURCE_EXHAUSTED; each one admitted has a thread at
    once, so a call whose message never comes holds no search slot."""
    grpc_keepalive_s: float = Field(60.0, gt=0)
    """The gRPC server pings a connection idle this long, to find peers that are gone."""
    grpc_keepalive_timeout_s: float = Field(20.0, gt=0)
    """A connection whose peer does not answer a ping within this is closed."""
    grpc_max_connection_idle_s: float = Field(300.0, gt=0)
    """A connection without RPCs for this long is closed (clients reconnect transparently)."""
    grpc_max_connection_age_s: float = Field(600.0, gt=0)
    """A connection older than this is asked to go away (clients reconnect transparently)."""
    grpc_max_connection_age_grace_s: float = Field(60.0, gt=0)
    """RPCs still running on a connection past its age get this long; then the connection is closed,
    which also ends calls that never sent their message."""
    rpc_deadline_s: float = Field(30.0, gt=0)
    """Longest a request may run (a client's shorter deadline wins); a Search past it ends with
    DEADLINE_EXCEEDED."""
    auth_token: SecretStr | None = None
    """If set, every RPC but health checks must carry the metadata `authorization: Bearer <token>`
    (else UNAUTHENTICATED). Required when host or web_host is not a loopback address."""
    allow_unauthenticated: bool = False
    """Serve gRPC and the search page on a non-loopback address without auth_token: anyone who
    reaches the port can search the index and delete media. Only behind another authenticating layer."""
    tls_cert_file: Path | None = None
    """PEM certificate chain of the gRPC server; with tls_key_file, the server speaks TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of the gRPC server."""
    tls_client_ca_file: Path | None = None
    """PEM CA bundle: if set, clients must present a certificate it signed (mutual TLS)."""
    web_host: str = "127.0.0.1"
    """Interface the search page binds to."""
    web_port: int = Field(8080, ge=0, le=65535)
    """Port of the search page (HTTPS with the gRPC server's TLS files, else HTTP; 0: off)."""
    web_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """Memory for the thumbnails and video frames the search page made (least recently used
    dropped first; 0: none kept)."""
    web_media_dirs: tuple[Path, ...] = ()
    """Folders the search page serves photos and videos from (the watched folders; `rvs up` adds its
    --watch folder). A file outside them, behind a symbolic link, or whose content is no longer what
    was indexed is not served."""
    web_allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    """Host names the search page answers to (the Host header without its port; web_host is added when
    it is a specific address); other names are refused, against DNS rebinding. "*": any."""
    web_idle_timeout_s: int = Field(10, ge=1)
    """Seconds a connection to the search page may stay open without a whole request head (new,
    between requests, or half sent) before it is closed."""
    web_session_ttl_s: float = Field(12 * 3600, gt=0)
    """Lifetime of a search page login (session cookie); logging out ends it at once."""
    alert_webhook_url: HttpUrl | None = None
    """POST every new alert here (JSON, signed with alert_webhook_secret). Set it on one query service
    of an index: each one configured delivers every alert."""
    alert_webhook_secret: SecretStr | None = None
    """Shared secret of the webhook's signature (X-Rvs-Signature: sha256=<hex HMAC-SHA256 of the body>)."""
    alert_webhook_timeout_s: float = Field(10.0, gt=0)
    """Longest a webhook POST may take before it counts as failed (and is retried)."""
    alerts_kept: int = Field(10_000, ge=1)
    """Alerts kept in the catalog (the newest) for WatchAlerts' since_ms and the page."""
    alerts_kept_days: float = Field(30.0, gt=0)
    """Alerts older than this leave the catalog."""
    alert_poll_s: float = Field(0.25, gt=0, le=5)
    """How often an open WatchAlerts call looks for new alerts (and for its client having gone)."""
    max_alert_streams: int = Field(16, ge=1)
    """WatchAlerts calls open at once (each holds a thread; the page polls instead); more are refused
    with RESOURCE_EXHAUSTED (TOO_MANY_STREAMS). Keep it below max_concurrent_rpcs."""

    @model_validator(mode="after")
    def _no_open_network_access(self) -> QuerySettings:
        exposed = [h for h in (self.host, self.web_host if self.web_port else "127.0.0.1") if not is_loopback(h)]
        if exposed and self.auth_token is None and not self.allow_unauthenticated:
            raise ValueError(
                f"refusing to serve on {exposed[0]} without a token: anyone on the network could search the "
                f"index and delete media. Set RVS_AUTH_TOKEN (e.g. `openssl rand -hex 32`), or bind 127.0.0.1, "
                f"or set RVS_ALLOW_UNAUTHENTICATED=true if another layer authenticates every request"
            )
        return self

    @property
    def retention(self) -> RetentionRules:
        return RetentionRules(self.retention_days, self.source_retention_days)

    @model_validator(mode="after")
    def _clip_fits_a_message(self) -> QuerySettings:
        if self.max_query_video_bytes >= self.max_message_bytes:
            raise ValueError(
                f"max_query_video_bytes ({self.max_query_video_bytes}) must be below max_message_bytes "
                f"({self.max_message_bytes}): the clip travels inside one request"
            )
        return self

    @model_validator(mode="after")
    def _webhook_signed(self) -> QuerySettings:
        if self.alert_webhook_url is not None and self.alert_webhook_secret is None:
            raise ValueError("alert_webhook_url needs alert_webhook_secret: the receiver checks each alert's signature")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> QuerySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self
