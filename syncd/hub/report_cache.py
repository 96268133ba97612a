"""Report results computed in the background and kept in the hub's database, for the console.

A console page never computes a report that costs seconds or a minute inside its request: it
reads the result a background refresh stored in ``syncd_console_cache`` under the report's key
(`key_for`: the report's name and its normalized arguments) and shows when it was computed.
When the result is missing or older than the page's max age, the visit starts ONE refresh in a
background thread (`refresh_in_background`) and the page says so (and reloads itself).

- One refresh per key per hub, however many console processes: `claim` takes the row's lease
  with one conditional UPDATE (the row lock decides between two claimers on PostgreSQL, the
  database write lock on SQLite). A lease that outlives `LEASE_SECONDS` is a refresh that died
  with its process, and may be taken again.
- A cap per console process on how many heavy computations run at once (`Limiter`, `[console]
  report_workers`, 1 by default: each analysis holds gigabytes at a million customers). A
  refresh that must wait holds its key's lease with no start time: the page shows it queued;
  once it has its turn it marks its start, extends its lease and computes.
- A failed refresh keeps the previous result, records its error and when; none is retried
  before `retry_seconds` has passed (no hot loop).
- A page view reads the row's state without its result when this process's `Memo` holds that
  result already (same key, same computed_at): a list of a hundred thousand rows is then not
  read and decoded again for each view.
- Results round-trip through JSON with their types (`encode`/`decode`): Decimal, date and
  datetime come back as such; a list of rows of the same keys is stored by columns, each
  column typed once (compact for the hundred thousand rows of a warnings list).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from syncd.core.logs import get_logger
from syncd.store import hub_tables as schema_hub
from syncd.store.db import describe_failure, translated, utcnow

log = get_logger("syncd.report_cache")

LEASE_SECONDS = 900.0  # a refresh still holding its lease after this is taken for dead
RETRY_MIN_SECONDS = 60.0  # after a failure, no new refresh for this long (or max age if longer)
KEY_LENGTH = 32  # syncd_console_cache.key is String(32)
FORMAT = 2  # the stored document's format: {"format": 2, "result": <encoded>}
MEMO_ROWS = 500_000  # a Memo keeps decoded results of at most this many rows in all

Compute = Callable[[sa.Connection], Any]


@dataclasses.dataclass(frozen=True)
class State:
    """A cached result (None before the first refresh) and its refresh's state."""

    result: Any = None
    computed_at: dt.datetime | None = None
    seconds: float | None = None  # how long that refresh took
    refreshing_since: dt.datetime | None = None  # a refresh computes now (started then)
    queued: bool = False  # a refresh holds the lease but waits for its turn (`Limiter`)
    error: str | None = None  # the last refresh failed (the result, if any, is older)
    error_at: dt.datetime | None = None

    @property
    def has_result(self) -> bool:
        return self.computed_at is not None

    @property
    def pending(self) -> bool:
        """A refresh holds the lease: computing, or queued for its turn."""
        return self.refreshing_since is not None or self.queued

    @property
    def failed(self) -> bool:
        """Whether the last refresh failed (after the result shown was computed)."""
        return self.error_at is not None and (
            self.computed_at is None or self.error_at >= self.computed_at
        )

    def retry_at(self, max_age_seconds: float) -> dt.datetime | None:
        """After a failure, when a refresh may be tried again."""
        if not self.failed or self.error_at is None:
            return None
        return self.error_at + dt.timedelta(seconds=retry_seconds(max_age_seconds))

    def due(self, max_age_seconds: float, now: dt.datetime | None = None) -> bool:
        """Whether a refresh should start: no result, or older than the max age; never while
        one is pending, nor before the retry time of a failed one."""
        now = now or utcnow()
        if self.pending:
            return False
        retry = self.retry_at(max_age_seconds)
        if retry is not None and now < retry:
            return False
        if self.computed_at is None:
            return True
        return (now - self.computed_at).total_seconds() > max_age_seconds


def retry_seconds(max_age_seconds: float) -> float:
    return max(RETRY_MIN_SECONDS, max_age_seconds)


