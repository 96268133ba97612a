"""`syncd audit` and `syncd conflicts` as an auditor and stewards run them: the real binary on
real SQLite and PostgreSQL hubs, and the reference verifier printed in docs/auditors.md."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from syncd.app import init_node
from syncd.hub.apply import apply_pending
from syncd.store.db import create_engine
from tests.conftest import REPO
from tests.helpers import run_syncd, settings_for, write_config
from tests.integration.test_apply import (
    LI,
    POLICY,
    ZHANG,
    customer,
    golden_of,
    open_conflicts,
    submit,
    two_cities,
    up,
)


def _hub(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Engine]]:
    """A hub initialised as `syncd init` does, with two cities' customers applied."""
    conf = write_config(
        tmp_path / "hub.toml",
        "hub-33",
        "hub",
        db_url,
        extra='[audit]\ntimezone = "Asia/Shanghai"\n[conflicts]\nfour_eyes = true\n',
    )
    init_node(settings_for(conf))
    engine = create_engine(db_url)
    two_cities(engine)
    submit(
        engine,
        "hz",
        [
            up(1, "customers", customer("c1", ZHANG)),
            up(2, "customers", customer("c2", LI, name="李四")),
        ],
    )
    submit(engine, "nb", [up(1, "customers", customer("n7", ZHANG, customer_type="corporate"))])
    apply_pending(engine, POLICY)
    submit(engine, "hz", [up(3, "customers", customer("c1", ZHANG, phone="13900000000"))])
    apply_pending(engine, POLICY)
    yield conf, engine
    engine.dispose()


@pytest.fixture
def hub_conf(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Path, Engine]]:
    """For what the CLI adds (times, pages, files): the queries themselves are tested on both
    databases in test_audit_queries.py, and a subprocess per test per dialect cost minutes."""
    yield from _hub(tmp_path, sqlite_url)


@pytest.fixture
def any_hub_conf(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Engine]]:
    """Both databases: where what the CLI reads depends on the dialect (exports stream rows)."""
    yield from _hub(tmp_path, db_url)


