"""Policy agreement and refused rows at the hub.

Each batch records the fingerprint of the policy its city sent it under; each node, the last
fingerprint accepted, why its batches are refused while its policy differs from the hub's, and
how many of its rows the hub refused (with the last reason), for `status` and metrics.

Revision ID: hub_0003
Revises: hub_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0003"
down_revision = "hub_0002"
branch_labels = None
depends_on = None

_NODE_COLUMNS = (
    "policy_fingerprint",
    "policy_problem",
    "policy_problem_at",
    "refused_rows",
    "last_refused_reason",
    "last_refused_at",
)


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy on SQLite): every new column is nullable or defaulted.
    op.add_column("syncd_node", sa.Column("policy_fingerprint", sa.String(64), nullable=True))
    op.add_column("syncd_node", sa.Column("policy_problem", sa.Text(), nullable=True))
    op.add_column("syncd_node", sa.Column("policy_problem_at", sa.DateTime(), nullable=True))
    op.add_column(
        "syncd_node",
        sa.Column("refused_rows", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("syncd_node", sa.Column("last_refused_reason", sa.Text(), nullable=True))
    op.add_column("syncd_node", sa.Column("last_refused_at", sa.DateTime(), nullable=True))
    op.add_column(
        "syncd_inbox_batch", sa.Column("policy_fingerprint", sa.String(64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("syncd_inbox_batch", "policy_fingerprint")
    for name in reversed(_NODE_COLUMNS):
        op.drop_column("syncd_node", name)