class Limiter:
    """How many heavy computations may run at once in this process (the others wait)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers: at least 1, got {workers}")
        self.workers = workers
        self.running = 0
        self.waiting = 0
        self._turn = threading.Condition()

    @property
    def full(self) -> bool:
        """Whether a computation started now would wait for its turn."""
        with self._turn:
            return self.running >= self.workers

    def __enter__(self) -> Limiter:
        with self._turn:
            self.waiting += 1
            while self.running >= self.workers:
                self._turn.wait()
            self.waiting -= 1
            self.running += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._turn:
            self.running -= 1
            self._turn.notify()


class Memo:
    """Decoded results kept in this process, by key and computed_at, the least recently used
    dropped first past `max_rows` rows in all (a result that is no list counts as one row).
    The results are shared between requests: callers must not change them."""

    def __init__(self, max_rows: int = MEMO_ROWS) -> None:
        self.max_rows = max_rows
        self._items: OrderedDict[str, tuple[dt.datetime, Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, computed_at: dt.datetime) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != computed_at:
                return False, None
            self._items.move_to_end(key)
            return True, item[1]

    def put(self, key: str, computed_at: dt.datetime, result: Any) -> None:
        rows = len(result) if isinstance(result, list) else 1
        with self._lock:
            self._items.pop(key, None)
            if rows > self.max_rows:
                return
            self._items[key] = (computed_at, result, rows)
            while sum(r for _at, _res, r in self._items.values()) > self.max_rows:
                self._items.popitem(last=False)


# --- keys --------------------------------------------------------------------------------------


def key_for(report: str, arguments: Mapping[str, Any] | None = None) -> str:
    """The cache key of `report` with `arguments` (normalized: sorted keys, compact JSON):
    readable when it fits the column, else the report's name and a hash of the arguments."""
    if not arguments:
        key = report
    else:
        text = json.dumps(encode(dict(arguments)), sort_keys=True, separators=(",", ":"))
        key = f"{report}:{text}"
        if len(key) > KEY_LENGTH:
            digest = hashlib.sha256(text.encode()).hexdigest()
            key = f"{report[: KEY_LENGTH - 21]}#{digest[:20]}"
    if len(key) > KEY_LENGTH:
        raise ValueError(f"report name too long for a cache key: {report!r}")
    return key


# --- typed JSON --------------------------------------------------------------------------------

_SCALARS: tuple[tuple[str, type, Callable[[Any], Any], Callable[[str], Any]], ...] = (
    # tag, type, to text, from text; datetime before date (a datetime is a date)
    ("decimal", Decimal, str, Decimal),
    ("datetime", dt.datetime, dt.datetime.isoformat, dt.datetime.fromisoformat),
    ("date", dt.date, dt.date.isoformat, dt.date.fromisoformat),
)
_TAG = "$"  # {"$": tag, "v": text} for one typed value; {"$": "rows", ...} for a row list


def _scalar_tag(value: Any) -> str | None:
    for tag, kind, _to, _from in _SCALARS:
        if isinstance(value, kind):
            return tag
    return None


def encode(value: Any) -> Any:
    """JSON for a result: Decimal, datetime and date tagged with their type; a list of dicts
    with the same keys stored by columns (each column's type given once when it has one)."""
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(r, Mapping) for r in value):
            columns = list(value[0])
            if all(list(r) == columns for r in value):
                return _encode_rows(columns, value)
        return [encode(v) for v in value]
    tag = _scalar_tag(value)
    if tag is not None:
        return {_TAG: tag, "v": _to_text(tag, value)}
    return value


def _to_text(tag: str, value: Any) -> str:
    return str(next(to(value) for t, _k, to, _f in _SCALARS if t == tag))


