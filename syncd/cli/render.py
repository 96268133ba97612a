"""What every command shares to show its result: consoles, tables, JSON, CSV, and exit codes.

Exit codes are part of the contract: 0 success, 1 runtime failure, 2 bad input (config, policy,
arguments). `fail` is the one place that maps the exception tree to them; tracebacks only
with -v.
"""

from __future__ import annotations

import decimal
import json
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Literal, NoReturn, TypeVar

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table as RichTable
from rich.text import Text

from syncd.cli.context import state
from syncd.core.errors import SyncdError, UsageError
from syncd.core.redact import redact_url
from syncd.present.tables import to_jsonable

T = TypeVar("T")
_UNBOUNDED = 1_000_000

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


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False, indent=2) + "\n")


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """One record: JSON, or one `key: value` line per field."""
    if as_json:
        print_json(record)
        return
    for k, v in record.items():
        out.print(Text.assemble((k, "bold"), f": {to_jsonable(v)}"), highlight=False)


def heading(title: str) -> None:
    """A section heading: a rule in a terminal, a plain `== title ==` line otherwise."""
    if out.is_terminal:
        out.rule(Text(title))
    else:
        _write(f"== {title} ==")


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    right: Collection[int] = (),
) -> None:
    """Rows as a table; nothing is ever cut, an ID or a number is never broken.

    `right`: the indexes of the columns aligned right (amounts, counts).

    In a terminal: a rich table whose columns are at least as wide as their longest word, or,
    when the terminal is too narrow for that, one `column value` block per row. Not in a
    terminal (a pipe, a file, `| less`): plain columns aligned by display width (CJK
    characters take two cells), no box drawing, no colour.
    """
    cells = [[_display(v) for v in row] for row in rows]
    if not out.is_terminal:
        _plain_table(title, list(columns), cells, right)
        return
    table = _rich_table(title, list(columns), cells, right)
    # Measured unbounded: Measurement.get caps the minimum at the width it is given.
    if Measurement.get(out, out.options.update_width(_UNBOUNDED), table).minimum > out.width:
        _records(title, list(columns), cells)
    else:
        out.print(table)


def _display(value: Any) -> str:
    value = to_jsonable(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)  # a space: a list may wrap between its items
    return str(value)


def _longest_word(texts: Iterable[str]) -> int:
    return max((cell_len(word) for text in texts for word in text.split()), default=0)


def _rich_table(
    title: str | None, columns: list[str], cells: list[list[str]], right: Collection[int] = ()
) -> RichTable:
    table = RichTable(title=None if title is None else Text(title), show_lines=False)
    for i, c in enumerate(columns):
        # A column never narrower than its longest word: rich wraps text between words and
        # keeps an ID or an amount whole; fold (never "…") if rich goes narrower still.
        width = max(1, _longest_word([c, *(row[i] for row in cells)]))
        justify: Literal["left", "right"] = "right" if i in right else "left"
        table.add_column(c, overflow="fold", min_width=width, justify=justify)
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    return table


def _records(title: str | None, columns: list[str], cells: list[list[str]]) -> None:
    """One `column  value` block per row, values wrapped between words under their column."""
    if title:
        out.print(Text(title, style="italic"))
    for n, row in enumerate(cells, 1):
        grid = RichTable.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for c, v in zip(columns, row, strict=True):
            grid.add_row(Text(c), Text(v))
        out.print(Text(f"-[ {n} ]-", style="dim"))
        out.print(grid)


def _plain_table(
    title: str | None, columns: list[str], cells: list[list[str]], right: Collection[int] = ()
) -> None:
    lines = [[" ".join(v.split("\n")) for v in row] for row in [columns, *cells]]
    widths = [max(cell_len(row[i]) for row in lines) for i in range(len(columns))]
    if title:
        _write(title)
    for row in lines:
        padded = (_pad(v, w, i in right) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        _write("  ".join(padded).rstrip())


def _pad(text: str, width: int, right: bool = False) -> str:
    fill = " " * (width - cell_len(text))
    return fill + text if right else text + fill


def _write(line: str) -> None:
    out.file.write(line + "\n")


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
