"""The presentation model of reports: columns with kinds, one language, one unit, masked IDs.

A report describes its output once, as `Table`s of `Column`s; `Cells` turns each value into
the text a table or CSV shows (translated through `syncd.core.i18n`, amounts in 元 or 万元,
ID numbers masked unless the output unmasks them) or into a typed XLSX cell, and
`xlsx_bytes` writes the workbook. The CLI (`syncd.cli.present.show`) and the console's pages
and exports use these same pieces, so a figure reads the same everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import io
import json
from collections.abc import Mapping, Sequence
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from rich.cells import cell_len

from syncd.core import i18n
from syncd.core.i18n import N_, Translator, Unit

__all__ = [
    "RIGHT",
    "Cells",
    "Column",
    "Format",
    "Kind",
    "Output",
    "Table",
    "Typed",
    "label",
    "title",
    "to_jsonable",
    "xlsx_bytes",
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


RIGHT = frozenset({Kind.MONEY, Kind.COUNT, Kind.NUMBER})


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
    """What the CLI writes (the console shows HTML tables and exports XLSX)."""

    TABLE = "table"
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"


@dataclasses.dataclass(frozen=True)
class Output:
    """One output's options: language, unit, full or masked IDs (and, for the CLI, the format
    and the file it writes: `syncd.cli.present.output` checks them)."""

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


# --- cells ---------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: amounts as strings, dates in ISO form, enums by value."""
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


class Cells:
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
    """A column's label as reports write it (translated; an amount's with its unit)."""
    return Cells(fmt, {}).label(column)


def title(cells: Cells, table: Table) -> str:
    """A table's title, translated, its {fields} filled in."""
    return cells.tr.fmt(table.title, **table.title_args)


# --- XLSX ----------------------------------------------------------------------------------

_SHEET_FORBIDDEN = str.maketrans(dict.fromkeys("[]:*?/\\", ""))
_MAX_WIDTH = 60


def _sheet_title(text: str, taken: set[str]) -> str:
    base = " ".join(text.translate(_SHEET_FORBIDDEN).split())[:31].rstrip() or "sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def xlsx_bytes(cells: Cells, tables: Sequence[Table]) -> bytes:
    """The workbook of `tables`: one sheet each, typed cells, a bold frozen header row,
    filters and column widths that fit (what `syncd report … --xlsx` writes).

    Written in openpyxl's write-only mode: rows stream into the file instead of a cell object
    per value held until the end, which a 159,000-row warnings export made slow and large. The
    widths need every row's text first, so each table is gone through twice."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    taken: set[str] = set()
    bold = Font(bold=True)
    for table in tables:
        sheet = book.create_sheet(_sheet_title(title(cells, table), taken))
        labels = [cells.label(c) for c in table.columns]
        for i, width in enumerate(_widths(cells, table, labels), start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(_MAX_WIDTH, width + 2)
        sheet.freeze_panes = "A2"
        header = []
        for label in labels:
            cell = WriteOnlyCell(sheet, value=label)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            sheet.append(_typed_row(sheet, cells, table, row))
        if table.rows:
            last = get_column_letter(len(table.columns))
            sheet.auto_filter.ref = f"A1:{last}{len(table.rows) + 1}"
    if not tables:
        book.create_sheet("syncd")  # a workbook needs a sheet
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _widths(cells: Cells, table: Table, labels: Sequence[str]) -> list[int]:
    """Each column's width in cells: its label's or its longest value's as text."""
    widths = [cell_len(label) for label in labels]
    for row in table.rows:
        for i, column in enumerate(table.columns):
            widths[i] = max(widths[i], cell_len(_width_text(cells, column, row)))
    return widths


def _typed_row(sheet: Any, cells: Cells, table: Table, row: Mapping[str, Any]) -> list[Any]:
    """A row's values for a write-only sheet: a cell with its number format where it has one."""
    from openpyxl.cell import WriteOnlyCell

    line: list[Any] = []
    for column in table.columns:
        value, number_format = cells.typed(column, row.get(column.key))
        if number_format is None:
            line.append(value)
        else:
            cell = WriteOnlyCell(sheet, value=value)
            cell.number_format = number_format
            line.append(cell)
    return line


def _width_text(cells: Cells, column: Column, row: Mapping[str, Any]) -> str:
    return cells.text(column, row.get(column.key))
