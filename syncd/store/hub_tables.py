"""syncd's tables on a hub: fixed ones (Alembic) and the ones the policy's public tables imply."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from syncd.core.errors import SchemaMismatch
from syncd.core.policy import Policy, SchemaProblem, Table
from syncd.store.sqltypes import ExactDecimal, JsonDoc, sql_type

metadata = sa.MetaData()

ORIGIN = "origin_node"
GOLDEN_ID = "golden_id"


class BatchStatus(StrEnum):
    """`syncd_inbox_batch.status`: a received batch waits, then is applied or refused."""

    PENDING = "pending"
    APPLIED = "applied"
    REFUSED = "refused"


class QuarantineStatus(StrEnum):
    """`syncd_quarantine.status`: open until a retry applies it, a newer version of its row
    supersedes it, or the policy no longer lets the row reach the hub (refused, data dropped)."""

    OPEN = "open"
    RETRIED = "retried"
    SUPERSEDED = "superseded"
    REFUSED = "refused"
    # Held only inside a retry's transaction, so the writer's own superseding skips the entry.
    RETRYING = "retrying"


class ConflictStatus(StrEnum):
    """`syncd_conflict.status`: open until a steward resolves it or its sources move on.

    Under the four-eyes rule (`[conflicts] four_eyes`) a steward's resolution is first
    proposed, and takes effect when a second steward approves it; a proposed conflict is still
    undecided, so apply supersedes it like an open one when its sources move on.
    """

    OPEN = "open"
    PROPOSED = "proposed"
    RESOLVED = "resolved"
    SUPERSEDED = "superseded"


UNDECIDED_CONFLICTS = (ConflictStatus.OPEN, ConflictStatus.PROPOSED)


nodes = sa.Table(
    "syncd_node",
    metadata,
    sa.Column("node_id", sa.String(63), primary_key=True),
    sa.Column("city_code", sa.String(16), nullable=True),
    # What reports show for the node (hub_0007): 杭州 rather than city-3301; NULL shows the id.
    sa.Column("display_name", sa.String(64), nullable=True),
    sa.Column("role_name", sa.String(63), nullable=True),
    sa.Column("registered_at", sa.DateTime(), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(), nullable=True),
    sa.Column("received_seq", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("applied_seq", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("applied_at", sa.DateTime(), nullable=True),
    # Apply failures of this node's batches that were not about one row (hub_0002): shown by
    # `status` and metrics until a batch of the node applies, and retried with a backoff
    # (retry_at) so one failing node never holds up the others.
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failing_since", sa.DateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_error_at", sa.DateTime(), nullable=True),
    sa.Column("retry_at", sa.DateTime(), nullable=True),
    # Policy agreement and refused rows (hub_0003): the fingerprint of the policy the node's
    # last accepted batch carried; why its batches are refused while its policy differs from
    # the hub's (cleared by the next accepted batch); rows the hub refused (a local table, a
    # column that may not leave the city), counted for `status` and metrics.
    sa.Column("policy_fingerprint", sa.String(64), nullable=True),
    sa.Column("policy_problem", sa.Text(), nullable=True),
    sa.Column("policy_problem_at", sa.DateTime(), nullable=True),
    sa.Column("refused_rows", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("last_refused_reason", sa.Text(), nullable=True),
    sa.Column("last_refused_at", sa.DateTime(), nullable=True),
)

# The hub daemon's own state (hub_0002), as syncd_city_state is a city's: the last failure of
# a cycle that was not one node's (the database refusing the cycle itself), until one succeeds.
hub_state = sa.Table(
    "syncd_hub_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", JsonDoc, nullable=True),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

batches = sa.Table(
    "syncd_inbox_batch",
    metadata,
    sa.Column(
        "batch_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), nullable=False),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("row_count", sa.Integer(), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("received_at", sa.DateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=BatchStatus.PENDING.value),
    sa.Column("applied_at", sa.DateTime(), nullable=True),
    sa.Column("stats", JsonDoc, nullable=True),
    sa.Column("policy_fingerprint", sa.String(64), nullable=True),  # hub_0003
    # hub_0005: the batch's rows as the JSON text the city sent (its checksum is over exactly
    # these bytes). NULL for a batch an older city submitted row by row into syncd_inbox_row.
    sa.Column("payload", sa.Text(), nullable=True),
    sa.UniqueConstraint("node_id", "last_seq", name="uq_syncd_inbox_batch_identity"),
    sa.Index("ix_syncd_inbox_batch_pending", "status", "node_id", "last_seq"),
)

batch_rows = sa.Table(
    "syncd_inbox_row",
    metadata,
    sa.Column(
        "batch_id", sa.BigInteger(), sa.ForeignKey("syncd_inbox_batch.batch_id"), primary_key=True
    ),
    sa.Column("ord", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("table_name", sa.String(63), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("row_key", JsonDoc, nullable=False),
    sa.Column("row_data", JsonDoc, nullable=True),
)

# What the submit path saw but did not accept (duplicates, refusals). The submit function
# cannot extend the audit chain itself (only the hub's writer does), so it leaves an event here
# and the next apply cycle turns each event into an audit entry in its own transaction.
# The kind of event a city's `syncd reconcile` leaves (its summary JSON in `reason`).
RECONCILE_EVENT = "reconcile"

inbox_events = sa.Table(
    "syncd_inbox_event",
    metadata,
    sa.Column(
        "event_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("node_id", sa.String(63), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("first_seq", sa.BigInteger(), nullable=True),
    sa.Column("last_seq", sa.BigInteger(), nullable=True),
    sa.Column("checksum", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("at", sa.DateTime(), nullable=False),
    sa.Column("audited", sa.Boolean(), nullable=False, server_default=sa.false()),
)

quarantine = sa.Table(
    "syncd_quarantine",
    metadata,
    sa.Column(
        "quarantine_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("node_id", sa.String(63), nullable=False),
    sa.Column("batch_id", sa.BigInteger(), nullable=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("table_name", sa.String(63), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("row_key", JsonDoc, nullable=False),
    sa.Column("row_data", JsonDoc, nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=QuarantineStatus.OPEN.value),
    sa.Column("closed_at", sa.DateTime(), nullable=True),
    sa.Index("ix_syncd_quarantine_status", "status", "node_id"),
)

conflicts = sa.Table(
    "syncd_conflict",
    metadata,
    sa.Column(
        "conflict_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("table_name", sa.String(63), nullable=False),
    sa.Column("golden_id", sa.BigInteger(), nullable=False),
    sa.Column("identity", JsonDoc, nullable=False),
    sa.Column("column_name", sa.String(63), nullable=False),
    sa.Column("golden_value", JsonDoc, nullable=True),
    sa.Column("candidates", JsonDoc, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=ConflictStatus.OPEN.value),
    sa.Column("opened_at", sa.DateTime(), nullable=False),
    sa.Column("resolved_at", sa.DateTime(), nullable=True),
    sa.Column("resolved_by", sa.String(128), nullable=True),
    sa.Column("resolution", JsonDoc, nullable=True),
    # Who resolved as the operating system knows them, beside the name they gave (--by); and
    # under the four-eyes rule, who proposed the resolution a second steward approved (hub_0004).
    sa.Column("resolved_os_user", sa.String(128), nullable=True),
    sa.Column("proposed_by", sa.String(128), nullable=True),
    sa.Column("proposed_os_user", sa.String(128), nullable=True),
    sa.Column("proposed_at", sa.DateTime(), nullable=True),
    sa.Index("ix_syncd_conflict_open", "status", "table_name", "golden_id", "column_name"),
)

# Append-only, hash-chained: entry_hash = H(prev_hash || canonical(entry)). See syncd/audit.py.
audit = sa.Table(
    "syncd_audit",
    metadata,
    sa.Column("entry_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("node_id", sa.String(63), nullable=True),
    sa.Column("batch_id", sa.BigInteger(), nullable=True),
    sa.Column("table_name", sa.String(63), nullable=True),
    sa.Column("row_key", sa.Text(), nullable=True),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Index("ix_syncd_audit_node", "node_id", "entry_id"),
    sa.Index("ix_syncd_audit_key", "table_name", "row_key"),
)

# The row decisions a version-2 audit entry (action `row_decisions`) covers, one row each, in
# the order the entry's rows_hash commits to (hub_0006). Append-only like syncd_audit: node,
# batch, table and time are the covering entry's; row_hash = H(canonical({action, detail,
# row_key})). See syncd/core/auditchain.py and docs/auditors.md.
audit_rows = sa.Table(
    "syncd_audit_row",
    metadata,
    sa.Column("entry_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("ord", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("row_key", sa.Text(), nullable=True),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
    sa.Index("ix_syncd_audit_row_key", "row_key"),
)

# The downward path (hub_0009, `syncd.hub.downlink`): the province's insights on each city's
# own customers, in per-node batches a city fetches in order, exactly once, by (node, seq).
# downlink_nodes: per node, the last batch built and the last one the city acknowledged.
downlink_nodes = sa.Table(
    "syncd_downlink_node",
    metadata,
    sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
    sa.Column("built_seq", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("built_at", sa.DateTime(), nullable=True),
    sa.Column("acked_seq", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("acked_at", sa.DateTime(), nullable=True),
    # Set by `insights resend`: the node's next batch starts with a reset (the city empties
    # its table first), so a fresh full set replaces whatever the city holds.
    sa.Column("reset", sa.Boolean(), nullable=False, server_default=sa.false()),
)

# One batch of insight changes for one node: payload is the JSON text whose SHA-256 (with the
# node and seq, `core.downlink.batch_checksum`) is checksum. Kept after the city acknowledges
# it for `[downlink] retention_days`, then trimmed; the audit entry stays.
downlink_batches = sa.Table(
    "syncd_downlink_batch",
    metadata,
    sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("row_count", sa.Integer(), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

# What each node was last sent for each of its customers: the digest of the insight row, so
# the next build sends only what changed, and a delete for a customer the node no longer holds.
insight_sent = sa.Table(
    "syncd_insight_sent",
    metadata,
    sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
    sa.Column("row_key", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
)

# Analysis snapshots (hub_0008; docs/managers.md, "Trends"). The day's key figures per city and
# segment (customer_type, or 'unknown' for rows whose customer has not reached the hub), kept
# for good: a few dozen rows a day. `report snapshot` and the hub daemon's daily job replace a
# day's rows in one transaction, so a day has one snapshot however often it is taken.
report_daily = sa.Table(
    "syncd_report_daily",
    metadata,
    sa.Column("snapshot_date", sa.Date(), primary_key=True),
    sa.Column("node_id", sa.String(63), primary_key=True),
    sa.Column("segment", sa.String(32), primary_key=True),
    sa.Column("customers", sa.BigInteger(), nullable=False),
    sa.Column("deposit_balance", ExactDecimal(20, 2), nullable=False),
    sa.Column("loan_balance", ExactDecimal(20, 2), nullable=False),
    sa.Column("npl_balance", ExactDecimal(20, 2), nullable=False),
    sa.Column("fee_income", ExactDecimal(20, 2), nullable=False),
    sa.Column("key_customers", sa.BigInteger(), nullable=False),
    sa.Column("high_customers", sa.BigInteger(), nullable=False),
    sa.Column("medium_customers", sa.BigInteger(), nullable=False),
    sa.Column("standard_customers", sa.BigInteger(), nullable=False),
    sa.Column("taken_at", sa.DateTime(), nullable=False),
)

# Per golden customer with loans or a contribution, the figures a later day compares with
# (five-class downgrades, exposure growth, contribution trend). Kept `[report]
# customer_snapshot_days` days: at 1M customers a day is about 1M narrow rows.
# worst_class: 0 no loan, 1 normal … 5 loss (report_views.FIVE_CLASSES index + 1).
report_customer_day = sa.Table(
    "syncd_report_customer_day",
    metadata,
    sa.Column("snapshot_date", sa.Date(), primary_key=True),
    sa.Column("golden_id", sa.BigInteger(), primary_key=True),
    sa.Column("loan_balance", ExactDecimal(20, 2), nullable=False),
    sa.Column("worst_class", sa.SmallInteger(), nullable=False),
    sa.Column("contribution", ExactDecimal(20, 2), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
)


def source_table_name(table: Table) -> str:
    """Where each city's version of a row lives at the hub."""
    return f"src_{table.name}" if table.identity else table.name


