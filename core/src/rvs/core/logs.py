"""One logging set-up for every entry point: readable text on a terminal, logfmt (key=value) or
JSON for log collectors. A line about a media item carries its id: passed with `extra=media_log(id)`,
or set for everything a thread logs while it works on that item with `media_scope(id)`."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

# Credentials must never reach a log line, e.g. http://user:secret@host or s3 keys in URLs.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_current_media: contextvars.ContextVar[str | None] = contextvars.ContextVar("rvs_media_id", default=None)


def redact(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def media_log(media_id: str) -> dict[str, Any]:
    """`extra=` for a log call about one media item, so every such line carries its id."""
    return {"media_id": media_id}


@contextlib.contextmanager
def media_scope(media_id: str) -> Iterator[None]:
    """Every line logged in this block (by rvs or a library) is about `media_id`."""
    token = _current_media.set(media_id)
    try:
        yield
    finally:
        _current_media.reset(token)


class _MediaContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "media_id", None) is None:
            record.media_id = _current_media.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.media_id:  # type: ignore[attr-defined]
            entry["media_id"] = record.media_id  # type: ignore[attr-defined]
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' "=\\\n\t'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", redact(record.getMessage())),
        ]
        if record.media_id:  # type: ignore[attr-defined]
            pairs.append(("media_id", record.media_id))  # type: ignore[attr-defined]
        if record.exc_info:
            pairs.append(("exc", redact(self.formatException(record.exc_info))))
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in pairs)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.media_id:  # type: ignore[attr-defined]
            line += f" media_id={record.media_id[:12]}"  # type: ignore[attr-defined]
        return redact(line)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = {"json": _JsonFormatter, "logfmt": _LogfmtFormatter}.get(fmt, _TextFormatter)()
    handler.setFormatter(formatter)
    handler.addFilter(_MediaContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that says nothing useful at INFO.
    for noisy in ("kafka", "pymilvus", "urllib3", "PIL", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
