"""Row validation at the hub: the policy's declared types, constraints and field checks.

Pure: one pydantic model per public table, built once from the policy and cached, so a row is
validated by pydantic-core alone. The city is not trusted: `classify` re-checks sovereignty
(table, columns, row filter) before any value is looked at, then every value is checked again,
and a failing row gets one reason that names its column(s) and the rule for the quarantine —
never the value: reasons go into the append-only audit log, which keeps them forever.

`classify` never raises: whatever is wrong with one row, that row gets a verdict and the rest
of its batch applies. Bounds of the column types (int64, numeric precision, string length, the
dates both PostgreSQL and SQLite store, no NUL or lone surrogate in text) are checked here, so
the database never refuses a valid row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic_core import ErrorDetails

from syncd.core.batch import DELETE, UPSERT, Unsendable, unsendable_kind
from syncd.core.checks import check_value
from syncd.core.policy import IDENT_RE, Column, ColumnType, Policy, Table
from syncd.core.rowfilter import evaluate_condition, passes

_NAME_MAX = 63
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# PostgreSQL text cannot hold NUL. A lone surrogate cannot be encoded to UTF-8 either; any
# pattern makes pydantic-core read the string as UTF-8, which refuses it (`string_unicode`).
# Both checks run in Rust: this is the hot path.
_STORABLE_TEXT = StringConstraints(pattern=r"^[^\x00]*$")
_UNSENDABLE_WORDS = {
    Unsendable.BLOB: "binary data",
    Unsendable.INVALID_UTF8: "text that is not UTF-8",
    Unsendable.NUL: "a NUL character",
}
# Reasons by pydantic error type, for the errors whose own message shows the input.
_MESSAGES = {
    "string_pattern_mismatch": "holds a NUL character, which the database cannot store",
    "string_unicode": "holds text that is not valid Unicode (a lone surrogate)",
}


def _naive_utc(value: dt.datetime) -> dt.datetime:
    # The hub stores naive UTC: an offset given by a city is honoured, then dropped.
    if value.tzinfo is not None:
        try:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            # 0001-01-01T00:00+08:00 is in year 0 in UTC, which no database stores.
            raise ValueError("in UTC, outside the years 1 to 9999") from None
    return value


def _int_input(value: Any) -> Any:
    """A JSON number (a Decimal here) as an int, cheaply, before pydantic converts it.

    pydantic-core turns 1e999999999 into a billion-digit integer and 1e-999999999 into a
    fraction with such a denominator: either stalls the hub for one row.
    """
    if isinstance(value, decimal.Decimal) and value.is_finite():
        if value and value.adjusted() > 18:
            raise ValueError("outside the 64-bit integer range")
        whole = value.to_integral_value()
        if whole != value:
            raise ValueError("not a whole number")
        return int(whole)
    return value


def _decimal_checker(precision: int, scale: int) -> AfterValidator:
    """Exact fit into NUMERIC(precision, scale), then quantized so both dialects store one text.

    In a context of the column's precision that traps rounding: the default context rounds to
    28 digits (a NUMERIC(38) value would fail or lose digits), and any decimal exception is a
    reason here, never an error of the batch.
    """
    quantum = decimal.Decimal(1).scaleb(-scale)
    int_digits = precision - scale
    context = decimal.Context(
        prec=precision, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow]
    )

    def check(value: decimal.Decimal) -> decimal.Decimal:
        if not value.is_finite():
            raise ValueError("must be a finite number")
        if value and value.adjusted() >= int_digits:
            raise ValueError(f"more than {int_digits} digits before the decimal point")
        try:
            return value.quantize(quantum, context=context)
        except decimal.Inexact:
            raise ValueError(f"more than {scale} decimal places") from None
        except decimal.DecimalException:
            raise ValueError(f"does not fit NUMERIC({precision}, {scale})") from None

    return AfterValidator(check)


def _bound(col: Column, value: float) -> int | float | decimal.Decimal:
    if col.type is ColumnType.DECIMAL:
        return decimal.Decimal(str(value))
    return int(value) if float(value).is_integer() else value


def _text_type(col: Column) -> Any:
    if col.choices is not None:
        return cast(Any, Literal)[col.choices]
    if col.type is ColumnType.STRING:
        return Annotated[str, StringConstraints(max_length=col.length or 255), _STORABLE_TEXT]
    return Annotated[str, _STORABLE_TEXT]


def column_type(col: Column) -> Any:
    """The pydantic type of a policy column's non-null values."""
    limits: dict[str, Any] = {}
    if col.min is not None:
        limits["ge"] = _bound(col, col.min)
    if col.max is not None:
        limits["le"] = _bound(col, col.max)
    t = col.type
    if t in (ColumnType.STRING, ColumnType.TEXT):
        return _text_type(col)
    if t is ColumnType.INTEGER:
        # BIGINT's range, narrowed by the policy's own bounds.
        limits["ge"] = max(limits.get("ge", _INT64_MIN), _INT64_MIN)
        limits["le"] = min(limits.get("le", _INT64_MAX), _INT64_MAX)
        return Annotated[int, BeforeValidator(_int_input), Field(**limits)]
    if t is ColumnType.DECIMAL:
        return Annotated[
            decimal.Decimal,
            Field(allow_inf_nan=False, **limits),
            _decimal_checker(col.precision, col.scale),
        ]
    if t is ColumnType.BOOLEAN:
        return bool
    if t is ColumnType.DATE:
        return dt.date
    if t is ColumnType.TIMESTAMP:
        return Annotated[dt.datetime, AfterValidator(_naive_utc)]
    return list[Annotated[str, _STORABLE_TEXT]]