def policy_metadata(policy: Policy) -> sa.MetaData:
    """The consolidated and source tables the policy's public tables imply at a hub.

    A table without identity is keyed by (origin_node, primary key): its rows are the cities'
    own rows, so source and consolidated are one table. A table with an identity keeps each
    city's row in src_<table> and one golden record per identity in <table>.
    Deleted rows stay as tombstones (_deleted) so history and stale detection survive.
    """
    md = sa.MetaData()
    for t in policy.public_tables:
        cols: list[sa.Column[Any]] = [
            sa.Column(ORIGIN, sa.String(63), primary_key=True, nullable=False)
        ]
        for name in t.public_columns:
            spec = t.columns[name]
            cols.append(
                sa.Column(
                    name,
                    sql_type(spec),
                    primary_key=name in t.primary_key,
                    nullable=name not in t.primary_key,
                )
            )
        cols += [
            sa.Column("_seq", sa.BigInteger(), nullable=False),
            sa.Column("_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
            sa.Column("_batch_id", sa.BigInteger(), nullable=True),
            sa.Column("_applied_at", sa.DateTime(), nullable=False),
        ]
        src_name = source_table_name(t)
        indexes: list[sa.Index] = []
        if t.identity:
            indexes.append(sa.Index(f"ix_{src_name}_identity", *t.identity))
        if t.parent is not None:
            indexes.append(sa.Index(f"ix_{src_name}_parent", ORIGIN, *t.parent.columns))
        sa.Table(src_name, md, *cols, *indexes)
        if t.identity:
            gcols: list[sa.Column[Any]] = [
                sa.Column(
                    GOLDEN_ID,
                    sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                    primary_key=True,
                    autoincrement=True,
                ),
            ]
            for name in t.public_columns:
                if name in t.primary_key:
                    continue
                gcols.append(sa.Column(name, sql_type(t.columns[name]), nullable=True))
            gcols += [
                sa.Column("_sources", sa.Integer(), nullable=False, server_default="0"),
                sa.Column("_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
                sa.Column("_updated_at", sa.DateTime(), nullable=False),
            ]
            sa.Table(
                t.name, md, *gcols, sa.UniqueConstraint(*t.identity, name=f"uq_{t.name}_identity")
            )
    return md


@dataclass(frozen=True)
class Installed:
    """What `install` found or made: the policy's hub tables and the columns it added."""

    tables: tuple[str, ...]
    columns_added: tuple[str, ...]


def _addable(policy: Policy, table: sa.Table, col: sa.Column[Any]) -> None:
    """Refuse a new column that would change how existing rows are keyed or merged."""
    for t in policy.public_tables:
        keyed = col.name in t.primary_key or col.name in t.identity
        if keyed and table.name in (t.name, source_table_name(t)):
            raise SchemaMismatch(
                f"{t.name}.{col.name} is new in the policy's primary key or identity of "
                f"{t.name}, whose hub table {table.name} already holds rows keyed without "
                "it; they cannot be re-keyed in place: restore the old key in the policy, "
                "or rebuild this hub"
            )


def _missing(
    insp: sa.Inspector, md: sa.MetaData
) -> Iterator[tuple[sa.Table, sa.Column[Any] | None]]:
    """What of md the database lacks, in md's order: (table, None) for a missing table,
    (table, column) for a column missing from a table that exists."""
    existing = set(insp.get_table_names())
    for table in md.tables.values():
        if table.name not in existing:
            yield table, None
            continue
        live = {c["name"] for c in insp.get_columns(table.name)}
        yield from ((table, col) for col in table.columns if col.name not in live)


def install(conn: sa.Connection, policy: Policy) -> Installed:
    """Create the policy's consolidated and source tables, and add columns new to the policy.

    A column the policy has gained is added nullable to the tables that exist already: their
    rows predate it, and they get its values as cities send them (or from a city's
    `syncd snapshot --table`). Nothing is dropped or retyped: a column the policy no longer
    names keeps its history, and `schema check` reports what differs.
    """
    md = policy_metadata(policy)
    ops = Operations(MigrationContext.configure(conn))
    added: list[str] = []
    for table, col in _missing(sa.inspect(conn), md):
        if col is None:
            continue  # created below
        _addable(policy, table, col)
        ops.add_column(table.name, sa.Column(col.name, col.type, nullable=True))
        added.append(f"{table.name}.{col.name}")
    md.create_all(conn, checkfirst=True)
    return Installed(tuple(md.tables), tuple(added))


def check(conn: sa.Connection, policy: Policy) -> list[SchemaProblem]:
    """Tables or columns the policy implies at the hub but the database lacks."""
    insp = sa.inspect(conn)
    problems: list[SchemaProblem] = []
    existing = set(insp.get_table_names())
    for name in metadata.tables:
        if name not in existing:
            problems.append(SchemaProblem(name, None, "missing: run `syncd init`"))
    for table, col in _missing(insp, policy_metadata(policy)):
        if col is None:
            problems.append(SchemaProblem(table.name, None, "missing: run `syncd init`"))
        else:
            problems.append(SchemaProblem(table.name, col.name, "missing column: run `syncd init`"))
    return problems


# The web console (hub_0010, `syncd.hub.console_users`, `syncd.console`). console_users: who may
# sign in, with which roles (comma-separated, `syncd.hub.console_users.ROLES`) and an argon2id
# hash of the password; failed_signins and locked_until throttle guessing.
console_users = sa.Table(
    "syncd_console_user",
    metadata,
    sa.Column("username", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.String(100), nullable=True),
    sa.Column("roles", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("password_changed_at", sa.DateTime(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("failed_signins", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(), nullable=True),
    sa.Column("last_signin_at", sa.DateTime(), nullable=True),
)

# The key that signs the console's session cookies: made at the console's first start (or set
# by `[console] secret_key`), one row, so every console process of the hub shares it.
console_keys = sa.Table(
    "syncd_console_key",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

# The console's cached figures (hub_0011, `syncd.hub.report_cache`): one row per key (the
# overview: 'overview'; an analysis page: its report and arguments, hashed past 32
# characters), read by the pages instead of computing their reports in the request. `figures`
# is the JSON document a background refresh wrote at computed_at ({"format": 2, "result": ...},
# Decimal, date and datetime tagged with their type, row lists by columns); lease_owner /
# lease_until: the one refresh pending (a row lock claims it, so one at a time per key per hub
# however many console processes; started_at is NULL while it waits for the process's turn),
# an expired lease is a refresh that died; error/error_at: the last failed refresh, kept until
# one succeeds (the page shows it, and no refresh is retried before the backoff has passed).
console_cache = sa.Table(
    "syncd_console_cache",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("figures", JsonDoc, nullable=True),
    sa.Column("computed_at", sa.DateTime(), nullable=True),
    sa.Column("seconds", sa.Float(), nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.DateTime(), nullable=True),
    sa.Column("started_at", sa.DateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("error_at", sa.DateTime(), nullable=True),
)
