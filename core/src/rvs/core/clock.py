"""Wall-clock time as the messages carry it (`at_ms`, `indexed_at_ms`: milliseconds since the epoch)."""

from __future__ import annotations

import time
from collections.abc import Callable


def now_ms() -> int:
    return time.time_ns() // 1_000_000


Clock = Callable[[], int]
"""What services read the time from (unix ms): now_ms, or a test's clock."""
