"""One daemon per node: a lock held on the node's own database for the daemon's lifetime.

PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an flock on the
database file (SQLite itself uses POSIX record locks, which flock does not touch). Either
lock dies with the process, so a crash (even kill -9) never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from syncd.core.errors import NodeLocked


def lock_key(node_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for a node."""
    return int.from_bytes(
        hashlib.sha256(f"syncd:{node_id}".encode()).digest()[:8], "big", signed=True
    )


class NodeLock:
    def __init__(self, engine: Engine, node_id: str) -> None:
        self.engine = engine
        self.node_id = node_id
        self._conn: Connection | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            path = make_url(str(url)).database
            if not path or path == ":memory:":
                return
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise NodeLocked(self._message()) from None
            self._fd = fd
            return
        conn = self.engine.connect()
        # Off the pool for good: a session lock must not go back to the pool with the
        # connection, where another borrower would hold it without knowing, or keep it
        # after release. Closing the detached connection ends the session and the lock.
        conn.detach()
        got = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(self.node_id)}
        ).scalar_one()
        conn.commit()
        if not got:
            conn.close()
            raise NodeLocked(self._message())
        self._conn = conn

    def _message(self) -> str:
        return (
            f"another syncd process (a daemon or `sync --once`) is running for node "
            f"{self.node_id}: its lock on "
            f"{self.engine.url.render_as_string(hide_password=True)} is held"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> NodeLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
