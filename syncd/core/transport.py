"""Changelog images as a city reads them: values no transport can carry become stand-ins.

Pure. SQLite's json_object copies text bytes as the CRM wrote them, so an image may hold text
that is not UTF-8, or a NUL character (as the escape \\u0000). Neither can travel: Python
cannot decode the one, PostgreSQL's jsonb refuses the other, and either would fail every push
of its batch for ever. `decode_image` parses an image and puts `batch.unsendable(kind)` in
place of each such string, so the hub quarantines that row, names the column, and applies the
rest; the value itself never leaves the city (and is never put in an error message).
"""

from __future__ import annotations

from typing import Any

from syncd.core.batch import Unsendable, unsendable
from syncd.core.canonical import loads

# The only way JSON text that is valid UTF-8 can still hold a NUL character or half of a
# surrogate pair (which no UTF-8 encoder accepts) is a \u escape; SQLite writes one only for
# control characters, so the usual image holds none and pays one substring test.
_ESCAPE = b"\\u"


def decode_image(raw: bytes | str) -> Any:
    """Parse one changelog JSON document, replacing every string that cannot travel.

    Bytes come from a database that may hold any bytes as text (SQLite); text (PostgreSQL's
    jsonb, valid UTF-8 without NUL by construction) is parsed as it is. Raises ValueError,
    whose message holds no data, when the document is not JSON.
    """
    if isinstance(raw, str):
        return loads(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Each byte that is not UTF-8 becomes a lone surrogate, which `_kind` recognises.
        return _sendable(loads(raw.decode("utf-8", "surrogateescape")))
    if _ESCAPE not in raw:
        return loads(text)
    return _sendable(loads(text))


def _kind(text: str) -> Unsendable | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Unsendable.INVALID_UTF8
    return Unsendable.NUL if "\x00" in text else None


def _sendable(value: Any) -> Any:
    """The value with every string that cannot travel replaced by its stand-in.

    The keys of a row image are the policy's column names and are kept; anything nested
    deeper (the elements of a list column) is replaced where it stands, and an object whose
    own key cannot travel is replaced whole.
    """
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return _clean(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        kind = _kind(value)
        return value if kind is None else unsendable(kind)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            kind = _kind(key)
            if kind is not None:
                return unsendable(kind)
        return {key: _clean(item) for key, item in value.items()}
    return value
