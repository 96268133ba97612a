"""decode_image: what a city reads from its changelog always travels, and loses nothing else."""

from __future__ import annotations

import decimal
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.batch import Unsendable, unsendable
from syncd.core.canonical import canonical
from syncd.core.transport import decode_image

# Text as a CRM could hold it and JSON could carry it: no NUL, no lone surrogates.
sendable_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    sendable_text,
)
values = st.one_of(scalars, st.lists(sendable_text, max_size=4))
images = st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), values, max_size=8)


def sqlite_json(image: dict[str, Any]) -> bytes:
    """The image as SQLite's json_object writes it: UTF-8 as it is, control characters escaped."""
    return json.dumps(image, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def travels(value: Any) -> bool:
    """Encodable as UTF-8 (Python, the wire) and free of NUL (PostgreSQL's jsonb)."""
    canonical(value).encode("utf-8")  # raises on a lone surrogate
    return all("\x00" not in s for s in strings(value))


@given(images)
def test_a_sendable_image_is_read_exactly(image: dict[str, Any]) -> None:
    expected = json.loads(json.dumps(image, default=str), parse_float=decimal.Decimal)
    assert decode_image(sqlite_json(image)) == expected
    assert decode_image(json.dumps(image, default=str)) == expected  # PostgreSQL reads text


@given(images, st.sampled_from(["value", "element"]), st.binary(min_size=1, max_size=8))
def test_bytes_that_are_not_utf8_become_a_stand_in_where_they_stand(
    image: dict[str, Any], where: str, junk: bytes
) -> None:
    bad = b"x\xff" + junk  # 0xff never occurs in UTF-8
    image = {**image, "bad": "MARKER" if where == "value" else ["ok", "MARKER"]}
    raw = sqlite_json(image).replace(b"MARKER", bad.replace(b"\\", b"").replace(b'"', b""))
    raw = bytes(b for b in raw if b >= 0x20)  # control characters would need escaping
    got = decode_image(raw)
    stand_in = unsendable(Unsendable.INVALID_UTF8)
    assert got["bad"] == (stand_in if where == "value" else ["ok", stand_in])
    assert {k: v for k, v in got.items() if k != "bad"} == {
        k: v for k, v in decode_image(sqlite_json(image)).items() if k != "bad"
    }
    assert travels(got)


@given(images, sendable_text, sendable_text)
def test_a_nul_character_becomes_a_stand_in(image: dict[str, Any], a: str, b: str) -> None:
    image = {**image, "bad": a + "\x00" + b, "tags": ["ok", "\x00"]}
    got = decode_image(sqlite_json(image))
    assert got["bad"] == unsendable(Unsendable.NUL)
    assert got["tags"] == ["ok", unsendable(Unsendable.NUL)]
    assert travels(got)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # A lone surrogate escape cannot be encoded as UTF-8 by anyone.
        (b'{"a":"\\ud800x","b":"\\ud83d\\ude00"}', {"a": unsendable(Unsendable.INVALID_UTF8)}),
        # The text "\u0000" (an escaped backslash) is no NUL character.
        (b'{"a":"\\\\u0000","b":"\\ud83d\\ude00"}', {"a": "\\u0000"}),
        # Nested deeper than a list: an object whose key cannot travel goes whole.
        (b'{"a":[{"\xff":1},{"k":"\\u0000"}],"b":"\\ud83d\\ude00"}', None),
    ],
)
def test_escapes(raw: bytes, expected: dict[str, Any] | None) -> None:
    got = decode_image(raw)
    assert got["b"] == "\U0001f600"
    if expected is None:
        assert got["a"] == [
            unsendable(Unsendable.INVALID_UTF8),
            {"k": unsendable(Unsendable.NUL)},
        ]
    else:
        assert {k: got[k] for k in expected} == expected
    assert travels(got)


def test_a_document_that_is_not_json_fails_without_its_content() -> None:
    with pytest.raises(ValueError, match="line 1 column") as info:
        decode_image(b'{"a":"SECRET\xff')
    assert "SECRET" not in str(info.value)
