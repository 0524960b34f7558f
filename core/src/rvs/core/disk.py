"""Telling "the state directory is full" apart from other failures: it is retried, never blamed on
the media item being processed."""

from __future__ import annotations

import errno
import sqlite3

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(exc: BaseException) -> bool:
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e):
            return True
    return False