def _encode_rows(columns: list[Any], rows: Any) -> dict[str, Any]:
    types: list[str | None] = []
    data: list[list[Any]] = [[] for _ in rows]
    for c in columns:
        values = [r[c] for r in rows]
        tags = [_scalar_tag(v) for v in values if v is not None]
        # a column of one typed kind (None allowed): the type once, the values as text
        tag = tags[0] if tags and tags[0] is not None and tags.count(tags[0]) == len(tags) else None
        plain = tag is not None or all(
            v is None or (isinstance(v, str | int | float | bool) and _scalar_tag(v) is None)
            for v in values
        )
        types.append(tag if tag is not None else (None if plain else "json"))
        for i, v in enumerate(values):
            if v is None or (tag is None and plain):
                data[i].append(v)
            elif tag is not None:
                data[i].append(_to_text(tag, v))
            else:
                data[i].append(encode(v))
    return {_TAG: "rows", "columns": [str(c) for c in columns], "types": types, "data": data}


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    tag = value.get(_TAG)
    if tag == "rows":
        return _decode_rows(value)
    if isinstance(tag, str) and "v" in value and len(value) == 2:
        for t, _kind, _to, from_text in _SCALARS:
            if t == tag:
                return from_text(value["v"])
    return {k: decode(v) for k, v in value.items()}


def _decode_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    columns: list[str] = doc["columns"]
    converters: list[Callable[[Any], Any] | None] = []
    for tag in doc["types"]:
        if tag is None:
            converters.append(None)
        elif tag == "json":
            converters.append(decode)
        else:
            converters.append(next(f for t, _k, _to, f in _SCALARS if t == tag))
    plain = all(c is None for c in converters)
    out = []
    for values in doc["data"]:
        if plain:
            out.append(dict(zip(columns, values, strict=True)))
        else:
            out.append(
                {
                    c: v if v is None or f is None else f(v)
                    for c, f, v in zip(columns, converters, values, strict=True)
                }
            )
    return out


# --- the cache row -----------------------------------------------------------------------------


def read(
    conn: sa.Connection, key: str, now: dt.datetime | None = None, *, memo: Memo | None = None
) -> State:
    """The cached result of `key` and its refresh's state (nothing is computed). With a
    `memo`, the stored result is read and decoded only when the memo does not hold it."""
    cache = schema_hub.console_cache
    meta = [c for c in cache.c if c.key != "figures"]
    row = conn.execute(sa.select(*meta).where(cache.c.key == key)).mappings().first()
    if row is None:
        return State()
    now = now or utcnow()
    lease = row["lease_until"]
    live = lease is not None and lease > now
    computed_at = row["computed_at"]
    found, result = memo.get(key, computed_at) if memo and computed_at else (False, None)
    if not found:
        doc = conn.execute(sa.select(cache.c.figures).where(cache.c.key == key)).scalar()
        if isinstance(doc, Mapping) and doc.get("format") == FORMAT and computed_at:
            result = decode(doc.get("result"))
            if memo is not None:
                memo.put(key, computed_at, result)
        else:  # none yet, or written by an older format: as if there were none
            computed_at = None
    return State(
        result=result,
        computed_at=computed_at,
        seconds=row["seconds"],
        refreshing_since=row["started_at"] if live else None,
        queued=live and row["started_at"] is None,
        error=row["error"],
        error_at=row["error_at"],
    )


def _ensure_row(conn: sa.Connection, key: str) -> None:
    cache = schema_hub.console_cache
    if conn.execute(sa.select(cache.c.key).where(cache.c.key == key)).first() is None:
        insert: Any
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(insert(cache).values(key=key).on_conflict_do_nothing())


