"""A display name per registered node: what reports show for a city (杭州, not city-3301).

Nullable: nodes registered before keep showing their node id until `syncd node rename` names
them.

Revision ID: hub_0007
Revises: hub_0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0007"
down_revision = "hub_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy on SQLite): the column is nullable.
    op.add_column("syncd_node", sa.Column("display_name", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("syncd_node", "display_name")
