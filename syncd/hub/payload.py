"""A batch's payload: the JSON text of its changes as the city sent it, read at the hub.

The city hashes the canonical JSON of its changes once (`syncd.core.batch.make_batch`); the hub
stores that text as it arrived (`syncd_inbox_batch.payload`, hub_0005), checks the checksum with
one hash over it, and parses it once. Decimals are read exactly; where the text holds a JSON
float (no syncd city writes one), the change also keeps the value as received, which is what
quarantine stores.

`problem` states which payloads the hub takes at all — with `as_jsonb`, the rules and words of
the PostgreSQL function `syncd_payload_problem`, which checks them at submit (a SQLite hub
takes what jsonb alone cannot hold: see `read`): a JSON array of objects, each with
an integer `seq`, a text `table` and `op` and an object `key`. Everything else about a change is
validation's business, row by row.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Sequence
from typing import Any

from syncd.core.validate import Change

_SEQ_MAX = 10**18  # "^-?[0-9]{1,18}$" in the SQL: within bigint, whatever its sign

NOT_JSON = "malformed batch: the payload is not JSON PostgreSQL can read"
NOT_ARRAY = "malformed batch: the payload is not an array of changes"


def _bad_change(index: int) -> str:
    return (
        f"malformed batch: change {index} is not an object with an integer seq, a text table "
        "and op and an object key"
    )


def _parse(text: str) -> tuple[Any, Any]:
    """(exact, as received): parsed once, twice only when the text holds a JSON float."""
    floats = False

    def exact(number: str) -> decimal.Decimal:
        nonlocal floats
        floats = True
        return decimal.Decimal(number)

    def constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python reads them, jsonb not

    value = json.loads(text, parse_float=exact, parse_constant=constant)
    return value, (json.loads(text) if floats else value)


def _unreadable_text(value: object) -> bool:
    """A NUL or a lone surrogate in any string or key: JSON escapes jsonb refuses to read."""
    if type(value) is str:
        return "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)
    if type(value) is list:
        return any(_unreadable_text(v) for v in value)
    if type(value) is dict:
        return any(_unreadable_text(k) or _unreadable_text(v) for k, v in value.items())
    return False


def _integral(seq: object) -> bool:
    """An integer seq within bigint, as jsonb reads it: 7, and also 1e+16 or 1.5e1 (numbers
    jsonb prints without a decimal point, so the SQL's pattern takes them), never 1.0."""
    if type(seq) is int:
        return -_SEQ_MAX < seq < _SEQ_MAX
    if type(seq) is decimal.Decimal and seq.is_finite():
        exponent = seq.as_tuple().exponent
        return isinstance(exponent, int) and exponent >= 0 and abs(seq) < _SEQ_MAX
    return False


def _well_formed(change: object) -> bool:
    if type(change) is not dict:
        return False
    return (
        _integral(change.get("seq"))
        and type(change.get("table")) is str
        and type(change.get("op")) is str
        and type(change.get("key")) is dict
    )


def read(text: str, *, as_jsonb: bool = False) -> tuple[list[Change] | None, str | None]:
    """The payload's changes in order, or None and why the batch cannot be read.

    `as_jsonb` adds jsonb's own refusal of a NUL or a lone surrogate written as a \\u escape:
    a PostgreSQL hub cannot read such a payload at all. A SQLite hub can, and validation then
    quarantines the one row that holds it (no NUL, no lone surrogate in text), so a city's
    other rows, and its later batches, are not held up by it.
    """
    try:
        exact, wire = _parse(text)
    except (ValueError, RecursionError):
        return None, NOT_JSON
    # Only an escape can put a NUL or a surrogate into parsed text, so only a payload with a
    # \u escape (a city's canonical JSON writes one only for a control character) is walked.
    if as_jsonb and "\\u" in text and _unreadable_text(exact):
        return None, NOT_JSON
    if type(exact) is not list:
        return None, NOT_ARRAY
    for i, change in enumerate(exact):
        if not _well_formed(change):
            return None, _bad_change(i)
    changes = [
        Change(
            int(e["seq"]),
            e["table"],
            e["op"],
            e["key"],
            e.get("row"),
            w["key"],
            w.get("row"),
        )
        for e, w in zip(exact, wire, strict=True)
    ]
    return changes, None


def problem(text: str, *, as_jsonb: bool = False) -> str | None:
    """Why a payload cannot be received, or None; with `as_jsonb`, exactly the answer of
    `syncd_payload_problem` on a PostgreSQL hub."""
    return read(text, as_jsonb=as_jsonb)[1]


def scrubbed(changes: Sequence[Change], drop: dict[int, dict[str, Any]]) -> str:
    """The payload with the changes at `drop`'s indexes reduced to their given key and no row.

    What the hub keeps of a row it refused: the key, never the data the city may not send.
    """
    out = []
    for i, c in enumerate(changes):
        wire = c.wire()
        if i in drop:
            wire = {**wire, "key": drop[i], "row": None}
        out.append(wire)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)
