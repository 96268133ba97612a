"""`syncd audit verify --file`: check an export's hash chain offline, with no config or database.

An export (`syncd audit export`, JSON Lines or CSV) holds every stored column, so each entry's
hash can be recomputed exactly as the hub does (`syncd.core.auditchain`). The export must be
unfiltered, except for a start (--since, or --before/--limit paging): an export that begins
after entry 1 is checked from its first entry's prev_hash, and the result says so. Row
decisions (exports since version 2) are checked against their covering entry's rows_hash;
exports written before them (no `ord` column) are read as they always were.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syncd.core.auditchain import (
    COLUMNS,
    EXPORT_COLUMNS,
    ChainCheck,
    VerifyResult,
    from_export_csv,
    parse_export_line,
)
from syncd.core.errors import UsageError

# A line that cannot be read as an entry: (line number, why).
_Unreadable = tuple[int, str]


def _json_lines(fh: Any) -> Iterator[dict[str, Any] | _Unreadable]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            yield parse_export_line(line)
        except (ValueError, KeyError, TypeError) as exc:
            yield number, f"{type(exc).__name__}: {exc}"


def _csv_rows(fh: Any, name: str) -> Iterator[dict[str, Any] | _Unreadable]:
    reader = csv.DictReader(fh)
    if tuple(reader.fieldnames or ()) not in (EXPORT_COLUMNS, COLUMNS):
        raise UsageError(
            f"{name}: not an audit export: its CSV header is not {','.join(EXPORT_COLUMNS)}"
        )
    for row in reader:
        try:
            yield from_export_csv(row)
        except (ValueError, KeyError, TypeError) as exc:
            yield reader.line_num, f"{type(exc).__name__}: {exc}"


def _entries(fh: Any, name: str) -> Iterator[dict[str, Any] | _Unreadable]:
    first = fh.read(1)
    fh.seek(0)
    if first == "{":
        return _json_lines(fh)
    return _csv_rows(fh, name)


def verify_file(path: Path, against: str | None = None) -> VerifyResult:
    """Check the chain of an export file, and optionally an anchor; name the first break.

    An unreadable line breaks the chain where it stands, named by its line number.
    """
    check = ChainCheck(against, trust_first=True)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for item in _entries(fh, str(path)):
                if isinstance(item, tuple):
                    number, why = item
                    check.fail(check.last_id + 1, f"line {number} of {path} is unreadable: {why}")
                    break
                if not check.feed(item):
                    break
    except FileNotFoundError as exc:
        raise UsageError(f"--file {path}: no such file") from exc
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise UsageError(f"--file {path}: not an audit export: {exc}") from exc
    return check.result()
