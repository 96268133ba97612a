"""The city's egress ledger over a real city and hub: recording, crash settling, trim, CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.city import egress as ledger
from syncd.city.push import cut_batch, read_changes
from syncd.core.agreement import fingerprint
from syncd.core.canonical import canonical
from syncd.core.egress import EgressEntry, EgressStatus
from syncd.core.policy import load_policy
from syncd.store import hub_tables as h
from syncd.store.city_tables import changelog, egress
from syncd.store.db import create_engine, utcnow
from tests.conftest import POLICY
from tests.helpers import run_syncd
from tests.integration.test_push import NOW, Pair, crm, customer, make_pair

POLICY_FP = fingerprint(load_policy(POLICY))


def loan(lid: str, cid: str) -> dict[str, Any]:
    return {
        "loan_id": lid,
        "customer_id": cid,
        "product": "mortgage",
        "principal": 100,
        "balance": 90,
        "interest_rate": 0.04,
        "five_class": "normal",
        "overdue_days": 0,
        "issued_on": NOW.date(),
        "maturity_on": NOW.date(),
        "collateral": "house",
        "approval_memo": "内部审批意见",
        "updated_at": NOW,
    }


@pytest.fixture
def pair(tmp_path: Path, db_url: str, pg_url_factory: Any) -> Iterator[Pair]:
    hub_url = (
        f"sqlite:///{tmp_path / 'hub.db'}" if db_url.startswith("sqlite") else pg_url_factory()
    )
    p = make_pair(tmp_path, db_url, hub_url, trim_retention_seconds=0)
    yield p
    p.pusher.hub.close()
    p.pusher.city.dispose()


def conf(tmp_path: Path) -> Path:
    """The city's config file, written by `make_pair`."""
    return tmp_path / "city.toml"


def write_crm(pair: Pair) -> None:
    """Public rows (one a prospect the filter keeps home), a loan, and a local opportunity."""
    md = crm(pair)
    md.reflect(pair.pusher.city, only=["loans"])
    with pair.pusher.city.begin() as conn:
        conn.execute(md.tables["customers"].insert(), [customer("C1"), customer("P1", "prospect")])
        conn.execute(md.tables["loans"].insert(), [loan("L1", "C1")])
        conn.execute(
            md.tables["opportunities"]
            .insert()
            .values(opportunity_id="O1", customer_id="C1", notes="本地", updated_at=NOW)
        )


def push_all(pair: Pair) -> int:
    """Push until the hub holds every captured change; returns the batches sent. Snapshots are
    cluster-wide: other tests' transactions on the shared server may hold the gap-safe horizon
    back for a while."""
    with pair.pusher.city.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(changelog.c.seq))).scalar() or 0
    sent = 0
    deadline = time.monotonic() + 30
    while pair.pusher.hub.watermark() < top and time.monotonic() < deadline:
        sent += pair.pusher.push_once().batches
    return sent


def ledger_rows(pair: Pair) -> list[EgressEntry]:
    with pair.pusher.city.connect() as conn:
        return ledger.entries(conn)


def hub_batches(pair: Pair) -> list[tuple[int, int, int, int, str]]:
    engine = create_engine(pair.hub_url)
    b = h.batches.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(b.batch_id, b.first_seq, b.last_seq, b.row_count, b.checksum).order_by(
                b.last_seq
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_ledger_matches_the_hub_and_survives_trimming(pair: Pair) -> None:
    write_crm(pair)
    assert push_all(pair) == 1
    # A batch of filtered-out changes only still moves the watermark: it is in the ledger too.
    customers = crm(pair).tables["customers"]
    with pair.pusher.city.begin() as conn:
        conn.execute(customers.insert(), [customer("P2", "prospect")])
    assert push_all(pair) == 1
    rows = ledger_rows(pair)
    assert [(e.hub_batch_id, e.first_seq, e.last_seq, e.row_count, e.checksum) for e in rows] == (
        hub_batches(pair)
    )
    first, empty = rows
    assert first.status is EgressStatus.ACCEPTED
    assert first.acknowledged_at is not None
    assert first.policy_fingerprint == POLICY_FP
    policy = load_policy(POLICY)
    assert first.carried == {
        "customers": {
            "columns": sorted(policy.table("customers").public_columns),
            "upsert": 1,
            "delete": 0,
        },
        "loans": {
            "columns": sorted(policy.table("loans").public_columns),
            "upsert": 1,
            "delete": 0,
        },
    }
    assert "rm_notes" not in first.carried["customers"]["columns"]
    assert "approval_memo" not in first.carried["loans"]["columns"]
    assert (empty.row_count, empty.carried, empty.covered) == (0, {}, 1)
    assert pair.pusher.push_once().batches == 0
    assert ledger_rows(pair) == rows  # an idle cycle writes nothing

    assert pair.pusher.trim() == 4
    with pair.pusher.city.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(changelog)).scalar() == 0
    assert ledger_rows(pair) == rows


