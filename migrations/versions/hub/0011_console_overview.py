"""The console's cached overview figures, with the lease of the one refresh running.

`syncd.hub.overview` writes a row per cached page (key 'overview'); the console's overview
page reads it instead of computing the reports in the request.

Revision ID: hub_0011
Revises: hub_0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.store.sqltypes import JsonDoc

revision = "hub_0011"
down_revision = "hub_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_console_cache",
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


def downgrade() -> None:
    op.drop_table("syncd_console_cache")
