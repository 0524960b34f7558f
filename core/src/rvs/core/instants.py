"""Points in time as people write them (ISO 8601, or unix milliseconds) and as rvs shows them."""

from __future__ import annotations

from datetime import UTC, datetime

# Times a request may name: unix milliseconds from 1970 to the end of year 9999.
MAX_UNIX_MS = 253_402_300_799_999


def parse_instant(text: str) -> int:
    """Unix ms of `text`: a whole number of unix ms, or an ISO 8601 date or time (without a zone:
    local time), from 1970 to year 9999. ValueError says what is accepted."""
    text = text.strip()
    try:
        value = int(text) if text.isdigit() else round(datetime.fromisoformat(text).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        value = -1
    if not 0 <= value <= MAX_UNIX_MS:
        raise ValueError(
            f"{text[:64]!r} is not a time from 1970 to 9999: give unix milliseconds or ISO 8601 (2026-12-01, "
            "2026-12-01T18:30, 2026-12-01T18:30:00Z)"
        )
    return value


def show_instant(ms: int) -> str:
    """Unix ms as local ISO 8601 to the second, with its UTC offset."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone().isoformat(timespec="seconds")
