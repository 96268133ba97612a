"""The city's egress ledger: per batch sent, the tables, columns and counts it carried.

Revision ID: city_0003
Revises: city_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import JsonDoc

revision = "city_0003"
down_revision = "city_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_egress",
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
    )
    op.create_index("ix_syncd_egress_sent_at", "syncd_egress", ["sent_at"])
    op.create_index("ix_syncd_egress_status", "syncd_egress", ["status"])


def downgrade() -> None:
    op.drop_table("syncd_egress")
