"""SQLite connections: one per thread (and per process), tuned for a small server.

WAL lets readers proceed while a refresh writes; `synchronous=FULL` makes a
committed rotated refresh token survive a power cut; `busy_timeout` turns
lock contention into a short wait instead of an error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

BUSY_TIMEOUT_MS = 5000
PAGE_CACHE_KIB = 1024


def connect(path: Path) -> sqlite3.Connection:
    """Open a connection with the pragmas TokenKeep relies on."""
    ensure_private_file(path)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Every gunicorn thread has a connection; SQLite's default 2 MB page cache
    # each made a worker serving 10,000 providers grow by ~16 MB. The OS page
    # cache keeps the file hot anyway (bench/: no measurable CPU cost).
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    return conn


def ensure_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite does.

    SQLite gives the -wal and -shm files the mode of the database file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


class Database:
    """Hands out one reused connection per thread; safe across fork (gunicorn).

    Write transactions of one process queue on a lock: SQLite's own busy
    handler makes a losing writer sleep (1, 2, 5, 10 ... 100 ms) instead of
    waking it when the lock frees, which cost refresh-all a third of its time.
    Writers in other processes still meet at SQLite's lock and busy_timeout.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != pid:
            conn = connect(self.path)
            self._local.conn = conn
            self._local.pid = pid
        return conn

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE (no upgrade deadlocks).

        Inside an open transaction it joins that one, so a caller can group
        several repository writes into one atomic unit (as import-php does).
        `durable=False` commits without waiting for the disk (synchronous=NORMAL
        in WAL mode): for state whose loss in a power cut is harmless, such as
        a refresh lease, which is then simply free again. The next durable
        commit makes it durable too.
        """
        conn = self.conn
        if conn.in_transaction:  # this thread already holds the write lock
            yield conn
            return
        with self._write_lock:
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")

    def close(self) -> None:
        """Close this thread's connection, if any."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
