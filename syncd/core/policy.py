"""The sync policy: which tables are public, which columns and rows leave the city, how to merge.

Pure: this module parses and validates YAML into frozen pydantic models and knows nothing of
databases. Every name in a policy must be a plain SQL identifier, so nothing but identifiers
can reach SQL from a policy file; values (filter constants) are always bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from syncd.core.errors import PolicyError

_T = TypeVar("_T")

# \Z, not $: `$` also matches before a trailing newline, which would let "name\n" through.
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
RESERVED_PREFIXES = ("syncd_", "_")
RESERVED_COLUMNS = frozenset({"origin_node", "golden_id"})


def _ident(value: str) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a plain SQL identifier (lowercase letters, digits, '_', "
            "starting with a letter or '_', at most 63 characters)"
        )
    return value


Ident = Annotated[str, AfterValidator(_ident)]


# Where a model keeps what other modules derive from it (validators, hub tables): in the
# instance's __dict__ beside its fields, so pydantic's equality, serialisation and repr, which
# look at fields only, ignore it. (A PrivateAttr would make two equal policies unequal.)
_DERIVED = "__syncd_derived__"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def derived(self, key: str, build: Callable[[], _T]) -> _T:
        """What `build` makes from this frozen model, made once and kept on the model itself.

        For the objects built from a policy once per process (a table's validators, the hub's
        tables of a policy): no module-level cache, so nothing outlives the policy or is found
        again by a reused `id()`.
        """
        cache: dict[str, Any] = self.__dict__.setdefault(_DERIVED, {})
        if key not in cache:
            cache[key] = build()
        return cast(_T, cache[key])

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy that derives its own values: one made with `update` may differ."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop(_DERIVED, None)
        return copy


class ColumnType(StrEnum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    LIST = "list"


class Column(_Model):
    type: ColumnType
    length: int | None = Field(default=None, gt=0, le=10000)
    precision: int = Field(default=18, gt=0, le=38)
    scale: int = Field(default=2, ge=0, le=18)
    nullable: bool = True
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None


class FilterOp(StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    NOT_IN = "not_in"
    IS_NULL = "is_null"
    NOT_NULL = "not_null"


Scalar = str | int | float | bool


class Condition(_Model):
    """One condition of a row filter; a filter is the AND of its conditions."""

    column: Ident
    op: FilterOp
    value: Scalar | None = None
    values: tuple[Scalar, ...] | None = None

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        if self.op in (FilterOp.IN, FilterOp.NOT_IN):
            if not self.values or self.value is not None:
                raise ValueError(f"op {self.op.value} takes a non-empty 'values' list")
        elif self.op in (FilterOp.IS_NULL, FilterOp.NOT_NULL):
            if self.value is not None or self.values is not None:
                raise ValueError(f"op {self.op.value} takes no value")
        elif self.value is None or self.values is not None:
            raise ValueError(f"op {self.op.value} takes one 'value'")
        return self


class CheckKind(StrEnum):
    """A check of an identity number; each also gives the number's canonical form."""

    CN_RIC = "cn_ric"
    CN_USCC = "cn_uscc"
    CN_HMT_PERMIT = "cn_hmt_permit"
    CN_FOREIGN_PERMANENT = "cn_foreign_permanent"
    PASSPORT = "passport"


class FieldCheck(_Model):
    """A domain check on a column, optionally only when another column has a value."""

    column: Ident
    check: CheckKind
    when: Condition | None = None


class MergeRule(StrEnum):
    LATEST = "latest"
    PRIORITY = "priority"
    UNION = "union"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    MANUAL = "manual"


class FieldMerge(_Model):
    rule: MergeRule
    # priority: sources whose node city equals this column's value come first ...
    prefer_home: Ident | None = None
    # ... then sources in this node order, then the most recent.
    order: tuple[str, ...] = ()


class Merge(_Model):
    default: MergeRule = MergeRule.LATEST
    fields: dict[Ident, MergeRule | FieldMerge] = Field(default_factory=dict)

    def rule_for(self, column: str) -> FieldMerge:
        spec = self.fields.get(column, self.default)
        return spec if isinstance(spec, FieldMerge) else FieldMerge(rule=spec)


class Parent(_Model):
    table: Ident
    columns: dict[Ident, Ident]


class TableClass(StrEnum):
    PUBLIC = "public"
    LOCAL = "local"


