"""Hub tables: nodes, inbox, quarantine, conflicts, audit.

Revision ID: hub_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import JsonDoc

revision = "hub_0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "syncd_node",
        sa.Column("node_id", sa.String(63), primary_key=True),
        sa.Column("city_code", sa.String(16), nullable=True),
        sa.Column("role_name", sa.String(63), nullable=True),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("received_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "syncd_inbox_batch",
        sa.Column("batch_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.Column("stats", JsonDoc, nullable=True),
        sa.UniqueConstraint("node_id", "last_seq", name="uq_syncd_inbox_batch_identity"),
    )
    op.create_index(
        "ix_syncd_inbox_batch_pending", "syncd_inbox_batch", ["status", "node_id", "last_seq"]
    )
    op.create_table(
        "syncd_inbox_row",
        sa.Column(
            "batch_id",
            sa.BigInteger(),
            sa.ForeignKey("syncd_inbox_batch.batch_id"),
            primary_key=True,
        ),
        sa.Column("ord", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("row_key", JsonDoc, nullable=False),
        sa.Column("row_data", JsonDoc, nullable=True),
    )
    op.create_table(
        "syncd_inbox_event",
        sa.Column("event_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "syncd_quarantine",
        sa.Column("quarantine_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("row_key", JsonDoc, nullable=False),
        sa.Column("row_data", JsonDoc, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_syncd_quarantine_status", "syncd_quarantine", ["status", "node_id"])
    op.create_table(
        "syncd_conflict",
        sa.Column("conflict_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column("golden_id", sa.BigInteger(), nullable=False),
        sa.Column("identity", JsonDoc, nullable=False),
        sa.Column("column_name", sa.String(63), nullable=False),
        sa.Column("golden_value", JsonDoc, nullable=True),
        sa.Column("candidates", JsonDoc, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolution", JsonDoc, nullable=True),
    )
    op.create_index(
        "ix_syncd_conflict_open",
        "syncd_conflict",
        ["status", "table_name", "golden_id", "column_name"],
    )
    op.create_table(
        "syncd_audit",
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
    )
    op.create_index("ix_syncd_audit_node", "syncd_audit", ["node_id", "entry_id"])
    op.create_index("ix_syncd_audit_key", "syncd_audit", ["table_name", "row_key"])
    if op.get_bind().dialect.name == "postgresql":
        from syncd.hub.audit import install_append_only

        install_append_only(op.get_bind())


def downgrade() -> None:
    for name in (
        "syncd_audit",
        "syncd_conflict",
        "syncd_quarantine",
        "syncd_inbox_event",
        "syncd_inbox_row",
        "syncd_inbox_batch",
        "syncd_node",
    ):
        op.drop_table(name)
