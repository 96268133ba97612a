"""How a report is shown to people: columns with kinds, one language, one unit, masked IDs.

A report command describes its output once, as `Table`s of `Column`s, and `show` renders it
as a terminal table, CSV, XLSX or JSON with the user's format options (`Output`). Labels and
coded values are translated through `syncd.core.i18n` (Chinese by default, `--lang en`);
amounts are shown with thousands separators in 元 or 万元 (`--unit`); ID numbers are masked
unless `--unmask`, which is audited at the hub before anything is shown.

Adding a report command::

    from syncd.cli import present
    from syncd.cli.present import Column, Kind, Table
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
import dataclasses
import datetime as dt
import getpass
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.cells import cell_len

from syncd.cli.context import CsvOpt, JsonOpt
from syncd.cli.render import call, print_table, to_jsonable, usage
from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.core.i18n import N_, Translator, Unit

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


class Kind(StrEnum):
    """How a column's values are shown (and typed in XLSX)."""

    TEXT = "text"
    MONEY = "money"  # yuan in the data; shown in the unit, #,##0.00
    COUNT = "count"  # an integer, with thousands separators
    NUMBER = "number"  # another number (a rate, a weight), as it is
    ID_NUMBER = "id_number"  # masked unless --unmask
    ENUM = "enum"  # a coded value of i18n.ENUMS[column.enum]
    NODE = "node"  # a node id, shown by its display name
    NODES = "nodes"  # a list of node ids
    ENUMS = "enums"  # a list of coded values of i18n.ENUMS[column.enum]
    LIST = "list"  # a list of anything else
    DATE = "date"
    DATETIME = "datetime"  # naive UTC, as the hub stores it
    BOOL = "bool"  # yes / no


