"""Conflict resolutions name the OS user, and may need a second steward's approval.

`conflicts resolve --by NAME` records the name given and the operating-system user beside it;
under `[conflicts] four_eyes` a resolution is first proposed (status `proposed`, who and when)
and takes effect on another steward's `conflicts approve`.

Revision ID: hub_0004
Revises: hub_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0004"
down_revision = "hub_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy on SQLite): every new column is nullable.
    op.add_column("syncd_conflict", sa.Column("resolved_os_user", sa.String(128), nullable=True))
    op.add_column("syncd_conflict", sa.Column("proposed_by", sa.String(128), nullable=True))
    op.add_column("syncd_conflict", sa.Column("proposed_os_user", sa.String(128), nullable=True))
    op.add_column("syncd_conflict", sa.Column("proposed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for name in ("proposed_at", "proposed_os_user", "proposed_by", "resolved_os_user"):
        op.drop_column("syncd_conflict", name)
