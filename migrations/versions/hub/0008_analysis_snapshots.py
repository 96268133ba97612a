"""Analysis snapshots: the day's key figures per city and segment, and per customer.

`syncd report snapshot` and the hub daemon's daily job fill them; `report trend` compares with
syncd_report_daily, five-class downgrades, exposure growth and the key customers' trend with
syncd_report_customer_day (kept `[report] customer_snapshot_days` days). See docs/managers.md.

Revision ID: hub_0008
Revises: hub_0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import ExactDecimal

revision = "hub_0008"
down_revision = "hub_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_report_daily",
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
    op.create_table(
        "syncd_report_customer_day",
        sa.Column("snapshot_date", sa.Date(), primary_key=True),
        sa.Column("golden_id", sa.BigInteger(), primary_key=True),
        sa.Column("loan_balance", ExactDecimal(20, 2), nullable=False),
        sa.Column("worst_class", sa.SmallInteger(), nullable=False),
        sa.Column("contribution", ExactDecimal(20, 2), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncd_report_customer_day")
    op.drop_table("syncd_report_daily")