def new_owner() -> str:
    """Who holds a lease: host, process and a random part (two threads never share one)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claim(
    engine: sa.Engine,
    key: str,
    owner: str,
    now: dt.datetime | None = None,
    *,
    queued: bool = False,
) -> bool:
    """Take the refresh lease of `key` for `owner`: False if a live lease is someone else's.
    `queued`: the refresh waits for its turn first (no start time until `start`)."""
    now = now or utcnow()
    cache = schema_hub.console_cache
    with translated(f"claiming the refresh of {key}"), engine.begin() as conn:
        _ensure_row(conn, key)
        taken = conn.execute(
            cache.update()
            .where(cache.c.key == key)
            .where(sa.or_(cache.c.lease_until.is_(None), cache.c.lease_until <= now))
            .values(
                lease_owner=owner,
                lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
                started_at=None if queued else now,
            )
        ).rowcount
    return taken == 1


def start(engine: sa.Engine, key: str, owner: str, now: dt.datetime | None = None) -> bool:
    """A queued refresh has its turn: mark its start and extend its lease. False if the lease
    is no longer `owner`'s (it waited past `LEASE_SECONDS` and another took it)."""
    now = now or utcnow()
    cache = schema_hub.console_cache
    with translated(f"starting the refresh of {key}"), engine.begin() as conn:
        taken = conn.execute(
            cache.update()
            .where(cache.c.key == key)
            .where(cache.c.lease_owner == owner)
            .values(lease_until=now + dt.timedelta(seconds=LEASE_SECONDS), started_at=now)
        ).rowcount
    return taken == 1


def refresh(
    engine: sa.Engine,
    key: str,
    owner: str,
    compute: Compute,
    *,
    limiter: Limiter | None = None,
) -> str | None:
    """Compute `key`'s result and store it, then give the lease back (call after `claim`).
    With a `limiter`, wait for a turn first (the lease claimed `queued`).

    Returns None, or the failure's description (row values never appear in it), which is
    stored with its time for the page to show; the previous result stays. Never raises for a
    failure of the computation: it runs in a background thread.
    """
    if limiter is None:
        return _refresh(engine, key, owner, compute)
    with limiter:
        if not start(engine, key, owner):
            log.warning("report_refresh_lease_lost", key=key)
            return None
        return _refresh(engine, key, owner, compute)


def _refresh(engine: sa.Engine, key: str, owner: str, compute: Compute) -> str | None:
    started = time.monotonic()
    cache = schema_hub.console_cache
    mine = sa.and_(cache.c.key == key, cache.c.lease_owner == owner)
    release = {"lease_owner": None, "lease_until": None, "started_at": None}
    try:
        with translated(f"computing {key}"), engine.connect() as conn:
            result = compute(conn)
            conn.rollback()
        doc = {"format": FORMAT, "result": encode(result)}
        del result
        seconds = time.monotonic() - started
        with translated(f"storing {key}"), engine.begin() as conn:
            _ensure_row(conn, key)
            conn.execute(
                cache.update()
                .where(cache.c.key == key)
                .values(
                    figures=doc,
                    computed_at=utcnow(),
                    seconds=seconds,
                    error=None,
                    error_at=None,
                )
            )
            conn.execute(cache.update().where(mine).values(**release))
        log.info("report_refreshed", key=key, seconds=round(seconds, 3))
        return None
    except Exception as exc:  # recorded for the page: a thread must not die loud
        error = describe_failure(exc)
        log.error("report_refresh_failed", key=key, error=error)
        try:
            with translated(f"recording the failure of {key}"), engine.begin() as conn:
                _ensure_row(conn, key)
                conn.execute(
                    cache.update().where(cache.c.key == key).values(error=error, error_at=utcnow())
                )
                conn.execute(cache.update().where(mine).values(**release))
        except Exception as again:  # the lease then expires by itself
            log.error("report_failure_not_recorded", key=key, error=describe_failure(again))
        return error


def refresh_in_background(
    engine: sa.Engine,
    key: str,
    state: State,
    max_age_seconds: float,
    compute: Compute,
    *,
    limiter: Limiter | None = None,
    now: dt.datetime | None = None,
) -> threading.Thread | None:
    """If `state` is due (`State.due`) and the lease is free, start a refresh in a daemon
    thread and return it; else None (fresh, pending here or elsewhere, or waiting to retry)."""
    if not state.due(max_age_seconds, now):
        return None
    owner = new_owner()
    if not claim(engine, key, owner, now, queued=limiter is not None):
        return None
    thread = threading.Thread(
        target=refresh,
        args=(engine, key, owner, compute),
        kwargs={"limiter": limiter},
        name=f"syncd-refresh-{key}",
        daemon=True,
    )
    thread.start()
    return thread
