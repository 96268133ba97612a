"""What every command shares to show its result: consoles, tables, JSON, CSV, and exit codes.

Exit codes are part of the contract: 0 success, 1 runtime failure, 2 bad input (config, policy,
arguments). `fail` is the one place that maps the exception tree to them; tracebacks only
with -v.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table as RichTable

from syncd.cli.context import state
from syncd.core.errors import SyncdError, UsageError
from syncd.core.redact import redact_url

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(exc: BaseException) -> NoReturn:
    """Print one line naming what went wrong and exit with the contract's code."""
    if state.verbose:
        err.print_exception()
    code = exc.exit_code if isinstance(exc, SyncdError) else 1
    label = "error" if code == 2 else "failed"
    text = str(exc) if isinstance(exc, SyncdError) else (str(exc).splitlines() or [""])[0]
    hint = "" if state.verbose or isinstance(exc, SyncdError) else " (-v for details)"
    err.print(f"syncd: {label}: {redact_url(text)}{hint}", markup=False, highlight=False)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    fail(UsageError(message))


def call(fn: Callable[[], T]) -> T:
    """fn(), its errors turned into one line and the contract's exit code."""
    try:
        return fn()
    except typer.Exit:
        raise
    except SyncdError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        fail(exc)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False, indent=2) + "\n")


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """One record: JSON, or one `key: value` line per field."""
    if as_json:
        print_json(record)
        return
    for k, v in record.items():
        out.print(f"[bold]{k}[/]: {to_jsonable(v)}", highlight=False)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = RichTable(title=title, show_lines=False)
    for c in columns:
        # Fold, never cut: an ID, a number or a state cut to "city…" is worse than a tall row.
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(to_jsonable(v)) for v in row))
    out.print(table)


def csv_cell(value: Any) -> str:
    value = to_jsonable(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(v) for v in row] for row in rows)


def money(value: Any) -> str:
    return f"{decimal.Decimal(str(value or 0)):,.2f}"
