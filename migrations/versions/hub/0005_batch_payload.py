"""A batch travels as one payload: the JSON text the city sent, kept as text.

Until now every change of a batch became one `syncd_inbox_row` (jsonb key and data), written
at submit and read back, decoded and re-encoded at apply to check the checksum: four passes of
per-row work for what the city hashed once. The payload is stored as sent, so the checksum is
one SHA-256 over the stored text and a number the city wrote (a float, say) is never
normalised into something the checksum no longer matches. Batches submitted row by row (an
older city, or pending at the upgrade) keep their rows in `syncd_inbox_row` and apply as before.

Revision ID: hub_0005
Revises: hub_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0005"
down_revision = "hub_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("syncd_inbox_batch", sa.Column("payload", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("syncd_inbox_batch", "payload")
