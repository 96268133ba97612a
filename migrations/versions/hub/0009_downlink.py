"""The downward path: the province's insights sent to each city in per-node batches.

syncd_downlink_node holds per node the last batch built and the last the city acknowledged;
syncd_downlink_batch the batches (payload text and its checksum); syncd_insight_sent what each
node was last sent per customer, so a build sends only changes. See syncd/hub/downlink.py.

Revision ID: hub_0009
Revises: hub_0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0009"
down_revision = "hub_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_downlink_node",
        sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
        sa.Column("built_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("built_at", sa.DateTime(), nullable=True),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("acked_at", sa.DateTime(), nullable=True),
        sa.Column("reset", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "syncd_downlink_batch",
        sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "syncd_insight_sent",
        sa.Column("node_id", sa.String(63), sa.ForeignKey("syncd_node.node_id"), primary_key=True),
        sa.Column("row_key", sa.String(200), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncd_insight_sent")
    op.drop_table("syncd_downlink_batch")
    op.drop_table("syncd_downlink_node")