def _log(conf: Path, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = run_syncd(conf, "audit", "log", "--json", *args, check=True, env=env)
    entries: list[dict[str, Any]] = json.loads(proc.stdout)
    return entries


def test_log_shows_times_in_the_configured_zone_and_tz(hub_conf: tuple[Path, Engine]) -> None:
    conf, _ = hub_conf
    entries = _log(conf)
    assert entries
    assert all(e["at"].endswith("+08:00") for e in entries)
    utc = _log(conf, "--tz", "UTC")
    assert all(e["at"].endswith("+00:00") for e in utc)
    assert [e["entry_id"] for e in utc] == [e["entry_id"] for e in entries]
    table = run_syncd(conf, "audit", "log", "--limit", "2", check=True).stdout
    assert "+08:00" in table
    bad = run_syncd(conf, "audit", "log", "--tz", "Mars/Olympus")
    assert bad.returncode == 2
    assert "--tz 'Mars/Olympus'" in bad.stderr


def test_since_and_until_read_naive_times_in_the_zone(hub_conf: tuple[Path, Engine]) -> None:
    conf, _ = hub_conf
    entries = _log(conf, "--tz", "UTC")
    first = entries[0]["at"][:19]  # the stored UTC time, to the second
    assert _log(conf, "--until", first, "--tz", "UTC") == []
    assert len(_log(conf, "--since", first, "--tz", "UTC")) == len(entries)
    # An hour after the first entry, in UTC: nothing yet. Without an offset, in the hub's zone
    # (Shanghai, UTC+8), the same text is 7 hours before it; an explicit offset wins.
    later = (dt.datetime.fromisoformat(first) + dt.timedelta(hours=1)).isoformat()
    assert _log(conf, "--since", later, "--tz", "UTC") == []
    assert len(_log(conf, "--since", later)) == len(entries)
    assert _log(conf, "--since", later + "+00:00") == []
    bad = run_syncd(conf, "audit", "log", "--until", "yesterday")
    assert (bad.returncode, "--until 'yesterday'" in bad.stderr) == (2, True)


def _position(line: dict[str, Any]) -> int | str:
    """What --before takes to read the lines before this one: ENTRY.ORD for a row decision."""
    return line["entry_id"] if not line["ord"] else f"{line['entry_id']}.{line['ord']}"


def test_log_pages_with_a_notice_of_what_is_left(hub_conf: tuple[Path, Engine]) -> None:
    conf, _ = hub_conf
    everything = _log(conf, "--limit", "1000")
    total = len(everything)
    # One line per row decision: more lines than chain entries, the row decisions with ord >= 1.
    assert any(e["ord"] for e in everything)
    proc = run_syncd(conf, "audit", "log", "--json", "--limit", "3", check=True)
    shown = json.loads(proc.stdout)
    assert shown == everything[-3:]
    first = _position(shown[0])
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {
        "more": total - 3,
        "before": first,
    }
    text = run_syncd(conf, "audit", "log", "--limit", "3", check=True)
    assert f"{total - 3} older matching entries not shown: add --before {first}" in text.stderr
    rest = run_syncd(conf, "audit", "log", "--json", "--before", str(first), check=True)
    assert json.loads(rest.stdout) == everything[:-3]
    assert rest.stderr.strip() == ""
    bad = run_syncd(conf, "audit", "log", "--before", "5.x")
    assert (bad.returncode, "--before '5.x'" in bad.stderr) == (2, True)
    # --batch: every line of one inbox batch (its row decisions and its batch_applied).
    by_batch = _log(conf, "--batch", "2", "--limit", "1000")
    assert by_batch == [e for e in everything if e["batch_id"] == 2]
    assert {e["action"] for e in by_batch} >= {"row_applied", "batch_applied"}


def test_log_by_id_number_golden_id_key_and_action(any_hub_conf: tuple[Path, Engine]) -> None:
    conf, engine = any_hub_conf
    typed = f"{ZHANG[:6]}-{ZHANG[6:14]} {ZHANG[14:]}"
    by_number = _log(conf, "--id-number", typed)
    assert [(e["action"], e["node_id"]) for e in by_number] == [
        ("row_applied", "hz"),
        ("conflict_opened", None),
        ("row_applied", "nb"),
        ("row_applied", "hz"),
    ]
    gid = golden_of(engine, ZHANG)["golden_id"]
    assert _log(conf, "--golden-id", str(gid)) == by_number
    assert _log(conf, "--id-number", typed, "--node", "nb") == [by_number[2]]
    updates = _log(conf, "--action", "row_applied", "--key", '{"customer_id": "c1"}')
    assert [e["detail"]["columns"] for e in updates][-1] == ["phone"]
    assert _log(conf, "--table", "customers", "--id-number", LI)[0]["row_key"] == {
        "customer_id": "c2"
    }
    wrong = run_syncd(conf, "audit", "log", "--table", "loans", "--golden-id", "1")
    assert wrong.returncode == 2
    assert "--table loans" in wrong.stderr


def _export(conf: Path, path: Path, fmt: str, *args: str) -> None:
    run_syncd(conf, "audit", "export", "--format", fmt, "-o", str(path), *args, check=True)


def _verify_file(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No --config: the offline verifier needs neither a config nor a database.
    return run_syncd(None, "audit", "verify", "--file", str(path), *args)


def _tampered(path: Path, entry_id: int) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("{") and json.loads(line)["entry_id"] == entry_id:
            record = json.loads(line)
            record["detail"]["tampered"] = True
            lines[i] = json.dumps(record, ensure_ascii=False) + "\n"
    bad = path.with_name("tampered-" + path.name)
    bad.write_text("".join(lines), encoding="utf-8")
    return bad


def test_export_verifies_offline_with_an_anchor(
    any_hub_conf: tuple[Path, Engine], tmp_path: Path
) -> None:
    conf, _ = any_hub_conf
    anchor = run_syncd(conf, "audit", "head", check=True).stdout.strip()
    head_id = int(anchor.split(":")[0])
    for fmt in ("json", "csv"):
        path = tmp_path / f"audit.{fmt}"
        _export(conf, path, fmt)
        ok = _verify_file(path, "--against", anchor)
        assert ok.returncode == 0, ok.stderr
        assert f"audit chain intact: {head_id} entries, head {anchor}" in ok.stdout
        as_json = json.loads(_verify_file(path, "--json").stdout)
        assert (as_json["ok"], as_json["head_id"], as_json["starts_after"]) == (True, head_id, 0)
        wrong = _verify_file(path, "--against", f"2:{'a' * 64}")
        assert wrong.returncode == 1
        assert "BROKEN at entry 2" in wrong.stderr
    bad = _verify_file(_tampered(tmp_path / "audit.json", 3))
    assert bad.returncode == 1
    assert "BROKEN at entry 3: entry_hash does not match" in bad.stderr
    missing = _verify_file(tmp_path / "nope.jsonl")
    assert (missing.returncode, "no such file" in missing.stderr) == (2, True)


def test_limited_export_says_what_it_left_out(
    hub_conf: tuple[Path, Engine], tmp_path: Path
) -> None:
    conf, _ = hub_conf
    everything = _log(conf, "--limit", "1000")
    total = len(everything)
    path = tmp_path / "tail.jsonl"
    proc = run_syncd(
        conf, "audit", "export", "--format", "json", "-o", str(path), "--limit", "2", check=True
    )
    first = _position(everything[-2])
    assert f"{total - 2} older matching entries not shown: add --before {first}" in proc.stderr
    tail = _verify_file(path)
    assert tail.returncode == 0
    # Row decisions before the tail's first entry have no entry to be checked against.
    entries = [e for e in everything[-2:] if not e["ord"]]
    assert f"{len(entries)} entries (from entry {entries[0]['entry_id']})" in tail.stdout


def _reference_verifier(tmp_path: Path) -> Path:
    doc = (REPO / "docs" / "auditors.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- reference verifier -->\s*```python\n(.*?)```", doc, re.S)
    assert match, "docs/auditors.md lost its reference verifier"
    code = match.group(1)
    assert len(code.splitlines()) <= 50  # short enough to read; version 2 added row decisions
    script = tmp_path / "verify_audit.py"
    script.write_text(code, encoding="utf-8")
    return script


def test_the_reference_verifier_in_the_docs_agrees(
    hub_conf: tuple[Path, Engine], tmp_path: Path
) -> None:
    conf, _ = hub_conf
    script = _reference_verifier(tmp_path)
    path = tmp_path / "audit.jsonl"
    _export(conf, path, "json")
    anchor = run_syncd(conf, "audit", "head", check=True).stdout.strip()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(script), *args], capture_output=True, text=True, check=False
        )

    ok = run(str(path), anchor)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"intact: {anchor.split(':')[0]} entries, head {anchor}"
    assert _verify_file(path, "--against", anchor).returncode == 0
    for entry_id in (1, 4):
        bad = _tampered(path, entry_id)
        theirs, ours = run(str(bad)), _verify_file(bad)
        assert (theirs.returncode, ours.returncode) == (1, 1)
        assert f"BROKEN at entry {entry_id}" in theirs.stderr
        assert f"BROKEN at entry {entry_id}" in ours.stderr
    # A row decision changed, removed, or added in the export: named by its covering entry.
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if json.loads(line)["ord"] == 1)
    row = json.loads(lines[at])
    edited = json.dumps({**row, "detail": {**row["detail"], "seq": 999}}, ensure_ascii=False)
    added = json.dumps({**row, "ord": row["ord"] + 1000}, ensure_ascii=False)
    for name, changed in [
        ("edited", [*lines[:at], edited + "\n", *lines[at + 1 :]]),
        ("removed", [*lines[:at], *lines[at + 1 :]]),
        ("added", [*lines[: at + 1], added + "\n", *lines[at + 1 :]]),
    ]:
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text("".join(changed), encoding="utf-8")
        theirs, ours = run(str(bad)), _verify_file(bad)
        assert (theirs.returncode, ours.returncode) == (1, 1), name
        assert f"BROKEN at entry {row['entry_id']}" in theirs.stderr, name
        assert f"BROKEN at entry {row['entry_id']}" in ours.stderr, name
    rewritten = run(str(path), f"2:{'b' * 64}")
    assert (rewritten.returncode, "BROKEN at entry 2" in rewritten.stderr) == (1, True)