def _model(table: Table, columns: tuple[str, ...], required: frozenset[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name in columns:
        col = table.columns[name]
        base = column_type(col)
        if name in required or not col.nullable:
            fields[name] = (base, ...)
        else:
            fields[name] = (base | None, None)
    return create_model(
        f"{table.name}_row",
        __config__=ConfigDict(extra="forbid", frozen=False),
        **fields,
    )


@dataclass(frozen=True)
class _Validators:
    table: Table
    row: type[BaseModel]
    key: type[BaseModel]
    columns: dict[str, TypeAdapter[Any]]


def _validators(table: Table) -> _Validators:
    """The table's pydantic models, built once and kept on the table."""
    return table.derived("validators", lambda: _build_validators(table))


def _build_validators(table: Table) -> _Validators:
    # Identity columns must be present: a source without its identity cannot be merged.
    required = frozenset(table.primary_key) | frozenset(table.identity)
    return _Validators(
        table=table,
        row=_model(table, table.public_columns, required),
        key=_model(table, table.primary_key, required),
        columns={},
    )


def _describe(err: ErrorDetails) -> str:
    """One error as `column: rule`. Never the input: pydantic's messages name the rule alone,
    except the pattern's (the pattern is ours, but its message is replaced all the same)."""
    column = ".".join(str(p) for p in err["loc"]) or "(row)"
    kind = err["type"]
    stand_in = unsendable_kind(err.get("input"))
    if stand_in is not None:
        return f"{column}: the city could not send this value ({_UNSENDABLE_WORDS[stand_in]})"
    if kind == "missing" or (err.get("input") is None and kind != "extra_forbidden"):
        return f"{column}: must not be null"
    if kind == "extra_forbidden":
        return f"{column}: not a column of this table"
    msg = _MESSAGES.get(kind) or err["msg"].removeprefix("Value error, ")
    return f"{column}: {msg[:1].lower()}{msg[1:]}"


def _reason(exc: ValidationError) -> str:
    return "; ".join(dict.fromkeys(_describe(e) for e in exc.errors(include_url=False)))


def _check_fields(table: Table, values: dict[str, Any]) -> str | None:
    """Run the policy's checks; a passing value is replaced by its canonical form, so the
    identity the hub stores and merges on is the normalised one."""
    problems: list[str] = []
    for check in table.checks:
        if check.when is not None and evaluate_condition(check.when, values) is not True:
            continue
        canonical, problem = check_value(check.check, values.get(check.column))
        if problem is not None:
            problems.append(f"{check.column}: {problem}")
        elif canonical is not None:
            values[check.column] = canonical
    return "; ".join(problems) or None


def validate_row(table: Table, data: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Typed values of every public column, or None and one reason naming the column(s)."""
    try:
        model = _validators(table).row.model_validate(data)
    except ValidationError as exc:
        return None, _reason(exc)
    values = dict(model.__dict__)
    problem = _check_fields(table, values)
    if problem is not None:
        return None, problem
    return values, None


def validate_key(table: Table, key: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Typed primary-key values, or None and a reason naming the key column(s)."""
    try:
        model = _validators(table).key.model_validate(key)
    except ValidationError as exc:
        return None, _reason(exc)
    return dict(model.__dict__), None


def _adapter(table: Table, column: str) -> TypeAdapter[Any]:
    validators = _validators(table)
    adapter = validators.columns.get(column)
    if adapter is None:
        col = table.columns[column]
        base = column_type(col)
        nullable = col.nullable and column not in table.identity
        adapter = validators.columns[column] = TypeAdapter(base | None if nullable else base)
    return adapter


def decode_value(table: Table, column: str, encoded: Any) -> tuple[Any, str | None]:
    """A column value from its JSON form (as `merge.encode_value` wrote it), typed again."""
    try:
        return _adapter(table, column).validate_python(encoded), None
    except ValidationError as exc:
        return None, _reason(exc).replace("(row)", column)


def validate_value(table: Table, column: str, text: str) -> tuple[Any, str | None]:
    """A value for one column typed in by a person (a list column takes a JSON array)."""
    raw: Any = text
    if table.columns[column].type is ColumnType.LIST:
        try:
            raw = json.loads(text)
        except ValueError:
            return None, f"{column}: expected a JSON array of strings"
    value, problem = decode_value(table, column, raw)
    if problem is not None:
        return None, problem
    for check in table.checks:
        # A conditional check needs the rest of the row, which a lone value does not have.
        if check.column == column and check.when is None:
            value, problem = check_value(check.check, value)
            if problem is not None:
                return None, f"{column}: {problem}"
    return value, None


# --- a stored change and the hub's verdict on it ----------------------------------------


@dataclass(frozen=True)
class Change:
    """One stored change: parsed exactly (Decimals) for use, and as received for the checksum.

    The wire form is what the city hashed and what quarantine keeps; the exact form is what
    validation reads, so money never passes through float.
    """

    seq: int
    table: str
    op: str
    key: Any
    row: Any
    wire_key: Any
    wire_row: Any

    @classmethod
    def parse(cls, seq: int, table: str, op: str, key_text: str, row_text: str | None) -> Change:
        key_exact, key_wire = _exact_and_wire(key_text)
        row_exact, row_wire = (None, None) if row_text is None else _exact_and_wire(row_text)
        return cls(seq, table, op, key_exact, row_exact, key_wire, row_wire)

    def wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "table": self.table,
            "op": self.op,
            "key": self.wire_key,
            "row": self.wire_row,
        }


def _exact_and_wire(text: str) -> tuple[Any, Any]:
    """The JSON with exact decimals, and as received (for the checksum) — one parse if equal.

    syncd cities send decimals as strings, so the two readings differ only when the text holds
    a JSON float; only then is it parsed a second time.
    """
    floats = False

    def exact(number: str) -> decimal.Decimal:
        nonlocal floats
        floats = True
        return decimal.Decimal(number)

    value = json.loads(text, parse_float=exact)
    return value, (json.loads(text) if floats else value)


@dataclass(frozen=True)
class Verdict:
    """A change checked against the policy: refused, invalid (with a reason) or typed."""

    change: Change
    table: Table | None
    refused: str | None = None
    invalid: str | None = None
    key: dict[str, Any] | None = None
    values: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return self.refused is None and self.invalid is None

    def key_tuple(self) -> tuple[Any, ...]:
        assert self.table is not None
        assert self.key is not None
        return tuple(self.key[c] for c in self.table.primary_key)


def _city_name(name: str) -> str:
    """A table or column name sent by the city, fit for a reason: a declared-looking name as
    it is, anything else cut short and quoted by repr, which escapes NUL and lone surrogates
    (a name can smuggle neither a value nor an unstorable character into the log)."""
    return name if IDENT_RE.match(name) else repr(name[:_NAME_MAX])


def _column_refusal(table: Table, names: Iterable[str], what: str) -> str | None:
    excluded = sorted(n for n in names if n in table.exclude)
    undeclared = sorted(_city_name(n) for n in names if n not in table.columns)
    parts = []
    if excluded:
        parts.append(f"{', '.join(excluded)} excluded from {table.name} by the policy")
    if undeclared:
        parts.append(f"{', '.join(undeclared)} not declared for {table.name}")
    if not parts:
        return None
    return f"{what} holds columns that never leave the city: {'; '.join(parts)}"


def _sovereignty(policy: Policy, change: Change) -> str | None:
    """Why the change may not exist at the hub at all, naming tables and columns, no values."""
    table = policy.tables.get(change.table)
    if table is None:
        return f"table {change.table[:_NAME_MAX]!r} is not declared in the policy"
    if not table.is_public:
        return f"table {table.name} is local to the city"
    if not isinstance(change.key, dict) or not (change.row is None or isinstance(change.row, dict)):
        return "row_key and row_data must be JSON objects"
    stray = [k for k in change.key if k not in table.primary_key]
    if stray:
        refusal = _column_refusal(table, stray, "row_key")
        return refusal or f"row_key holds {', '.join(sorted(stray))}, not only key columns"
    if change.row is not None and not table.public_set.issuperset(change.row):
        refusal = _column_refusal(table, change.row, "row_data")
        if refusal is not None:
            return refusal
    if (
        change.op == UPSERT
        and change.row is not None
        # A stand-in in a filter column cannot be judged; validation quarantines the row.
        and not any(unsendable_kind(change.row.get(c)) for c in table.filter_columns)
        and not passes(table.filter, change.row)
    ):
        return f"row fails the row filter of {table.name} ({', '.join(table.filter_columns)})"
    return None


def _typed(table: Table, change: Change) -> tuple[Verdict | None, str | None]:
    if change.op not in (UPSERT, DELETE):
        return None, f"unknown op {change.op[:16]!r}"
    if change.op == UPSERT and isinstance(change.row, dict) and _same_key(table, change):
        # The key is the row's own key columns as sent: validating the row types it too.
        values, problem = validate_row(table, change.row)
        if values is None:
            return None, problem
        own_key = {c: values[c] for c in table.primary_key}
        return Verdict(change, table, key=own_key, values=values), None
    key, problem = validate_key(table, change.key)
    if key is None:
        return None, problem
    if change.op == DELETE:
        return Verdict(change, table, key=key), None
    if change.row is None:
        return None, "an upsert without row data"
    values, problem = validate_row(table, change.row)
    if values is None:
        return None, problem
    if any(values[c] != key[c] for c in table.primary_key):
        return None, f"row_key does not match the row's {', '.join(table.primary_key)}"
    return Verdict(change, table, key=key, values=values), None


def _same_key(table: Table, change: Change) -> bool:
    key, row = change.key, change.row
    return len(key) == len(table.primary_key) and all(
        c in row and c in key and type(key[c]) is type(row[c]) and key[c] == row[c]
        for c in table.primary_key
    )


def classify(policy: Policy, change: Change) -> Verdict:
    """Sovereignty first (refused rows are never stored), then types and checks.

    Never raises: an unexpected error on one row is that row's verdict (refused if it struck
    before the row was known to be public, else invalid), named by its class alone — its
    message could quote the value.
    """
    table = policy.tables.get(change.table) if isinstance(change.table, str) else None
    try:
        refusal = _sovereignty(policy, change)
    except Exception as exc:  # one row must never stop the batch
        return Verdict(change, table, refused=f"could not check the row ({type(exc).__name__})")
    if refusal is not None:
        return Verdict(change, table, refused=refusal)
    assert table is not None
    try:
        verdict, problem = _typed(table, change)
    except Exception as exc:  # one row must never stop the batch
        return Verdict(change, table, invalid=f"could not validate the row ({type(exc).__name__})")
    if verdict is None:
        return Verdict(change, table, invalid=problem or "invalid row")
    return verdict