class Table(_Model):
    """One CRM table as the policy declares it."""

    name: Ident = Field(default="", exclude=True)
    class_: TableClass = Field(alias="class")
    description: str | None = None
    columns: dict[Ident, Column]
    primary_key: tuple[Ident, ...]
    exclude: tuple[Ident, ...] = ()
    filter: tuple[Condition, ...] = ()
    identity: tuple[Ident, ...] = ()
    updated_at: Ident | None = None
    merge: Merge = Merge()
    checks: tuple[FieldCheck, ...] = ()
    parent: Parent | None = None

    @property
    def is_public(self) -> bool:
        return self.class_ is TableClass.PUBLIC

    @cached_property
    def public_columns(self) -> tuple[str, ...]:
        """Columns that may leave the city, in declared order."""
        return tuple(c for c in self.columns if c not in self.exclude)

    @cached_property
    def public_set(self) -> frozenset[str]:
        """public_columns as a set, for checking the names of a received row at once."""
        return frozenset(self.public_columns)

    @cached_property
    def filter_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.column for c in self.filter))

    @cached_property
    def data_columns(self) -> tuple[str, ...]:
        """Public columns that are not part of the primary key."""
        return tuple(c for c in self.public_columns if c not in self.primary_key)


class Policy(_Model):
    version: Literal[1] = 1
    tables: dict[Ident, Table]
    source: str = Field(default="<policy>", exclude=True)

    @property
    def public_tables(self) -> tuple[Table, ...]:
        return tuple(t for t in self.tables.values() if t.is_public)

    def table(self, name: str) -> Table:
        return self.tables[name]


