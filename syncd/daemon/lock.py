"""One daemon per node: a lock held on the node's own database for the daemon's lifetime.

PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an flock on the
database file (SQLite itself uses POSIX record locks, which flock does not touch). Either
lock dies with the process, so a crash (even kill -9) never leaves a stale lock behind. Each
dialect holds its own (`syncd.store.dialect.Dialect.hold_lock`).
"""

from __future__ import annotations

import hashlib
from types import TracebackType

from sqlalchemy.engine import Engine

from syncd.core.errors import NodeLocked
from syncd.store.dialect import Held, dialect_for


def lock_key(node_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for a node."""
    return int.from_bytes(
        hashlib.sha256(f"syncd:{node_id}".encode()).digest()[:8], "big", signed=True
    )


class NodeLock:
    def __init__(self, engine: Engine, node_id: str) -> None:
        self.engine = engine
        self.node_id = node_id
        self._held: Held | None = None

    def acquire(self) -> None:
        held = dialect_for(self.engine).hold_lock(self.engine, lock_key(self.node_id))
        if held is None:
            raise NodeLocked(self._message())
        self._held = held

    def _message(self) -> str:
        return (
            f"another syncd process (a daemon or `sync --once`) is running for node "
            f"{self.node_id}: its lock on "
            f"{self.engine.url.render_as_string(hide_password=True)} is held"
        )

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> NodeLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
