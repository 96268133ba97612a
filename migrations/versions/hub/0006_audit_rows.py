"""Audit entries that cover many row decisions: the row-outcome table syncd_audit_row.

A version-2 entry (action `row_decisions`) stands for the row decisions of one batch, table
and outcome, and commits to them by `rows_hash`, the SHA-256 over their row hashes in order;
the decisions themselves are rows of syncd_audit_row, append-only like syncd_audit. Entries
written before stay as they are and verify unchanged.

Revision ID: hub_0006
Revises: hub_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0006"
down_revision = "hub_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_audit_row",
        sa.Column("entry_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("ord", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("row_key", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_syncd_audit_row_key", "syncd_audit_row", ["row_key"])
    if op.get_bind().dialect.name == "postgresql":
        from syncd.hub.audit import install_append_only

        install_append_only(op.get_bind())


def downgrade() -> None:
    op.drop_table("syncd_audit_row")