def _missing(table: Table, key: str, names: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return [
        (key, f"column {n!r} is not declared in columns") for n in names if n not in table.columns
    ]


def _reference_problems(table: Table) -> list[tuple[str, str]]:
    """Every column the table's keys, filter, identity and checks name must be declared."""
    problems = _missing(table, "primary_key", table.primary_key)
    problems += _missing(table, "exclude", table.exclude)
    problems += _missing(table, "identity", table.identity)
    problems += _missing(table, "filter", list(table.filter_columns))
    for i, check in enumerate(table.checks):
        problems += _missing(table, f"checks[{i}].column", [check.column])
        if check.when is not None:
            problems += _missing(table, f"checks[{i}].when", [check.when.column])
    if table.updated_at is not None:
        problems += _missing(table, "updated_at", [table.updated_at])
        col = table.columns.get(table.updated_at)
        if col is not None and col.type is not ColumnType.TIMESTAMP:
            problems.append(("updated_at", "must name a timestamp column"))
    return problems


def _exclusion_problems(table: Table) -> list[tuple[str, str]]:
    """Keys, filters and identities must stay visible to the hub."""
    problems: list[tuple[str, str]] = []
    for k in table.primary_key:
        if k in table.exclude:
            problems.append(("exclude", f"primary key column {k!r} cannot be excluded"))
        if k in table.columns and table.columns[k].nullable:
            problems.append((f"columns.{k}", "primary key columns must be nullable: false"))
    problems += [
        ("filter", f"column {k!r} is excluded, so the hub cannot see it")
        for k in table.filter_columns
        if k in table.exclude
    ]
    problems += [
        ("identity", f"column {k!r} is excluded") for k in table.identity if k in table.exclude
    ]
    return problems


def _column_problems(table: Table) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if table.name.startswith(RESERVED_PREFIXES):
        problems.append(("(name)", "table names may not start with 'syncd_' or '_'"))
    if not table.primary_key:
        problems.append(("primary_key", "at least one column is required"))
    for name, col in table.columns.items():
        if name.startswith(RESERVED_PREFIXES) or name in RESERVED_COLUMNS:
            problems.append((f"columns.{name}", "this name is reserved by syncd"))
        if col.choices is not None and col.type not in (ColumnType.STRING, ColumnType.TEXT):
            problems.append((f"columns.{name}.choices", "only string columns take choices"))
        if col.type is ColumnType.LIST and name in table.primary_key:
            problems.append((f"columns.{name}", "a list column cannot be a key"))
    for cond in table.filter:
        fcol = table.columns.get(cond.column)
        if fcol is not None and fcol.type is ColumnType.LIST:
            problems.append(("filter", f"column {cond.column!r} is a list; filters take scalars"))
    return problems


def _table_problems(table: Table) -> list[tuple[str, str]]:
    """Cross-field rules pydantic cannot express per field: (key, reason) pairs."""
    return (
        _column_problems(table)
        + _reference_problems(table)
        + _exclusion_problems(table)
        + _merge_problems(table)
    )


def _field_merge_problems(
    table: Table, col_name: str, spec: MergeRule | FieldMerge
) -> list[tuple[str, str]]:
    key = f"merge.fields.{col_name}"
    col = table.columns.get(col_name)
    if col is None:
        return [(key, "column is not declared in columns")]
    problems: list[tuple[str, str]] = []
    if col_name in table.exclude:
        problems.append((key, "column is excluded, so it never reaches the hub"))
    if col_name in table.identity or col_name in table.primary_key:
        problems.append((key, "identity and key columns are not merged"))
    rule = spec.rule if isinstance(spec, FieldMerge) else spec
    if rule is MergeRule.SUM and col.type not in (ColumnType.INTEGER, ColumnType.DECIMAL):
        problems.append((key, "rule sum needs a numeric column"))
    if rule in (MergeRule.MAX, MergeRule.MIN) and col.type in (ColumnType.LIST, ColumnType.BOOLEAN):
        problems.append((key, f"rule {rule.value} needs an ordered column"))
    if rule is MergeRule.UNION and col.type is not ColumnType.LIST:
        problems.append((key, "rule union needs a list column"))
    if isinstance(spec, FieldMerge):
        if spec.rule is not MergeRule.PRIORITY and (spec.prefer_home or spec.order):
            problems.append((key, "prefer_home and order belong to rule priority"))
        if spec.prefer_home is not None and spec.prefer_home not in table.columns:
            problems.append((key, f"prefer_home column {spec.prefer_home!r} is not declared"))
    return problems


def _merge_problems(table: Table) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    merge = table.merge
    explicit = bool(merge.fields) or merge.default is not MergeRule.LATEST
    if explicit and not table.identity:
        problems.append(("merge", "merge rules need an identity (rows are otherwise per city)"))
    for col_name, spec in merge.fields.items():
        problems += _field_merge_problems(table, col_name, spec)
    if (
        table.identity
        and table.updated_at is None
        and any(table.merge.rule_for(c).rule is MergeRule.LATEST for c in table.data_columns)
    ):
        problems.append(("updated_at", "rule latest needs the table's updated_at column"))
    return problems


def _policy_problems(policy: Policy) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name, table in policy.tables.items():
        for key, reason in _table_problems(table):
            problems.append((f"tables.{name}.{key}", reason))
        if table.parent is not None:
            parent = policy.tables.get(table.parent.table)
            key = f"tables.{name}.parent"
            if parent is None:
                problems.append((key, f"parent table {table.parent.table!r} is not declared"))
                continue
            if table.is_public and not parent.is_public:
                problems.append((key, "a public table cannot reference a local parent"))
            for child_col, parent_col in table.parent.columns.items():
                if child_col not in table.columns:
                    problems.append((key, f"column {child_col!r} is not declared"))
                if parent_col not in parent.primary_key:
                    problems.append((key, f"{parent_col!r} is not in {parent.name}'s primary key"))
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after[_ident(), str]", "FieldMerge", "MergeRule"):
            continue
        elif parts:
            parts.append(f".{p}")
        else:
            parts.append(str(p))
    return "".join(parts) or "(top level)"


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate an already-parsed YAML document; raise PolicyError naming source and key."""
    if not isinstance(data, dict):
        raise PolicyError(source, "(top level)", "the policy must be a mapping with 'tables'")
    tables = data.get("tables")
    if isinstance(tables, dict):
        data = dict(data)
        data["tables"] = {
            name: ({**spec, "name": name} if isinstance(spec, dict) else spec)
            for name, spec in tables.items()
        }
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "missing":
            reason = "required key is missing"
        raise PolicyError(source, _loc(err["loc"]), reason) from None
    problems = _policy_problems(policy)
    if problems:
        key, reason = problems[0]
        raise PolicyError(source, key, reason)
    return policy.model_copy(update={"source": source})


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(source, "(file)", f"cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, "(syntax)", f"not valid YAML: {exc}") from exc
    return parse_policy(data, source)


@dataclass(frozen=True)
class SchemaProblem:
    """One way the live database differs from the policy; column is None for table problems."""

    table: str
    column: str | None
    problem: str

    def __str__(self) -> str:
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        return f"{where}: {self.problem}"
