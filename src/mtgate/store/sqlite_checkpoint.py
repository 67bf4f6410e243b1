"""WAL checkpoints off the event loop thread.

SQLite copies the write-ahead log back into the database file in a "checkpoint". Left to the
writing connection, a checkpoint runs inside whichever commit crosses the WAL size threshold:
measured here, one journal call in ~150 then takes 10-15 ms (copying ~1000 pages and fsyncing),
stalling the event loop and every terminal session with it. A thread with its own connection
runs PASSIVE checkpoints instead, which never block the writer; the writer keeps a high
automatic threshold only as a backstop, should this thread fall behind or fail.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mtgate import logs

log = logs.get("mtgate.store")

BACKSTOP_PAGES: Final = 10_000
"""``wal_autocheckpoint`` of the writing connection: ~40 MB of WAL before it checkpoints itself."""


@dataclass(slots=True)
class CheckpointStats:
    """What the checkpoint thread has done, for metrics and tests."""

    runs: int = 0
    failures: int = 0
    wal_frames: int = 0
    """Frames in the WAL at the last run (drops when the writer restarts the WAL)."""
    checkpointed_frames: int = 0
    """Of those, copied into the database file."""


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval_s`` in a daemon thread."""

    def __init__(self, path: Path, *, synchronous: str, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval_s}")
        self.path = path
        self.synchronous = synchronous
        self.interval_s = interval_s
        self.stats = CheckpointStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Connect here, not in the thread, so a file that cannot be opened fails open().
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # The checkpoint's fsyncs follow this connection's level, as the writer's would.
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="mtgate-journal-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop and join the thread (a checkpoint in progress finishes first)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("journal checkpoint thread did not stop", path=str(self.path))

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            # Not fatal: the writer's backstop threshold bounds the WAL. A human should look
            # (disk full, permissions), so ERROR, and try again next interval.
            self.stats.failures += 1
            log.exception("journal checkpoint failed", path=str(self.path))
            return
        self.stats.runs += 1
        self.stats.wal_frames, self.stats.checkpointed_frames = frames, done
