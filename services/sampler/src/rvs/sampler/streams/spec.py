"""A stream's name and URL as configured (`NAME=URL`), the URL as it may be shown (without its
credentials), and the media id of one of its segments."""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "srt", "http", "https", "udp", "rtp"})


def redact_url(url: str) -> str:
    """`url` without a password or user name in it: rtsp://user:pass@host/x -> rtsp://***@host/x."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"stream name {name!r}: use 1 to 64 letters, digits, '_' or '-'")
    return name


def check_url(name: str, url: str) -> str:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"stream {name}: {redact_url(url)!r} is not a stream URL ({', '.join(sorted(SCHEMES))}://...)")
    return url


def parse_streams(value: object) -> dict[str, str]:
    """Streams as settings give them: a mapping (or a JSON object), `NAME=URL` items (repeated
    --stream flags), or one string of `NAME=URL` separated by spaces (RVS_STREAMS). Raises
    ValueError naming the bad item, its URL redacted."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"streams: not a JSON object of name to URL ({exc.msg})") from None
    if isinstance(value, dict):
        items = [(str(k), v.get_secret_value() if isinstance(v, SecretStr) else str(v)) for k, v in value.items()]
    else:
        texts = value.split() if isinstance(value, str) else [str(v) for v in value or ()]  # type: ignore[attr-defined]
        items = []
        for text in texts:
            name, eq, url = text.partition("=")
            if not eq or not url:
                raise ValueError(f"stream {redact_url(text)!r}: give it as NAME=URL (cam1=rtsp://host/path)")
            items.append((name, url))
    streams: dict[str, str] = {}
    for name, url in items:
        if name in streams:
            raise ValueError(f"stream {name} is given twice")
        streams[check_name(name)] = check_url(name, url)
    return streams


def segment_id(name: str, started_at_ms: int) -> str:
    """A segment's media id: the stream and the wall-clock time of its start (a stream is not content)."""
    return hashlib.sha256(f"stream\0{name}\0{started_at_ms}".encode()).hexdigest()


def source_of(name: str) -> str:
    return f"stream:{name}"