def test_a_crash_after_submit_is_settled_with_the_hubs_batch_id(pair: Pair) -> None:
    write_crm(pair)
    p = pair.pusher
    with p.city.connect() as conn:
        captured = read_changes(conn, 0, None, 100)
    batch, used = cut_batch(p.node_id, p.policy, captured, 10**6)
    # The process dies after the hub kept the batch and before the answer was recorded.
    ledger.record_sent(p.city, batch, used, p.policy_fingerprint)
    kept = p.hub.submit(batch)
    assert [e.status for e in ledger_rows(pair)] == [EgressStatus.SENT]
    # Trim keeps what the unsettled batch covers, so the next cycle can rebuild it.
    assert p.trim() == 0
    result = p.push_once()
    assert result.batches == 0  # nothing new went: the hub's watermark is past it
    (entry,) = ledger_rows(pair)
    assert entry.status is EgressStatus.DUPLICATE
    assert entry.hub_batch_id == kept.batch_id == hub_batches(pair)[0][0]
    assert p.trim() == 3
    assert ledger_rows(pair) == [entry]


def test_a_crash_before_submit_leaves_one_row_acknowledged_by_the_next_cycle(pair: Pair) -> None:
    write_crm(pair)
    p = pair.pusher
    with p.city.connect() as conn:
        captured = read_changes(conn, 0, None, 100)
    batch, used = cut_batch(p.node_id, p.policy, captured, 10**6)
    ledger.record_sent(p.city, batch, used, p.policy_fingerprint)  # then the process dies
    assert push_all(pair) == 1
    (entry,) = ledger_rows(pair)
    assert (entry.status, entry.checksum) == (EgressStatus.ACCEPTED, batch.checksum)
    assert entry.hub_batch_id == hub_batches(pair)[0][0]


def test_audit_egress_prints_the_ledger_and_the_statement(pair: Pair, tmp_path: Path) -> None:
    write_crm(pair)
    assert push_all(pair) == 1
    (entry,) = ledger_rows(pair)

    text = run_syncd(conf(tmp_path), "audit", "egress", check=True).stdout
    assert "1 batches (2 rows) left city city-3301" in text
    assert "no row of a local table and no excluded column was sent" in text
    assert f"fingerprint {POLICY_FP}" in text
    assert "opportunities" not in text
    assert "rm_notes" not in text

    doc = json.loads(run_syncd(conf(tmp_path), "audit", "egress", "--json", check=True).stdout)
    assert doc["ok"] is True
    assert doc["summary"]["tables"]["loans"] == entry.carried["loans"]["columns"]
    assert doc["batches"] == [json.loads(json.dumps(entry.record()))]
    assert doc["digest"] == entry_digest(doc["batches"])

    out = tmp_path / "egress.csv"
    run_syncd(conf(tmp_path), "audit", "egress", "--csv", "-o", str(out), check=True)
    (row,) = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert row["hub_batch_id"] == str(entry.hub_batch_id)
    assert row["checksum"] == entry.checksum
    assert json.loads(row["carried"]) == entry.carried

    later = run_syncd(conf(tmp_path), "audit", "egress", "--since", "2999-01-01T00:00+08:00")
    assert later.returncode == 0
    assert "no batch left city city-3301" in later.stdout

    status = json.loads(run_syncd(conf(tmp_path), "status", "--json", check=True).stdout)
    assert status["last_egress_batch_id"] == entry.hub_batch_id


def entry_digest(records: list[dict[str, Any]]) -> str:
    """The digest as an auditor recomputes it from the JSON output alone."""
    return hashlib.sha256(canonical(records).encode("utf-8")).hexdigest()


def test_a_ledger_row_carrying_a_local_table_fails_the_summary(pair: Pair, tmp_path: Path) -> None:
    write_crm(pair)
    assert push_all(pair) == 1
    # An older, buggy version sent a local table and an excluded column.
    with pair.pusher.city.begin() as conn:
        conn.execute(
            egress.insert().values(
                last_seq=900,
                checksum="f" * 64,
                first_seq=800,
                covered=100,
                row_count=2,
                carried={
                    "opportunities": {
                        "columns": ["notes", "opportunity_id"],
                        "upsert": 1,
                        "delete": 0,
                    },
                    "customers": {"columns": ["customer_id", "rm_notes"], "upsert": 1, "delete": 0},
                },
                policy_fingerprint="0" * 64,
                status="accepted",
                hub_batch_id=77,
                sent_at=utcnow(),
                acknowledged_at=utcnow(),
            )
        )
    proc = run_syncd(conf(tmp_path), "audit", "egress")
    assert proc.returncode == 1
    assert "batch 800-900 (hub batch 77) carried table opportunities" in proc.stderr
    assert "batch 800-900 (hub batch 77) carried column customers.rm_notes" in proc.stderr
    assert "NOT COMPLIANT" in proc.stdout
    assert f"batch 800-900 was sent under another policy (fingerprint {'0' * 64})" in proc.stdout
    doc = json.loads(run_syncd(conf(tmp_path), "audit", "egress", "--json").stdout)
    assert doc["ok"] is False
    assert len(doc["violations"]) == 2


def test_audit_egress_is_a_city_command(pair: Pair, tmp_path: Path) -> None:
    proc = run_syncd(tmp_path / "hub.toml", "audit", "egress")
    assert proc.returncode == 2
    assert "audit egress runs at a city" in proc.stderr
    bad = run_syncd(conf(tmp_path), "audit", "egress", "--since", "yesterday")
    assert bad.returncode == 2
    assert "--since" in bad.stderr
