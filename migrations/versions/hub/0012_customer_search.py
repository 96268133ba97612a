"""Customer search (the console's Customer 360): indexes on the golden customers' name and
id_number — trigram GIN (pg_trgm) on PostgreSQL where the extension can be had, a B-tree on
id_number everywhere.

The golden `customers` table is made by `syncd init` from the policy (`hub_tables.install`),
after the migrations: on a fresh hub it does not exist yet here, and init's own call of
`search.install_indexes` makes the indexes; on an upgraded hub this revision makes them (init
calls it again, idempotently). Without the pg_trgm privilege it warns and goes on.

Revision ID: hub_0012
Revises: hub_0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "hub_0012"
down_revision = "hub_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from syncd.hub import search

    search.install_indexes(op.get_bind())


def downgrade() -> None:
    for name in search_indexes():
        op.execute(f"DROP INDEX IF EXISTS {name}")


def search_indexes() -> tuple[str, ...]:
    from syncd.hub import search

    return (*search.TRIGRAM_INDEXES, search.ID_INDEX, search.CHARS_INDEX)
