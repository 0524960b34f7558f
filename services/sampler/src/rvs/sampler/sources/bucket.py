"""A watched S3-compatible bucket (AWS S3, MinIO, versitygw, Ceph...).

Listing is the source of truth: every object under the prefix is compared with what the sampler
has recorded (size and ETag), at start and then every `bucket_list_interval_s`. Bucket event
notifications (a webhook, see notify.py) only make that faster: a notified key is looked at at
once instead of at the next listing. Objects are streamed to a spool file in the data directory
(bounded memory, whatever their size) and hashed on the way; the spool file is deleted once the
media is sampled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from rvs.core.media.kinds import is_ignored_name
from rvs.sampler.config import SamplerSettings
from rvs.sampler.metrics import SamplerMetrics
from rvs.sampler.sources.base import Entry, Fetched, ScanResult, SourceError
from rvs.sampler.sources.notify import NotificationReceiver

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import QueueConfigurationTypeDef

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def source_error(exc: Exception, what: str) -> SourceError:
    """A clear, secret-free message for a failed S3 call."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "ERROR"))
        return SourceError(code, f"{what}: {err.get('Message') or code}")
    if isinstance(exc, NoCredentialsError):
        return SourceError(
            "NO_CREDENTIALS", f"{what}: no S3 credentials (RVS_S3_ACCESS_KEY_ID/RVS_S3_SECRET_ACCESS_KEY)"
        )
    return SourceError("UNREACHABLE", f"{what}: {exc}")


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
    )


