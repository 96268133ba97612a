"""Node health at the hub: per-node apply failures with their backoff, and the hub's own state.

A failure of one node's batch that is not about one row is recorded on the node (shown by
`status` and metrics, retried after `retry_at`) instead of pausing the whole hub.

Revision ID: hub_0002
Revises: hub_0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import JsonDoc

revision = "hub_0002"
down_revision = "hub_0001"
branch_labels = None
depends_on = None

_NODE_COLUMNS = ("failures", "failing_since", "last_error", "last_error_at", "retry_at")


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy on SQLite): every new column is nullable or defaulted.
    op.add_column(
        "syncd_node", sa.Column("failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("syncd_node", sa.Column("failing_since", sa.DateTime(), nullable=True))
    op.add_column("syncd_node", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("syncd_node", sa.Column("last_error_at", sa.DateTime(), nullable=True))
    op.add_column("syncd_node", sa.Column("retry_at", sa.DateTime(), nullable=True))
    op.create_table(
        "syncd_hub_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", JsonDoc, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncd_hub_state")
    for name in reversed(_NODE_COLUMNS):
        op.drop_column("syncd_node", name)
