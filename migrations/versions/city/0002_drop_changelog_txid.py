"""Changelog without txid: the gap guard never read it, and capture paid for it on every row.

Revision ID: city_0002
Revises: city_0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "city_0002"
down_revision = "city_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy would rename tables under
    # the capture triggers, whose bodies name the changelog.
    op.drop_column("syncd_changelog", "txid")


def downgrade() -> None:
    op.add_column("syncd_changelog", sa.Column("txid", sa.BigInteger(), nullable=True))