class BucketSource:
    kind = "bucket"
    spools = True

    def __init__(self, settings: SamplerSettings, metrics: SamplerMetrics) -> None:
        if not settings.bucket:
            raise ValueError("no bucket to watch: set RVS_BUCKET")
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.bucket_prefix
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.scan_interval_s = settings.bucket_list_interval_s
        self.metrics = metrics
        self.spool = settings.data_dir / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self._client = self._make_client()
        self._wake = threading.Event()
        self._notified: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._last_listing = float("-inf")
        self._receiver: NotificationReceiver | None = None
        if settings.bucket_notify_port:
            token = settings.bucket_notify_token.get_secret_value() if settings.bucket_notify_token else None
            self._receiver = NotificationReceiver(
                settings.bucket_notify_host, settings.bucket_notify_port, token, self._on_notification
            )

    def _make_client(self) -> S3Client:
        s = self.settings
        return boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint_url or None,
            region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key_id or None,
            aws_secret_access_key=s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None,
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path" if s.s3_endpoint_url else "auto"},
            ),
        )

    @property
    def notify_port(self) -> int:
        return self._receiver.port if self._receiver else 0

    def uri_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str:
        return uri.removeprefix(f"s3://{self.bucket}/")

    def owns(self, uri: str) -> bool:
        return uri.startswith(self.uri)

    def start(self) -> None:
        if self._receiver:
            self._receiver.start()
        if self.settings.bucket_notify_arn:
            self._subscribe(self.settings.bucket_notify_arn)

    def close(self) -> None:
        if self._receiver:
            self._receiver.stop()
        self._wake.set()

    def _subscribe(self, arn: str) -> None:
        """Ask the store to send this prefix's created/removed events to `arn` (MinIO: its webhook target)."""
        config: QueueConfigurationTypeDef = {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        if self.prefix:
            config["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.prefix}]}}
        try:
            self._client.put_bucket_notification_configuration(
                Bucket=self.bucket,
                NotificationConfiguration={"QueueConfigurations": [config]},
            )
            log.info("bucket %s sends its events to %s", self.bucket, arn)
        except (BotoCoreError, ClientError) as exc:
            log.warning("cannot subscribe to bucket events, listing only: %s", source_error(exc, self.uri))

    def _on_notification(self, bucket: str, key: str, event: str) -> None:
        if bucket != self.bucket or not key.startswith(self.prefix):
            self.metrics.bucket_notifications.labels("ignored").inc()
            return
        self.metrics.bucket_notifications.labels("removed" if "ObjectRemoved" in event else "created").inc()
        self._notified.put(key)
        self._wake.set()

    # -- scanning

    def scan(self, known: dict[str, tuple[int, str]]) -> ScanResult:
        if time.monotonic() - self._last_listing >= self.settings.bucket_list_interval_s:
            self._drain_notified()  # the listing sees whatever they announced
            result = self._list(known)
            self._last_listing = time.monotonic()
            return result
        return self._look_at(self._drain_notified(), known)

    def _drain_notified(self) -> set[str]:
        keys = set()
        while True:
            try:
                keys.add(self._notified.get_nowait())
            except queue.Empty:
                return keys

    def _listable(self, key: str) -> bool:
        return not key.endswith("/") and not is_ignored_name(key.rsplit("/", 1)[-1])

    def _list(self, known: dict[str, tuple[int, str]]) -> ScanResult:
        current: dict[str, Entry] = {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if self._listable(key):
                        uri = self.uri_of(key)
                        current[uri] = Entry(uri, obj["Size"], obj["ETag"].strip('"'))
        except (BotoCoreError, ClientError) as exc:
            raise source_error(exc, f"cannot list {self.uri}") from exc
        ready = [e for uri, e in sorted(current.items()) if known.get(uri) != (e.size, e.version)]
        return ScanResult(ready=ready, removed=[uri for uri in known if uri not in current])

    def _look_at(self, keys: set[str], known: dict[str, tuple[int, str]]) -> ScanResult:
        """Check notified keys one by one. Keys in events are URL-encoded by AWS and MinIO but
        not by every store, so both spellings are tried."""
        result = ScanResult(ready=[], removed=[])
        for key in sorted({k for raw in keys for k in (raw, unquote_plus(raw))}):
            if not self._listable(key):
                continue
            uri = self.uri_of(key)
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=key)
            except (BotoCoreError, ClientError) as exc:
                if not _not_found(exc):
                    raise source_error(exc, f"cannot read {uri}") from exc
                if uri in known:
                    result.removed.append(uri)
                continue
            entry = Entry(uri, head["ContentLength"], head["ETag"].strip('"'))
            if known.get(uri) != (entry.size, entry.version):
                result.ready.append(entry)
        return result

    def settled(self) -> bool:
        return self._notified.empty()  # a listing returns every object it finds at once

    def wait(self, timeout_s: float, stopping: threading.Event) -> None:
        deadline = time.monotonic() + timeout_s
        while not stopping.is_set() and time.monotonic() < deadline:
            if self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                self._wake.clear()
                return

    # -- content

    def _download(self, key: str, etag: str | None) -> Fetched:
        """Stream the object to a spool file, hashing it on the way (constant memory)."""
        uri = self.uri_of(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'  # the version we listed, not one written since
        fd, tmp = tempfile.mkstemp(dir=self.spool, prefix=".download-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                body = self._client.get_object(**kwargs)["Body"]
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    self.metrics.bucket_bytes.inc(len(chunk))
            media_id = digest.hexdigest()
            path = self.spool / media_id
            os.replace(tmp, path)
            return Fetched(media_id, path)
        except (BotoCoreError, ClientError) as exc:
            if _not_found(exc):
                raise FileNotFoundError(uri) from exc
            raise source_error(exc, f"cannot download {uri}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    def fetch(self, entry: Entry) -> Fetched:
        return self._download(self.key_of(entry.uri), entry.version)

    def local_path(self, uri: str, media_id: str) -> Path:
        path = self.spool / media_id
        if path.exists():
            return path
        fetched = self._download(self.key_of(uri), None)
        if fetched.media_id != media_id:
            self.release(fetched.media_id)
            raise FileNotFoundError(f"{uri} has changed since it was discovered")
        return fetched.path

    def release(self, media_id: str) -> None:
        (self.spool / media_id).unlink(missing_ok=True)
