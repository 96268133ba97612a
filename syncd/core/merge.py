"""The golden record: merge the source records of one identity, field by field, by rule.

Pure: no database, no I/O. The result is a function of the *set* of sources, never of their
order: sources are put in node-id order before anything else, and every rule breaks its ties
explicitly, so the hub converges to the same golden record whatever order batches arrive in.

Tie-breaks callers can rely on (and auditors read back from the decisions):

- ``latest``: newest ``updated_at`` among sources holding a value; a missing ``updated_at`` is
  older than any timestamp; equal timestamps go to the *greater* node id.
- ``priority``: home-city sources first, then the declared node ``order``, then the newest
  ``updated_at``, then the *smaller* node id; the first value that is not None is taken.
- ``max`` / ``min``: among equal extremes the *greater* node id is the winner, so the value's
  exact form (``Decimal("1.0")`` against ``Decimal("1.00")``) is deterministic too.
- ``manual``: disputed fields keep the value of the home-city source, else of the smallest node
  id, never the newest edit, until a data steward resolves them. The home column of a
  ``manual`` field is the ``prefer_home`` column of the table's first ``priority`` field.

``union`` always yields a sorted list (``[]`` when no source has one), and ``union``, ``sum``
and steward-resolved fields have no winner. Values are compared by `values_equal`: Decimals
numerically, lists element by element in their order. Timestamps of one table must all be
naive or all be aware (validation gives naive UTC); comparing the two raises TypeError.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.policy import FieldMerge, MergeRule, Table


@dataclass(frozen=True)
class Source:
    """One city's version of a record, as the hub keeps it for merging."""

    node_id: str
    node_city: str | None
    seq: int
    updated_at: dt.datetime | None
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Resolution:
    """A data steward's value for a disputed field, valid while the candidates are unchanged."""

    value: Any
    candidates: Mapping[str, Any]


@dataclass(frozen=True)
class FieldDecision:
    """How one golden field was chosen: the rule, the value, and who held what."""

    column: str
    rule: MergeRule
    value: Any
    winner: str | None
    disputed: bool
    candidates: Mapping[str, Any]


@dataclass(frozen=True)
class MergeResult:
    """The golden values of the merged columns, every decision, and the unresolved disputes."""

    values: dict[str, Any]
    decisions: tuple[FieldDecision, ...]
    conflicts: tuple[FieldDecision, ...]


def encode_value(value: Any) -> Any:
    """Turn a column value into its JSON form: Decimals as strings, dates as ISO 8601."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.date):  # a datetime is a date too
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    return value


def _equals_encoded(value: Any, text: str) -> bool:
    """Compare a typed value with a string that may be its JSON form."""
    if isinstance(value, bool):
        return False
    try:
        if isinstance(value, int | float | decimal.Decimal):
            return bool(decimal.Decimal(text) == value)
        if isinstance(value, dt.datetime):
            return dt.datetime.fromisoformat(text) == value
        if isinstance(value, dt.date):
            return dt.date.fromisoformat(text) == value
    except (ValueError, ArithmeticError):
        # Not an encoding of this type at all, so not equal.
        return False
    return False


def values_equal(a: Any, b: Any) -> bool:
    """Compare two column values: numbers numerically, a JSON form equal to its typed value."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and not isinstance(b, str):
        a, b = b, a
    if isinstance(b, str) and not isinstance(a, str):
        # Resolutions come back from JSON, where Decimals and dates were encoded as strings.
        return _equals_encoded(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        # True == 1 in Python; a boolean never equals a number here.
        return type(a) is type(b) and a == b
    return bool(a == b)


def same_candidates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two node -> value mappings name the same nodes with equal values."""
    return a.keys() == b.keys() and all(values_equal(a[n], b[n]) for n in a)


def _distinct_count(values: Iterable[Any]) -> int:
    representatives: list[Any] = []
    for v in values:
        if v is not None and not any(values_equal(v, r) for r in representatives):
            representatives.append(v)
    return len(representatives)


def _recency(source: Source) -> tuple[bool, dt.datetime]:
    """Sort key: sources without updated_at are older than any timestamp."""
    return (source.updated_at is not None, source.updated_at or dt.datetime.min)


def _is_home(source: Source, home_column: str | None) -> bool:
    if home_column is None or source.node_city is None:
        return False
    home = source.row.get(home_column)
    return home is not None and str(home) == source.node_city


def _first_value(ranked: Iterable[Source], column: str) -> tuple[Any, str | None]:
    for s in ranked:
        value = s.row.get(column)
        if value is not None:
            return value, s.node_id
    return None, None


def _holders(sources: Sequence[Source], column: str) -> list[Source]:
    return [s for s in sources if s.row.get(column) is not None]


_Pick = tuple[Any, str | None]


def _pick_latest(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    holders = _holders(sources, column)
    if not holders:
        return None, None
    winner = max(holders, key=lambda s: (*_recency(s), s.node_id))
    return winner.row[column], winner.node_id


def priority_order(
    sources: Sequence[Source], prefer_home: str | None, order: Sequence[str] = ()
) -> list[Source]:
    """Rank sources as rule priority does: home city, declared order, newest, node id."""
    position: dict[str, int] = {}
    for i, node in enumerate(order):
        position.setdefault(node, i)
    # Stable sorts from the weakest key to the strongest, so newest-first can be descending.
    ranked = sorted(sources, key=lambda s: s.node_id)
    ranked.sort(key=_recency, reverse=True)
    ranked.sort(
        key=lambda s: (not _is_home(s, prefer_home), position.get(s.node_id, len(position)))
    )
    return ranked


def _pick_priority(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    return _first_value(priority_order(sources, spec.prefer_home, spec.order), column)


def _pick_union(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    items: set[Any] = set()
    for s in sources:
        items.update(s.row.get(column) or ())
    return sorted(items), None


def _pick_extreme(column: str, sources: Sequence[Source], choose: Callable[..., Source]) -> _Pick:
    # Greatest node id first: max and min return the first of equal extremes.
    holders = sorted(_holders(sources, column), key=lambda s: s.node_id, reverse=True)
    if not holders:
        return None, None
    winner = choose(holders, key=lambda s: s.row[column])
    return winner.row[column], winner.node_id


def _pick_max(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    return _pick_extreme(column, sources, max)


def _pick_min(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    return _pick_extreme(column, sources, min)


def _pick_sum(column: str, spec: FieldMerge, sources: Sequence[Source]) -> _Pick:
    numbers = [s.row[column] for s in _holders(sources, column)]
    if not numbers:
        return None, None
    with decimal.localcontext() as ctx:
        # Money is never rounded: an exact context makes the sum independent of its order.
        ctx.prec = decimal.MAX_PREC
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        return sum(numbers, start=0), None


_RULES: dict[MergeRule, Callable[[str, FieldMerge, Sequence[Source]], _Pick]] = {
    MergeRule.LATEST: _pick_latest,
    MergeRule.PRIORITY: _pick_priority,
    MergeRule.UNION: _pick_union,
    MergeRule.MAX: _pick_max,
    MergeRule.MIN: _pick_min,
    MergeRule.SUM: _pick_sum,
}


def home_column(table: Table) -> str | None:
    """The column naming a record's home city: prefer_home of the first priority field."""
    for column in table.data_columns:
        spec = table.merge.rule_for(column)
        if spec.rule is MergeRule.PRIORITY and spec.prefer_home is not None:
            return spec.prefer_home
    return None


def _merge_manual(
    column: str,
    sources: Sequence[Source],
    home: str | None,
    candidates: Mapping[str, Any],
    disputed: bool,
    resolution: Resolution | None,
) -> tuple[_Pick, bool]:
    """Pick a manual field's value; the flag says whether a conflict must be queued."""
    # Home first, then node id, and never by recency: the newest edit must not win a dispute.
    ranked = sorted(sources, key=lambda s: (not _is_home(s, home), s.node_id))
    pick = _first_value(ranked, column)
    if not disputed:
        return pick, False
    if resolution is not None and same_candidates(resolution.candidates, candidates):
        return (resolution.value, None), False
    return pick, True


# Rules whose value is not simply the one source's own (and that have no winner).
_AGGREGATES = frozenset({MergeRule.UNION, MergeRule.SUM})


@dataclass(frozen=True)
class _Plan:
    """A table's merged columns with their rules and its home column, worked out once."""

    table: Table
    home: str | None
    fields: tuple[tuple[str, FieldMerge], ...]
    # For one source: the columns taken as they are, and those whose rule aggregates.
    copied: tuple[str, ...] = ()
    aggregated: tuple[tuple[str, FieldMerge], ...] = ()


def _plan(table: Table) -> _Plan:
    """How the table's fields merge, worked out once and kept on the table."""
    return table.derived("merge_plan", lambda: _make_plan(table))


def _make_plan(table: Table) -> _Plan:
    fields = tuple(
        (c, table.merge.rule_for(c)) for c in table.data_columns if c not in table.identity
    )
    copied = tuple(c for c, spec in fields if spec.rule not in _AGGREGATES)
    aggregated = tuple((c, spec) for c, spec in fields if spec.rule in _AGGREGATES)
    return _Plan(table, home_column(table), fields, copied, aggregated)


def merge_golden(
    table: Table,
    sources: Sequence[Source],
    resolutions: Mapping[str, Resolution] | None = None,
) -> MergeResult:
    """Merge the source records of one identity into its golden values, one rule per column."""
    if not sources:
        raise ValueError(f"{table.name}: nothing to merge, no source records")
    if len(sources) == 1:
        return _merge_single(_plan(table), sources[0])
    ordered = sorted(sources, key=lambda s: s.node_id)
    if len({s.node_id for s in ordered}) != len(ordered):
        raise ValueError(f"{table.name}: more than one source record per node")
    return _merge_sources(_plan(table), ordered, resolutions or {})


def _merge_sources(
    plan: _Plan, ordered: Sequence[Source], resolutions: Mapping[str, Resolution]
) -> MergeResult:
    """The merge of sources of distinct nodes, in node-id order."""
    values: dict[str, Any] = {}
    decisions: list[FieldDecision] = []
    conflicts: list[FieldDecision] = []
    for column, spec in plan.fields:
        candidates = {s.node_id: s.row.get(column) for s in ordered}
        disputed = _distinct_count(candidates.values()) >= 2
        if spec.rule is MergeRule.MANUAL:
            (value, winner), conflict = _merge_manual(
                column, ordered, plan.home, candidates, disputed, resolutions.get(column)
            )
        else:
            (value, winner), conflict = _RULES[spec.rule](column, spec, ordered), False
        decision = FieldDecision(column, spec.rule, value, winner, disputed, candidates)
        values[column] = value
        decisions.append(decision)
        if conflict:
            conflicts.append(decision)
    return MergeResult(values, tuple(decisions), tuple(conflicts))


def _merge_single(plan: _Plan, source: Source) -> MergeResult:
    """`_merge_sources` for one source, the common case: nothing to rank, nothing disputed.

    Every picking rule then takes the source's value, won by its node when not None, and a
    steward's resolution never applies, as it only settles a dispute.
    """
    node, row = source.node_id, source.row
    values: dict[str, Any] = {}
    decisions: list[FieldDecision] = []
    for column, spec in plan.fields:
        own = row.get(column)
        if spec.rule in _AGGREGATES:
            value, winner = _RULES[spec.rule](column, spec, (source,))
        else:
            value, winner = own, None if own is None else node
        values[column] = value
        decisions.append(FieldDecision(column, spec.rule, value, winner, False, {node: own}))
    return MergeResult(values, tuple(decisions), ())


def merge_values(table: Table, source: Source) -> dict[str, Any]:
    """The golden values of an identity with one source: `merge_golden(...).values`, cheaper.

    The hot path of a first load, where most identities have a single source: no ranking, no
    dispute, so no per-field decision is built. A steward's resolution never applies to one
    source (it settles a dispute), so none is taken.
    """
    plan = _plan(table)
    row = source.row
    values = {c: row.get(c) for c in plan.copied}
    for column, spec in plan.aggregated:
        values[column] = _RULES[spec.rule](column, spec, (source,))[0]
    return values
