"""The web console's users (roles, argon2id password hashes) and its cookie-signing key.

Revision ID: hub_0010
Revises: hub_0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0010"
down_revision = "hub_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "syncd_console_user",
        sa.Column("username", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=True),
        sa.Column("roles", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("failed_signins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_signin_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "syncd_console_key",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("syncd_console_key")
    op.drop_table("syncd_console_user")
