"""One in-process lock per SQLite file, taken by each of its writers around a transaction.

SQLite lets one connection write a file at a time. A second writer that finds the file
locked sleeps in SQLite's busy handler, in steps of 1, 2, 5, 10 ms and more, even when the
lock is released a moment later: the journal's order intents (on the event loop) measured up
to 18 ms of such waits behind the sync store's writes (another connection, in a thread). The
writers of one process take this lock instead, which wakes a waiter the moment the holder
commits; the busy timeout stays as the guard against other processes. Each writer keeps its
transactions short (the sync store writes in parts of ``FLUSH_ROWS_MAX`` rows), so a waiter
waits at most one of them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def writer_lock(database: str | Path) -> threading.Lock:
    """The lock of the SQLite file ``database`` (the same for every spelling of its path)."""
    key = os.path.realpath(database)
    with _guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock
