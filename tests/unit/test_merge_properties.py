"""Properties of the golden-record merge: order independence, aggregates, hub convergence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.merge import MergeResult, Resolution, Source, merge_golden
from syncd.core.policy import parse_policy

# Every rule, over every ordered type, in one identity table. Small value domains on purpose:
# ties, agreements and equal-but-differently-written Decimals are what break naive merges.
TABLE = parse_policy(
    {
        "tables": {
            "people": {
                "class": "public",
                "primary_key": ["pid"],
                "identity": ["idno"],
                "updated_at": "updated_at",
                "columns": {
                    "pid": {"type": "string", "nullable": False},
                    "idno": {"type": "string", "nullable": False},
                    "home": {"type": "string"},
                    "latest_s": {"type": "string"},
                    "home_s": {"type": "string"},
                    "order_s": {"type": "string"},
                    "tags": {"type": "list"},
                    "max_i": {"type": "integer"},
                    "min_d": {"type": "date"},
                    "max_t": {"type": "timestamp"},
                    "max_m": {"type": "decimal"},
                    "min_m": {"type": "decimal"},
                    "sum_m": {"type": "decimal"},
                    "sum_i": {"type": "integer"},
                    "manual_s": {"type": "string"},
                    "manual_m": {"type": "decimal"},
                    "updated_at": {"type": "timestamp"},
                },
                "merge": {
                    "fields": {
                        "home": {"rule": "priority", "prefer_home": "home"},
                        "home_s": {"rule": "priority", "prefer_home": "home"},
                        "order_s": {"rule": "priority", "order": ["city-3303", "city-3301"]},
                        "tags": "union",
                        "max_i": "max",
                        "min_d": "min",
                        "max_t": "max",
                        "max_m": "max",
                        "min_m": "min",
                        "sum_m": "sum",
                        "sum_i": "sum",
                        "manual_s": "manual",
                        "manual_m": "manual",
                    }
                },
            }
        }
    },
    "properties.yaml",
).table("people")

NODES = ("3301", "3302", "3303", "3304", "3305")
T0 = dt.datetime(2025, 3, 1, 8, 0, 0)

times = st.none() | st.sampled_from([T0 + dt.timedelta(minutes=m) for m in (0, 1, 2)])
money = st.none() | st.sampled_from([Decimal(x) for x in ("1.0", "1.00", "2.5", "-0.30", "7")])
words = st.none() | st.sampled_from(["a", "b", "c"])
rows = st.fixed_dictionaries(
    {
        "home": st.none() | st.sampled_from(NODES[:3]),
        "latest_s": words,
        "home_s": words,
        "order_s": words,
        "tags": st.none() | st.lists(st.sampled_from(["vip", "aml", "overdue", "dormant"])),
        "max_i": st.none() | st.integers(-3, 3),
        "min_d": st.none() | st.dates(dt.date(2024, 1, 1), dt.date(2024, 1, 4)),
        "max_t": times,
        "max_m": money,
        "min_m": money,
        "sum_m": money,
        "sum_i": st.none() | st.integers(-5, 5),
        "manual_s": words,
        "manual_m": money,
    }
)


@st.composite
def sources(draw: st.DrawFn, min_size: int = 1, max_size: int = 5) -> list[Source]:
    """Sources of distinct nodes, each with random values for every rule."""
    nodes = draw(
        st.lists(st.sampled_from(NODES), min_size=min_size, max_size=max_size, unique=True)
    )
    made = []
    for node in nodes:
        at = draw(times)
        city = draw(st.none() | st.just(node))
        row = {"pid": f"p-{node}", "idno": "X1", "updated_at": at, **draw(rows)}
        made.append(Source(f"city-{node}", city, draw(st.integers(1, 9)), at, row))
    return made


def same(a: MergeResult, b: MergeResult) -> bool:
    """Equal, and written alike: repr tells Decimal("1.0") from Decimal("1.00")."""
    return a == b and repr(a) == repr(b)


@settings(deadline=None)
@given(sources(), st.data())
def test_merge_ignores_the_order_of_sources(
    given_sources: list[Source], data: st.DataObject
) -> None:
    resolutions: dict[str, Resolution] = {}
    if data.draw(st.booleans(), "resolve"):
        # A steward's resolution of the current dispute, so the resolved path is exercised too.
        candidates = {s.node_id: s.row["manual_s"] for s in given_sources}
        resolutions["manual_s"] = Resolution("z", candidates)
    expected = merge_golden(TABLE, given_sources, resolutions)
    shuffled = data.draw(st.permutations(given_sources), "order")
    assert same(merge_golden(TABLE, shuffled, resolutions), expected)


@settings(deadline=None)
@given(sources())
def test_union_holds_every_element_sorted_once(given_sources: list[Source]) -> None:
    union = merge_golden(TABLE, given_sources).values["tags"]
    every = {tag for s in given_sources for tag in s.row["tags"] or ()}
    assert set(union) == every
    assert union == sorted(every)


@settings(deadline=None)
@given(sources())
def test_max_and_min_bound_every_value(given_sources: list[Source]) -> None:
    values = merge_golden(TABLE, given_sources).values
    for column, bound in (("max_i", max), ("max_t", max), ("max_m", max)):
        present = [s.row[column] for s in given_sources if s.row[column] is not None]
        assert values[column] == (bound(present) if present else None)
        assert all(values[column] >= v for v in present)
    for column in ("min_d", "min_m"):
        present = [s.row[column] for s in given_sources if s.row[column] is not None]
        assert values[column] == (min(present) if present else None)
        assert all(values[column] <= v for v in present)


@settings(deadline=None)
@given(sources(max_size=1))
def test_a_single_source_is_its_own_golden_record(given_sources: list[Source]) -> None:
    (only,) = given_sources
    result = merge_golden(TABLE, given_sources)
    expected = {c: only.row[c] for c in TABLE.data_columns if c not in TABLE.identity}
    # Union normalizes even one list: sorted, each element once, None as empty.
    expected["tags"] = sorted(set(only.row["tags"] or ()))
    assert result.values == expected
    assert result.conflicts == ()
    assert not any(d.disputed for d in result.decisions)


@st.composite
def histories(draw: st.DrawFn) -> dict[str, list[Source]]:
    """Per node, its successive versions of one record, with strictly increasing seq."""
    nodes = draw(st.lists(st.sampled_from(NODES), min_size=2, max_size=5, unique=True))
    made: dict[str, list[Source]] = {}
    for node in nodes:
        seqs = draw(st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True))
        versions = []
        for seq in sorted(seqs):
            # City clocks skew: updated_at need not grow with seq.
            at = draw(times)
            row = {"pid": f"p-{node}", "idno": "X1", "updated_at": at, **draw(rows)}
            versions.append(Source(f"city-{node}", node, seq, at, row))
        made[f"city-{node}"] = versions
    return made


def arrivals(data: st.DataObject, history: dict[str, list[Source]], label: str) -> list[Source]:
    """One arrival order: per-node order kept, nodes interleaved, stale redeliveries mixed in."""
    tokens = [node for node, versions in history.items() for _ in versions]
    order = data.draw(st.permutations(tokens), f"{label} interleaving")
    sent: dict[str, int] = dict.fromkeys(history, 0)
    arrived: list[Source] = []
    for node in order:
        arrived.append(history[node][sent[node]])
        sent[node] += 1
        if sent[node] > 1 and data.draw(st.booleans(), f"{label} redeliver"):
            arrived.append(history[node][data.draw(st.integers(0, sent[node] - 2))])
    return arrived


def hub(arrived: Sequence[Source]) -> MergeResult:
    """The hub: keep each node's highest-seq version, ignore stale ones, merge what is kept."""
    kept: dict[str, Source] = {}
    for version in arrived:
        current = kept.get(version.node_id)
        if current is None or version.seq > current.seq:
            kept[version.node_id] = version
    return merge_golden(TABLE, list(kept.values()))


@settings(deadline=None, max_examples=60)
@given(histories(), st.data())
def test_the_hub_converges_whatever_the_arrival_order(
    history: dict[str, list[Source]], data: st.DataObject
) -> None:
    final = merge_golden(TABLE, [versions[-1] for versions in history.values()])
    first = hub(arrivals(data, history, "first"))
    second = hub(arrivals(data, history, "second"))
    assert same(first, final)
    assert same(second, final)
