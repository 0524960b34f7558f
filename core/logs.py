"""One logging set-up for every entry point: readable text on a terminal, JSON in containers."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# Credentials must never reach a log line, e.g. http://user:secret@host or s3 keys in URLs.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


def redact(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        media_id = getattr(record, "media_id", None)
        if media_id:
            entry["media_id"] = media_id
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        media_id = getattr(record, "media_id", None)
        line = super().format(record)
        if media_id:
            line += f" media_id={media_id[:12]}"
        return redact(line)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that says nothing useful at INFO.
    for noisy in ("kafka", "pymilvus", "urllib3", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def media_log(media_id: str) -> dict[str, Any]:
    """`extra=` for a log call about one media item, so every such line carries its id."""
    return {"media_id": media_id}
