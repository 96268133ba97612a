"""Portable column types: the policy's types as SQLAlchemy types on SQLite and PostgreSQL."""

from __future__ import annotations

import decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from syncd.core.policy import Column, ColumnType
from syncd.store.dialect import dialect_for

# JSON documents: JSONB on PostgreSQL (indexable, compact), TEXT-backed JSON on SQLite.
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class ExactDecimal(TypeDecorator[decimal.Decimal]):
    """NUMERIC on PostgreSQL; canonical text on SQLite, whose REAL would round money."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 2) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        stored = dialect_for(dialect).decimal_type(self.precision, self.scale)
        return dialect.type_descriptor(stored)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return dialect_for(dialect).bind_decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> decimal.Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))


def sql_type(col: Column) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type for a policy column."""
    t = col.type
    if t is ColumnType.STRING:
        return sa.String(col.length or 255)
    if t is ColumnType.TEXT:
        return sa.Text()
    if t is ColumnType.INTEGER:
        return sa.BigInteger()
    if t is ColumnType.DECIMAL:
        return ExactDecimal(col.precision, col.scale)
    if t is ColumnType.BOOLEAN:
        return sa.Boolean()
    if t is ColumnType.DATE:
        return sa.Date()
    if t is ColumnType.TIMESTAMP:
        return sa.DateTime()
    return JsonDoc