_RIGHT = frozenset({Kind.MONEY, Kind.COUNT, Kind.NUMBER})


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: the row key, its label (a message marked with N_), how values are shown.

    enum names the i18n.ENUMS entry of an ENUM or ENUMS column. export_only columns go to CSV
    and XLSX but not to the terminal's table (which has less room).
    """

    key: str
    label: str
    kind: Kind = Kind.TEXT
    enum: str | None = None
    export_only: bool = False

    def __post_init__(self) -> None:
        if (self.kind in (Kind.ENUM, Kind.ENUMS)) != (self.enum is not None):
            raise ValueError(f"column {self.key}: enum= goes with kind ENUM or ENUMS only")
        if self.enum is not None and self.enum not in i18n.ENUMS:
            raise ValueError(f"column {self.key}: unknown enum {self.enum!r}")


@dataclasses.dataclass(frozen=True)
class Typed:
    """A value that brings its own column spec (a record's field of any kind in a value cell)."""

    column: Column
    value: Any


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows (mappings by column key) under a title (a message; {fields} from title_args).

    name is the machine name: the JSON key when a report has several tables.
    """

    name: str
    title: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    title_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"


@dataclasses.dataclass(frozen=True)
class Output:
    """The user's format options, checked (`output`)."""

    lang: str = i18n.DEFAULT_LANG
    unit: Unit = Unit.YUAN
    unmask: bool = False
    format: Format = Format.TABLE
    path: Path | None = None  # the XLSX file, or the CSV/JSON file of --output

    @property
    def tr(self) -> Translator:
        return Translator(self.lang)

    def arguments(self) -> dict[str, Any]:
        """The format options as the audit records them."""
        return {
            "lang": self.lang,
            "unit": self.unit.value,
            "format": self.format.value,
            "output": None if self.path is None else str(self.path.absolute()),
        }


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


class _Cells:
    """Values of one output as text (table, CSV) or as typed XLSX cells."""

    def __init__(self, fmt: Output, names: Mapping[str, str]) -> None:
        self.fmt = fmt
        self.tr = fmt.tr
        self.names = names

    def label(self, column: Column, *, unit: bool = True) -> str:
        label = self.tr.gettext(column.label)
        if unit and column.kind is Kind.MONEY:
            return self.tr.fmt(N_("{label} ({unit})"), label=label, unit=self.unit_label)
        return label

    @property
    def unit_label(self) -> str:
        return self.tr.gettext(self.fmt.unit.label)

    def node(self, node_id: Any) -> str:
        return self.names.get(str(node_id), str(node_id))

    def text(self, column: Column, value: Any) -> str:
        if isinstance(value, Typed):
            return self.text(value.column, value.value)
        if value is None:
            return ""
        kind = column.kind
        if kind is Kind.MONEY:
            return i18n.format_amount(value, self.fmt.unit)
        if kind is Kind.COUNT:
            return i18n.format_count(value)
        if kind is Kind.ID_NUMBER:
            return str(value if self.fmt.unmask else i18n.mask_id(str(value)))
        if kind in (Kind.ENUM, Kind.BOOL, Kind.NODE):
            return self._item(column, value)
        if kind is Kind.DATETIME and isinstance(value, dt.datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if kind in (Kind.NODES, Kind.ENUMS, Kind.LIST) and isinstance(value, list | tuple):
            return self.tr.list_separator.join(self._item(column, v) for v in value)
        shown = to_jsonable(value)
        return shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)

    def _item(self, column: Column, value: Any) -> str:
        """One coded value, or one item of a list column."""
        if column.kind in (Kind.NODE, Kind.NODES):
            return self.node(value)
        if column.kind in (Kind.ENUM, Kind.ENUMS):
            assert column.enum is not None
            return self.tr.enum(column.enum, value)
        if column.kind is Kind.BOOL:
            return self.tr.enum("bool", bool(value))
        return str(to_jsonable(value))

    def typed(self, column: Column, value: Any) -> tuple[Any, str | None]:
        """An XLSX cell's value and number format."""
        if isinstance(value, Typed):
            return self.typed(value.column, value.value)
        if value is None:
            return None, None
        kind = column.kind
        if kind is Kind.MONEY:
            return i18n.in_unit(value, self.fmt.unit), "#,##0.00"
        if kind is Kind.COUNT:
            return int(value), "#,##0"
        if kind is Kind.NUMBER:
            return i18n.to_decimal(value), None
        if kind is Kind.DATETIME and isinstance(value, dt.datetime):
            return value, "yyyy-mm-dd hh:mm:ss"
        if kind is Kind.DATE and isinstance(value, dt.date):
            return value, "yyyy-mm-dd"
        return self.text(column, value), None


def label(fmt: Output, column: Column) -> str:
    """A column's label as `show` writes it (translated; an amount's with its unit)."""
    return _Cells(fmt, {}).label(column)


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
    cells = _Cells(fmt, names)
    if fmt.format is Format.JSON:
        data = raw if raw is not None else _raw(tables)
        _emit(fmt, json.dumps(_masked(to_jsonable(data), fmt.unmask), ensure_ascii=False, indent=2))
    elif fmt.format is Format.CSV:
        _emit(fmt, _csv(cells, csv_table or tables[0]), bom=True)
    elif fmt.format is Format.XLSX:
        assert fmt.path is not None
        _xlsx(cells, tables, fmt.path)
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


_ID_KEYS = frozenset({"id_number"})


def _masked(data: Any, unmask: bool) -> Any:
    """JSON data with every id_number masked (unless unmask), at any depth."""
    if unmask:
        return data
    if isinstance(data, dict):
        return {
            k: i18n.mask_id(v) if k in _ID_KEYS else _masked(v, unmask) for k, v in data.items()
        }
    if isinstance(data, list):
        return [_masked(v, unmask) for v in data]
    return data


def _title(cells: _Cells, table: Table) -> str:
    return cells.tr.fmt(table.title, **table.title_args)


def _terminal(cells: _Cells, table: Table) -> None:
    """The table; its amounts' unit is said once in the title, as Chinese reports do (单位：元),
    which keeps the headers short enough for more tables to fit a terminal."""
    columns = [c for c in table.columns if not c.export_only]
    title = _title(cells, table)
    if any(c.kind is Kind.MONEY for c in columns):
        title += cells.tr.fmt(N_(" (amounts in {unit})"), unit=cells.unit_label)
    print_table(
        title,
        [cells.label(c, unit=False) for c in columns],
        [[cells.text(c, row.get(c.key)) for c in columns] for row in table.rows],
        right=[i for i, c in enumerate(columns) if c.kind in _RIGHT],
    )


def _csv(cells: _Cells, table: Table) -> str:
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


# --- XLSX ----------------------------------------------------------------------------------

_SHEET_FORBIDDEN = str.maketrans(dict.fromkeys("[]:*?/\\", ""))
_MAX_WIDTH = 60


def _sheet_title(title: str, taken: set[str]) -> str:
    base = " ".join(title.translate(_SHEET_FORBIDDEN).split())[:31].rstrip() or "sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _xlsx(cells: _Cells, tables: Sequence[Table], path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    taken: set[str] = set()
    for n, table in enumerate(tables):
        title = _sheet_title(_title(cells, table), taken)
        sheet = book.create_sheet(title) if n else book.worksheets[0]
        sheet.title = title
        labels = [cells.label(c) for c in table.columns]
        sheet.append(labels)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        widths = [cell_len(label) for label in labels]
        for r, row in enumerate(table.rows, start=2):
            for i, column in enumerate(table.columns):
                value, number_format = cells.typed(column, row.get(column.key))
                cell = sheet.cell(row=r, column=i + 1, value=value)
                if number_format is not None:
                    cell.number_format = number_format
                widths[i] = max(widths[i], cell_len(_width_text(cells, column, row)))
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(_MAX_WIDTH, width + 2)
        sheet.freeze_panes = "A2"
        if table.rows:
            sheet.auto_filter.ref = sheet.dimensions
    buf = io.BytesIO()
    book.save(buf)
    _replace(path, "--xlsx", lambda f: f.write(buf.getvalue()))


def _width_text(cells: _Cells, column: Column, row: Mapping[str, Any]) -> str:
    return cells.text(column, row.get(column.key))
