"""How a report is shown to people: columns with kinds, one language, one unit, masked IDs.

The model (`Column`, `Kind`, `Table`, `Typed`, the cells, the XLSX writer) lives in
`syncd.present.tables` and the reports' column sets in `syncd.present.columns`, shared with
the web console; this module adds the CLI's options, `output`, `read` and `show`.

A report command describes its output once, as `Table`s of `Column`s, and `show` renders it
as a terminal table, CSV, XLSX or JSON with the user's format options (`Output`). Labels and
coded values are translated through `syncd.core.i18n` (Chinese by default, `--lang en`);
amounts are shown with thousands separators in 元 or 万元 (`--unit`); ID numbers are masked
unless `--unmask`, which is audited at the hub before anything is shown.

Adding a report command::

    from syncd.cli import present
    from syncd.present.tables import Column, Kind, Table
    from syncd.core.i18n import N_

    COLUMNS = (
        Column("node_id", N_("city"), Kind.NODE),           # shown by its display name
        Column("id_number", N_("ID number"), Kind.ID_NUMBER),  # masked unless --unmask
        Column("five_class", N_("five-class"), Kind.ENUM, enum="five_class"),
        Column("loan_balance", N_("loans"), Kind.MONEY),     # 元/万元, #,##0.00 in XLSX
        Column("loan_count", N_("loans (count)"), Kind.COUNT),
        Column("golden_id", N_("golden ID"), Kind.COUNT, export_only=True),  # CSV/XLSX only
    )

    @app.command("segments")
    def report_segments(
        top: int | None = None,
        lang: present.LangOpt = None,
        unit: present.UnitOpt = None,
        unmask: present.UnmaskOpt = False,
        as_json: present.JsonOpt = False,
        as_csv: present.CsvOpt = False,
        xlsx: present.XlsxOpt = None,
        output: present.OutputOpt = None,
    ) -> None:
        fmt = present.output(lang, unit, unmask, as_json, as_csv, xlsx, output)  # exit 2 if bad
        rows, names = present.read(lambda node, conn: my_report(conn, top))
        present.show(
            "report segments", {"top": top}, fmt, names,
            Table("segments", N_("customer segments"), COLUMNS, rows),
        )

Then add the new messages to the catalogue (see `syncd.core.i18n`); a new kind of coded value
goes into `i18n.ENUMS` (five_class, customer_type, tier, warning, id_type, … are there). Kinds:
TEXT, MONEY, COUNT, NUMBER, ID_NUMBER, ENUM, ENUMS (a list of codes), NODE, NODES (a list of
node ids), LIST, DATE, DATETIME, BOOL. A report of several tables passes them all to `show`
(one XLSX sheet each, one JSON key each by `Table.name`, or `raw=` for JSON as the report
function returned it) and says which one CSV writes (`csv_table=`); a value wrapped in
`Typed(column, value)` is shown by its own column spec (a record's fields in one column).
`label(fmt, column)` gives a column's header as `show` writes it. What each format gets:

- table (default): the columns that are not `export_only`, translated, amounts in the unit
  (said once, in the title), numbers aligned right; never cut in a narrow terminal
  (`render.print_table`).
- ``--csv``: every column, translated headers and values as the table shows them; to stdout,
  or with ``--output FILE`` to a file that starts with a UTF-8 BOM (so Excel on a Chinese
  Windows desktop reads it as UTF-8; stdout gets no BOM, as a pipe's reader would see it).
- ``--xlsx FILE``: one sheet per table, typed cells (amounts as numbers in the unit with
  ``#,##0.00``, counts as integers, dates as dates), a bold frozen header row, filters and
  column widths that fit.
- ``--json``: for programs: the raw keys and values (amounts as strings in yuan, codes not
  translated, node ids not names), to stdout or ``--output``; only the ID numbers are masked,
  unless ``--unmask``.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from syncd.cli.context import CsvOpt, JsonOpt
from syncd.cli.render import call, print_table, usage
from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_
from syncd.present.tables import (
    RIGHT,
    Cells,
    Column,
    Format,
    Kind,
    Output,
    Table,
    Typed,
    label,
    title,
    to_jsonable,
    xlsx_bytes,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from syncd.app import Node

__all__ = [
    "Column",
    "CsvOpt",
    "JsonOpt",
    "Kind",
    "LangOpt",
    "Output",
    "OutputOpt",
    "Table",
    "Typed",
    "UnitOpt",
    "UnmaskOpt",
    "XlsxOpt",
    "label",
    "output",
    "read",
    "show",
]

T = TypeVar("T")

LangOpt = Annotated[
    str | None,
    typer.Option("--lang", help="language of labels and values: zh (default) or en"),
]
UnitOpt = Annotated[
    str | None,
    typer.Option("--unit", help="amounts in yuan (元, default) or wan (万元)"),
]
UnmaskOpt = Annotated[
    bool,
    typer.Option("--unmask", help="show full ID numbers (audited at the hub: who, when, what)"),
]
XlsxOpt = Annotated[
    Path | None,
    typer.Option("--xlsx", help="write an Excel workbook to this file"),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="with --csv or --json: write to this file (CSV gets a UTF-8 BOM)"
    ),
]


def output(
    lang: str | None = None,
    unit: str | None = None,
    unmask: bool = False,
    as_json: bool = False,
    as_csv: bool = False,
    xlsx: Path | None = None,
    path: Path | None = None,
) -> Output:
    """The checked format options; a bad one exits 2 with a message naming the option."""
    try:
        code, chosen_unit = i18n.check_lang(lang), i18n.check_unit(unit)
    except UsageError as exc:
        usage(str(exc))
    chosen = [f for f, on in ((Format.JSON, as_json), (Format.CSV, as_csv)) if on]
    if xlsx is not None:
        chosen.append(Format.XLSX)
    if len(chosen) > 1:
        usage(" and ".join(f"--{f.value}" for f in chosen) + ": choose one")
    fmt = chosen[0] if chosen else Format.TABLE
    if path is not None and fmt not in (Format.CSV, Format.JSON):
        usage("--output: use it with --csv or --json (--xlsx takes its own file name)")
    target = xlsx if fmt is Format.XLSX else path
    if target is not None:
        _check_writable(target, "--xlsx" if fmt is Format.XLSX else "--output")
    return Output(code, chosen_unit, unmask, fmt, target)


def _check_writable(path: Path, option: str) -> None:
    parent = path.absolute().parent
    if path.is_dir():
        usage(f"{option} {path}: is a directory")
    if not parent.is_dir():
        usage(f"{option} {path}: no directory {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        usage(f"{option} {path}: not writable")


def read(fn: Callable[[Node, Connection], T]) -> tuple[T, dict[str, str]]:
    """fn(the hub's node, a connection) and the nodes' display names, in one read."""
    from syncd.cli.hub import read_node
    from syncd.hub.nodes import display_names

    return read_node(lambda node, conn: (fn(node, conn), display_names(conn)))


# --- cells ---------------------------------------------------------------------------------


# --- show ----------------------------------------------------------------------------------


def show(
    report: str,
    arguments: Mapping[str, Any],
    fmt: Output,
    names: Mapping[str, str],
    *tables: Table,
    raw: Any = None,
    csv_table: Table | None = None,
) -> None:
    """Render a report's tables in the chosen format (see the module's docstring).

    report and arguments name what was asked (``"report value"``, ``{"top": 20}``): the audit
    of ``--unmask`` records them, written before anything is shown. raw is what ``--json``
    prints (default: the rows of the one table, or {name: rows} of several); csv_table is the
    one table CSV writes when the report has several (default: the first).
    """
    shown_ids = any(c.kind is Kind.ID_NUMBER for t in tables for c in t.columns)
    if fmt.unmask:
        rows = sum(len(t.rows) for t in tables if any(c.kind is Kind.ID_NUMBER for c in t.columns))
        _audit_unmask(report, {**arguments, **fmt.arguments()}, rows if shown_ids else 0)
    cells = Cells(fmt, names)
    if fmt.format is Format.JSON:
        data = raw if raw is not None else _raw(tables)
        _emit(fmt, json.dumps(_masked(to_jsonable(data), fmt.unmask), ensure_ascii=False, indent=2))
    elif fmt.format is Format.CSV:
        _emit(fmt, _csv(cells, csv_table or tables[0]), bom=True)
    elif fmt.format is Format.XLSX:
        assert fmt.path is not None
        data = xlsx_bytes(cells, tables)
        _replace(fmt.path, "--xlsx", lambda f: f.write(data))
    else:
        for table in tables:
            _terminal(cells, table)


def _audit_unmask(report: str, arguments: Mapping[str, Any], rows: int) -> None:
    from syncd.cli.hub import on_hub
    from syncd.hub.reports import record_unmasked

    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        user = None
    args = {k: to_jsonable(v) for k, v in arguments.items()}
    on_hub(lambda node: record_unmasked(node.engine, report, args, rows, user))


def _raw(tables: Sequence[Table]) -> Any:
    if len(tables) == 1:
        return list(tables[0].rows)
    return {t.name: list(t.rows) for t in tables}


def _masked(data: Any, unmask: bool) -> Any:
    """JSON data with every id_number masked (unless unmask), at any depth."""
    return data if unmask else i18n.mask_ids(data)


def _terminal(cells: Cells, table: Table) -> None:
    """The table; its amounts' unit is said once in the title, as Chinese reports do (单位：元),
    which keeps the headers short enough for more tables to fit a terminal."""
    columns = [c for c in table.columns if not c.export_only]
    heading = title(cells, table)
    if any(c.kind is Kind.MONEY for c in columns):
        heading += cells.tr.fmt(N_(" (amounts in {unit})"), unit=cells.unit_label)
    print_table(
        heading,
        [cells.label(c, unit=False) for c in columns],
        [[cells.text(c, row.get(c.key)) for c in columns] for row in table.rows],
        right=[i for i, c in enumerate(columns) if c.kind in RIGHT],
    )


def _csv(cells: Cells, table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180, as Excel writes it
    writer.writerow([cells.label(c) for c in table.columns])
    writer.writerows([cells.text(c, row.get(c.key)) for c in table.columns] for row in table.rows)
    return buf.getvalue()


def _emit(fmt: Output, text: str, *, bom: bool = False) -> None:
    """To stdout, or to the --output file (CSV with a BOM for Excel)."""
    if not text.endswith("\n"):
        text += "\n"
    if fmt.path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    _replace(fmt.path, "--output", lambda f: f.write(data))


def _replace(path: Path, option: str, write: Callable[[Any], object]) -> None:
    """Write a file whole or not at all: a temporary file beside it, renamed over it."""
    path = path.absolute()

    def go() -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError as exc:
            raise UsageError(f"{option} {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise UsageError(f"{option} {path}: {exc.strerror}") from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    call(go)
