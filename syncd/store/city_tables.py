"""syncd's own tables on a city database, managed by Alembic (`migrations/`)."""

from __future__ import annotations

import sqlalchemy as sa

from syncd.store.sqltypes import JsonDoc

metadata = sa.MetaData()

# One row per captured change, appended by the capture triggers in the writer's transaction.
# row_image: the new row (I/U) or the old row (D), without excluded columns.
# old_filter: on U of a filtered table, the old values of the filter columns.
changelog = sa.Table(
    "syncd_changelog",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("table_name", sa.String(63), nullable=False),
    sa.Column("op", sa.String(1), nullable=False),
    sa.Column("row_image", JsonDoc, nullable=False),
    sa.Column("old_filter", JsonDoc, nullable=True),
    sa.Column(
        "captured_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()
    ),
    sqlite_autoincrement=True,
)

# Key/value state of the city side: last acknowledged sequence, last error, snapshot progress.
city_state = sa.Table(
    "syncd_city_state",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", JsonDoc, nullable=True),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

# The egress ledger: one row per batch put on the wire, kept when the changelog is trimmed
# (`syncd.city.egress`). Names and counts only, never a row value. A batch is (last_seq,
# checksum): the same batch sent again is the same row; a different batch under the same
# last_seq (a hub restored from a backup, a policy changed in between) gets its own row, so
# no evidence of what left is ever overwritten.
egress = sa.Table(
    "syncd_egress",
    metadata,
    sa.Column("last_seq", sa.BigInteger(), primary_key=True),
    sa.Column("checksum", sa.String(64), primary_key=True),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("covered", sa.Integer(), nullable=False),
    sa.Column("row_count", sa.Integer(), nullable=False),
    sa.Column("carried", JsonDoc, nullable=False),
    sa.Column("policy_fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("hub_batch_id", sa.BigInteger(), nullable=True),
    sa.Column("sent_at", sa.DateTime(), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
    sa.Index("ix_syncd_egress_sent_at", "sent_at"),
    sa.Index("ix_syncd_egress_status", "status"),
)
