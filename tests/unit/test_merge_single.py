"""The one-source shortcut of the merge gives exactly what the general merge gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.merge import Resolution, Source, _merge_sources, _plan, merge_golden, merge_values
from tests.unit.test_merge_properties import TABLE, same, sources


@settings(deadline=None)
@given(sources(max_size=1), st.data())
def test_one_source_merges_as_the_general_merge_does(
    given_sources: list[Source], data: st.DataObject
) -> None:
    resolutions: dict[str, Resolution] = {}
    if data.draw(st.booleans(), "resolve"):
        # A resolution left from an earlier dispute: with one source there is none, so unused.
        candidates = {s.node_id: s.row["manual_s"] for s in given_sources}
        resolutions["manual_s"] = Resolution("z", candidates)
    general = _merge_sources(_plan(TABLE), given_sources, resolutions)
    assert same(merge_golden(TABLE, given_sources, resolutions), general)


@settings(deadline=None)
@given(sources(min_size=1, max_size=1))
def test_values_of_one_source_are_those_of_the_merge(given_sources: list[Source]) -> None:
    expected = merge_golden(TABLE, given_sources).values
    got = merge_values(TABLE, given_sources[0])
    assert got == expected
    # Written alike too: Decimal("1.0") and Decimal("1.00") are equal but stored differently.
    assert {c: repr(v) for c, v in got.items()} == {c: repr(v) for c, v in expected.items()}
