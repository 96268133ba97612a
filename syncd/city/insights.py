"""The downward path at a city: the province's insights on this city's own customers.

The hub builds per node batches of insight changes (`syncd.hub.downlink`); each push cycle
`pull` fetches the ones after the last applied, checks each (addressed to this node, checksum,
shape, digests: `core.downlink.parse`), and applies it **in one city transaction together with
the new position** (`downlink_seq` in syncd_city_state): a crash before the commit leaves
neither, so the batch is fetched again; after it, never again. Batches apply strictly in
order: seq must be the last applied + 1. The position is then acknowledged to the hub, which
shows the downward lag; an acknowledgement lost in a crash is sent again by the next pull.

The table `syncd_province_insight` is keyed by the city's own customer key (the customers
table's primary key in the policy), so CRM screens join it to their customers:

    SELECT c.name, i.tier, i.contribution_rank, i.warning_reasons
      FROM customers c JOIN syncd_province_insight i ON i.customer_id = c.customer_id;

It is read-only for everyone but syncd: on PostgreSQL a statement trigger refuses INSERT,
UPDATE, DELETE and TRUNCATE unless the transaction set ``syncd.insight_writer`` (which only
this module does); on SQLite the triggers call syncd_insight_writer(), a function only syncd's
own connections define, so any other connection's write fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.core import downlink as wire
from syncd.core.canonical import canonical, loads
from syncd.core.errors import BatchRefused, SchemaMismatch
from syncd.core.logs import get_logger
from syncd.core.policy import Policy
from syncd.store.bulk import chunks
from syncd.store.city_tables import city_state
from syncd.store.db import translated, utcnow
from syncd.store.dialect import Kind, dialect_for
from syncd.store.health import put_state
from syncd.store.sqltypes import ExactDecimal, sql_type

log = get_logger("syncd.insights")

TABLE = "syncd_province_insight"
CUSTOMERS = "customers"
# syncd_city_state keys: the last batch applied, when, and the hub's built_seq at the last ack.
SEQ_KEY = "downlink_seq"
APPLIED_AT_KEY = "downlink_applied_at"
HUB_SEQ_KEY = "downlink_hub_seq"
ERROR_KEY = "downlink_error"
CHECKSUM_KEY = "downlink_checksum"  # of the last batch applied
FETCH_BATCHES = 20


class InsightSource(Protocol):
    """The hub as the downward path sees it (`syncd.hub.inbox.HubInbox`)."""

    def fetch_insights(self, after: int, limit: int) -> list[wire.DownBatch]: ...

    def ack_insights(self, seq: int) -> int: ...

    def insight_summary(self) -> dict[str, Any]: ...


def key_columns(policy: Policy) -> tuple[str, ...]:
    return tuple(policy.table(CUSTOMERS).primary_key)


def insight_table(policy: Policy) -> sa.Table:
    """syncd_province_insight for this policy: the customers' key, then the insight."""
    customers = policy.table(CUSTOMERS)
    keys = [
        sa.Column(k, sql_type(customers.columns[k]), primary_key=True)
        for k in customers.primary_key
    ]
    return sa.Table(
        TABLE,
        sa.MetaData(),
        *keys,
        sa.Column("golden_id", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("contribution_rank", sa.BigInteger(), nullable=False),
        sa.Column("contribution", ExactDecimal(20, 2), nullable=False),
        sa.Column("segment", sa.String(200), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("top_severity", sa.Integer(), nullable=True),
        sa.Column("warning_reasons", sa.Text(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=False),  # canonical JSON, as sent
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("hub_seq", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )


_PG_GUARD = """
CREATE OR REPLACE FUNCTION syncd_insight_read_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.current_setting('syncd.insight_writer', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'syncd_province_insight is read-only: the province writes it'
            USING ERRCODE = '42501';
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS syncd_insight_read_only ON syncd_province_insight;
CREATE TRIGGER syncd_insight_read_only
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON syncd_province_insight
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_insight_read_only();
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON syncd_province_insight FROM PUBLIC;
"""

_SQLITE_GUARD = """
CREATE TRIGGER IF NOT EXISTS syncd_insight_read_only_{op} BEFORE {verb} ON syncd_province_insight
BEGIN
    SELECT RAISE(ABORT, 'syncd_province_insight is read-only: the province writes it')
     WHERE syncd_insight_writer() IS NOT 1;
END
"""


def applies(policy: Policy) -> bool:
    """Whether the policy has a public customers table the province's insights are about."""
    table = policy.tables.get(CUSTOMERS)
    return table is not None and table.is_public and bool(table.primary_key)


def install(conn: Connection, policy: Policy) -> bool:
    """Create the table and its read-only guard if missing (init); True if created.

    A table left from another policy, lacking a column this one needs, is not touched: init
    fails naming the columns. A table dropped and made again by init is empty while the hub
    believes it holds what was sent: `syncd insights resend <node>` at the hub sends it all.
    """
    table = insight_table(policy)
    insp = sa.inspect(conn)
    created = False
    if insp.has_table(TABLE):
        present = {c["name"] for c in insp.get_columns(TABLE)}
        missing = sorted({c.name for c in table.columns} - present)
        if missing:
            raise SchemaMismatch(
                f"{TABLE} lacks {', '.join(missing)} (made for another policy?): drop it and "
                "run init again; the hub then sends every insight again"
            )
    else:
        table.create(conn)
        created = True
    if dialect_for(conn).kind is Kind.POSTGRES:
        conn.exec_driver_sql(_PG_GUARD)
    else:
        for op in ("insert", "update", "delete"):
            conn.exec_driver_sql(_SQLITE_GUARD.format(op=op, verb=op.upper()))
    return created


@dataclass
class PullResult:
    batches: int = 0
    upserts: int = 0
    deletes: int = 0
    applied_seq: int = 0
    hub_seq: int | None = None


def _position(conn: Connection) -> int:
    value = conn.execute(sa.select(city_state.c.value).where(city_state.c.key == SEQ_KEY)).scalar()
    return int(value or 0)


def pull(engine: Engine, hub: InsightSource, policy: Policy, node_id: str) -> PullResult:
    """Fetch, check and apply every insight batch the hub holds for this node, then ack.

    The batch at the city's own position is fetched too, when the hub still keeps it, and must
    be the one the city applied (same checksum): a hub restored from a backup, whose numbering
    went back, is refused rather than believed. A batch that begins with a reset (`insights
    resend`) may skip forward over batches the hub dropped unapplied.
    """
    table = insight_table(policy)
    keys = key_columns(policy)
    result = PullResult()
    with translated("reading the downlink position"), engine.connect() as conn:
        applied = _position(conn)
        last = conn.execute(
            sa.select(city_state.c.value).where(city_state.c.key == CHECKSUM_KEY)
        ).scalar()
        conn.rollback()
    since = applied - 1 if applied and last else applied
    while True:
        batches = hub.fetch_insights(since, FETCH_BATCHES)
        for batch in batches:
            if batch.seq == applied and last:
                if batch.checksum != last:
                    raise BatchRefused(_rebuilt(node_id, applied))
                continue
            changes = wire.parse(batch, node_id, keys)
            if batch.seq != applied + 1 and not (batch.seq > applied and wire.resets(changes)):
                raise BatchRefused(
                    f"downlink batch {batch.seq} for {node_id} arrived after {applied}: "
                    f"batch {applied + 1} is missing at the hub (trimmed before it was "
                    f"applied?); at the hub, `syncd insights resend {node_id}` sends a fresh set"
                )
            ups, dels = _apply_batch(engine, table, keys, batch, changes, applied)
            applied = batch.seq
            result.batches += 1
            result.upserts += ups
            result.deletes += dels
        if len(batches) < FETCH_BATCHES:
            break
        since = applied
    result.applied_seq = applied
    result.hub_seq = _acknowledge(hub, node_id, applied)
    with translated("recording the hub's downlink position"), engine.begin() as conn:
        put_state(conn, city_state, HUB_SEQ_KEY, result.hub_seq)
        put_state(conn, city_state, ERROR_KEY, None)
    if result.batches:
        log.info(
            "insights_applied",
            batches=result.batches,
            upserts=result.upserts,
            deletes=result.deletes,
            seq=applied,
        )
    return result


def _apply_batch(
    engine: Engine,
    table: sa.Table,
    keys: Sequence[str],
    batch: wire.DownBatch,
    changes: Sequence[dict[str, Any]],
    applied: int,
) -> tuple[int, int]:
    """One batch and the new position in one transaction; (upserts, deletes)."""
    with translated("applying insights"), engine.begin() as conn:
        if _position(conn) != applied:
            raise BatchRefused(
                "the downlink position moved under this pull: another syncd process "
                "applies insights to this city"
            )
        counts = _apply(conn, table, keys, batch.seq, changes)
        put_state(conn, city_state, SEQ_KEY, batch.seq)
        put_state(conn, city_state, CHECKSUM_KEY, batch.checksum)
        put_state(conn, city_state, APPLIED_AT_KEY, utcnow().isoformat())
    return counts


def _acknowledge(hub: InsightSource, node_id: str, applied: int) -> int:
    """Ack the position; the hub's built_seq. A hub that never built it was restored."""
    try:
        return hub.ack_insights(applied)
    except BatchRefused as exc:
        if "never built" not in str(exc):
            raise
        raise BatchRefused(_rebuilt(node_id, applied)) from exc


def _rebuilt(node_id: str, applied: int) -> str:
    return (
        f"the hub's downlink batches for {node_id} are not the ones this city applied (up to "
        f"{applied}): was the hub restored from a backup? At the hub, `syncd insights resend "
        f"{node_id} --after {applied}` sends a fresh set numbered after them"
    )


def record_error(engine: Engine, message: str | None) -> None:
    """Keep the last downlink failure for `status` (None clears it)."""
    with translated("recording a downlink failure"), engine.begin() as conn:
        put_state(conn, city_state, ERROR_KEY, message)


def _writer(conn: Connection) -> None:
    if dialect_for(conn).kind is Kind.POSTGRES:
        conn.exec_driver_sql("SET LOCAL syncd.insight_writer = 'on'")


def _apply(
    conn: Connection,
    table: sa.Table,
    keys: Sequence[str],
    seq: int,
    changes: Sequence[dict[str, Any]],
) -> tuple[int, int]:
    """Set-based: delete every changed key, insert the upserts' rows; (upserts, deletes).

    A batch that begins with a reset first empties the table: a fresh full set follows.
    """
    _writer(conn)
    now = utcnow()
    if wire.resets(changes):
        conn.execute(table.delete())
        changes = changes[1:]
    for chunk in chunks([c["key"] for c in changes], 500):
        if len(keys) == 1:
            column = table.c[keys[0]]
            conn.execute(table.delete().where(column.in_([k[keys[0]] for k in chunk])))
        else:
            tuples = sa.tuple_(*(table.c[k] for k in keys))
            conn.execute(
                table.delete().where(tuples.in_([tuple(k[c] for c in keys) for k in chunk]))
            )
    rows = [_row(c, seq, now) for c in changes if c["op"] == wire.UPSERT]
    if rows:
        conn.execute(table.insert(), rows)
    return len(rows), len(changes) - len(rows)


def _row(change: dict[str, Any], seq: int, now: dt.datetime) -> dict[str, Any]:
    warnings = change["warnings"]
    severities = [w["severity"] for w in warnings if isinstance(w.get("severity"), int)]
    return {
        **change["key"],
        "golden_id": change["golden_id"],
        "tier": change["tier"],
        "contribution_rank": change["rank"],
        "contribution": change["contribution"],
        "segment": change["segment"],
        "warning_count": len(warnings),
        "top_severity": max(severities) if severities else None,
        "warning_reasons": ",".join(dict.fromkeys(w["reason"] for w in warnings)),  # worst first
        "warnings": canonical(warnings),
        "digest": change["digest"],
        "hub_seq": seq,
        "received_at": now,
    }


@dataclass
class InsightReconcile:
    """`syncd reconcile`'s view of the downward path: does this city hold what the hub sent?

    in_sync: same customers with the same digests (sums over both sides match) and every row
    still hashes to its digest; behind: batches built that this city has not applied yet (not
    drift: the next pull applies them); drift otherwise — rows altered here (`tampered`), or
    missing or extra (e.g. the table was emptied: `syncd insights resend <node>` at the hub).
    """

    status: str
    city_rows: int
    hub_rows: int
    applied_seq: int
    built_seq: int
    tampered: int

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "city_rows": self.city_rows,
            "hub_rows": self.hub_rows,
            "tampered": self.tampered,
        }


def reconcile(engine: Engine, hub: InsightSource, policy: Policy) -> InsightReconcile:
    """Compare this city's insights with what the hub sent it (counts, a hash sum, digests)."""
    found = hub.insight_summary()
    with translated("reading the province's insights"), engine.connect() as conn:
        applied = _position(conn)
        rows, total, altered = 0, 0, 0
        for row_key, stored, ok in _rows_checked(conn, policy):
            rows += 1
            total += wire.row_hash(row_key, stored)
            altered += not ok
        conn.rollback()
    built = int(found["built_seq"])
    if applied < built:
        status = "behind"
    elif altered or rows != int(found["rows"]) or str(total) != str(found["hash_sum"]):
        status = "drift"
    else:
        status = "in_sync"
    return InsightReconcile(status, rows, int(found["rows"]), applied, built, altered)


def _rows_checked(conn: Connection, policy: Policy) -> Iterator[tuple[str, str, bool]]:
    """(row key as the hub keeps it, the stored digest, whether the row still hashes to it)."""
    table = insight_table(policy)
    keys = key_columns(policy)
    for row in conn.execute(sa.select(table)).mappings():
        fields = {
            "golden_id": row["golden_id"],
            "tier": row["tier"],
            "rank": int(row["contribution_rank"]),
            "contribution": str(row["contribution"]),
            "segment": row["segment"],
            "warnings": loads(row["warnings"]),
        }
        row_key = canonical({k: row[k] for k in keys})
        yield row_key, row["digest"], wire.digest(fields) == row["digest"]


def status(conn: Connection) -> dict[str, Any]:
    """The downlink figures of `status`: applied and hub seq, when, the last failure."""
    keys = [SEQ_KEY, APPLIED_AT_KEY, HUB_SEQ_KEY, ERROR_KEY]
    query = sa.select(city_state.c.key, city_state.c.value).where(city_state.c.key.in_(keys))
    return status_of({row.key: row.value for row in conn.execute(query)})


def status_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """`status` from syncd_city_state's values (key → value), as a city's status reads them."""
    applied = int(state.get(SEQ_KEY) or 0)
    hub_seq = state.get(HUB_SEQ_KEY)
    return {
        "applied_seq": applied,
        "hub_seq": None if hub_seq is None else int(hub_seq),
        "behind": None if hub_seq is None else max(0, int(hub_seq) - applied),
        "applied_at": state.get(APPLIED_AT_KEY),
        "error": state.get(ERROR_KEY) or None,
    }


def listing(
    conn: Connection, policy: Policy, *, tier: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """A relationship manager's view: this city's customers with the province's insight.

    The CRM's own customers table joined to syncd_province_insight on the customer key (what
    a CRM screen does), best contribution first.
    """
    table = insight_table(policy)
    keys = key_columns(policy)
    crm = sa.table(CUSTOMERS, *(sa.column(k) for k in keys), sa.column("name"))
    on = sa.and_(*(crm.c[k] == table.c[k] for k in keys))
    query = (
        sa.select(
            *(crm.c[k] for k in keys),
            crm.c.name,
            table.c.tier,
            table.c.contribution_rank,
            table.c.contribution,
            table.c.segment,
            table.c.warning_count,
            table.c.top_severity,
            table.c.warning_reasons,
        )
        .select_from(crm.join(table, on))
        .order_by(table.c.contribution_rank, *(crm.c[k] for k in keys))
        .limit(limit)
    )
    if tier is not None:
        query = query.where(table.c.tier == tier)
    return [dict(r) for r in conn.execute(query).mappings()]
