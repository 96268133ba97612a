"""City tables: changelog and state.

Revision ID: city_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import JsonDoc

revision = "city_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_changelog",
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
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column(
            "captured_at", sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "syncd_city_state",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", JsonDoc, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncd_city_state")
    op.drop_table("syncd_changelog")