def test_four_eyes_through_the_cli(hub_conf: tuple[Path, Engine]) -> None:
    conf, engine = hub_conf
    (conflict,) = open_conflicts(engine)
    cid = str(conflict["conflict_id"])
    lina, wang = {"LOGNAME": "lina", "USER": "lina"}, {"LOGNAME": "wangwei", "USER": "wangwei"}

    def conflicts(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return run_syncd(conf, "conflicts", *args, env=env)

    proposed = conflicts("resolve", cid, "--take", "nb", "--by", "Li Na", env=lina)
    assert proposed.returncode == 0, proposed.stderr
    assert f"conflict {cid} proposed by Li Na (OS user lina)" in proposed.stdout
    same = conflicts("approve", cid, "--by", "Someone Else", env=lina)
    assert same.returncode == 2
    assert "a second steward" in same.stderr
    approved = conflicts("approve", cid, "--by", "Wang Wei", "--json", env=wang)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "resolved"
    assert golden_of(engine, ZHANG)["customer_type"] == "corporate"
    (entry,) = _log(conf, "--action", "conflict_resolved")
    assert {
        k: entry["detail"][k] for k in ("by", "os_user", "proposed_by", "proposed_os_user")
    } == {
        "by": "Wang Wei",
        "os_user": "wangwei",
        "proposed_by": "Li Na",
        "proposed_os_user": "lina",
    }
    assert run_syncd(conf, "audit", "verify", check=True).returncode == 0
