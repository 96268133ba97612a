"""How tables reach the user: nothing cut, in a terminal of any width and in a pipe."""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from syncd.cli import render

COLUMNS = ["rank", "name", "id number", "cities", "deposits", "note"]
ROWS = [
    [1, "杭州迪摩纺织有限公司", "91330109MA9BKBABTR", ["city-3301"], "85,125,717.39", None],
    [
        2,
        "Zhang San",
        "110101199003078515",
        ["city-3301", "city-3302", "city-3303"],
        "254,534,914.20",
        "a long remark that may wrap between its words, [report] kept",
    ],
]
WHOLE = ["杭州迪摩纺织有限公司", "91330109MA9BKBABTR", "110101199003078515", "85,125,717.39"]
WHOLE += ["254,534,914.20", "city-3303", "[report]"]
BOX = set("│┃━─┏┓└┘╇┡")


def _terminal(monkeypatch: pytest.MonkeyPatch, width: int) -> io.StringIO:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, soft_wrap=True)
    monkeypatch.setattr(render, "out", console)
    return buf


def _text(buf: io.StringIO) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())


def test_not_a_terminal_plain_aligned_columns(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_table("customers", COLUMNS, ROWS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "customers"
    assert not BOX & set("".join(lines))
    assert "\x1b" not in "".join(lines)
    header, *rows = lines[1:]
    assert len(rows) == 2
    # Each column starts at the same display cell on every line (CJK characters are 2 cells).
    for col, value in [("id number", "91330109MA9BKBABTR"), ("deposits", "85,125,717.39")]:
        start = cell_len(header[: header.index(col)])
        assert cell_len(rows[0][: rows[0].index(value)]) == start
    start = cell_len(header[: header.index("deposits")])
    assert cell_len(rows[1][: rows[1].index("254,534,914.20")]) == start
    for value in WHOLE:
        assert value in "\n".join(rows)
    assert all(line == line.rstrip() for line in lines)


def test_not_a_terminal_a_value_with_newlines_stays_on_its_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render.print_table(None, ["node", "last error"], [["city-3301", "refused:\nchecksum"]])
    assert capsys.readouterr().out.splitlines() == [
        "node       last error",
        "city-3301  refused: checksum",
    ]


@pytest.mark.parametrize("width", [40, 60, 100, 160, 240])
def test_terminal_never_cuts_an_id_or_a_number(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    buf = _terminal(monkeypatch, width)
    render.print_table("customers", COLUMNS, ROWS)
    text = _text(buf)
    assert "…" not in text
    for value in WHOLE:
        assert value in text, f"width {width}: {value} is not whole in\n{text}"


def test_wide_terminal_gets_a_table_narrow_one_a_record_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wide = _terminal(monkeypatch, 240)
    render.print_table("customers", COLUMNS, ROWS)
    assert "┃ rank ┃" in _text(wide)
    narrow = _terminal(monkeypatch, 60)
    render.print_table("customers", COLUMNS, ROWS)
    text = _text(narrow)
    assert "-[ 2 ]-" in text
    assert re.search(r"^id number +110101199003078515", text, re.MULTILINE)
    assert all(cell_len(line.rstrip()) <= 60 for line in text.splitlines())


def test_a_table_that_fits_stays_within_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = _terminal(monkeypatch, 120)
    render.print_table("customers", COLUMNS, ROWS)
    text = _text(buf)
    assert "┃ rank ┃" in text
    assert all(cell_len(line) <= 120 for line in text.splitlines())


def test_a_title_is_text_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = _terminal(monkeypatch, 120)
    render.print_table("weights ([report] section)", ["a"], [["1"]])
    assert "weights ([report] section)" in _text(buf)
