"""The egress ledger under kill -9: every batch the hub holds is in it once, acknowledged."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.city import egress as ledger
from syncd.core.egress import EgressStatus
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.e2e.cluster import Cluster, wait_for
from tests.helpers import run_syncd

SEED = int(os.environ.get("SYNCD_E2E_SEED", "20261126"))

KILLS = 3
Ident = tuple[int, int, int, int, str]  # hub batch id, first, last, rows, checksum


def hub_batches(cluster: Cluster, node: str) -> set[Ident]:
    engine = create_engine(cluster.hub_url)
    b = h.batches.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(b.batch_id, b.first_seq, b.last_seq, b.row_count, b.checksum).where(
                b.node_id == node
            )
        ).all()
    engine.dispose()
    return {(int(i), int(f), int(last), int(n), c) for i, f, last, n, c in rows}


def _starts(log: Path) -> int:
    return log.read_text(encoding="utf-8").count('"daemon_started"') if log.exists() else 0


@pytest.mark.slow
def test_kill9_never_loses_or_duplicates_a_ledger_row(tmp_path: Path, pg_url_factory: Any) -> None:
    rng = random.Random(SEED)
    cluster = Cluster(
        tmp_path,
        pg_url_factory(),
        {
            "city-3301": pg_url_factory(),
            "city-3302": f"sqlite:///{tmp_path / 'city-3302.db'}",
        },
        sync={"interval_seconds": 0.05, "batch_rows": 5, "trim_retention_seconds": 0},
    )
    cluster.setup()
    # Long enough for the kills below; every batch they write is applied by one `sync --once`
    # at the hub afterwards, which must stay well inside run_syncd's timeout.
    writers = [cluster.writer(node, SEED + i, 8.0) for i, node in enumerate(cluster.city_urls)]
    daemons = [cluster.daemon(n) for n in cluster.city_urls]
    started = {d.name: 0 for d in daemons}
    try:
        for _ in range(KILLS):
            for d in daemons:
                if not d.running:
                    d.start()
                    started[d.name] += 1
            # Kill only running daemons, mid-push: start-up on a loaded machine takes seconds.
            for d in daemons:
                wait_for(lambda d=d: _starts(d.log) >= started[d.name], 60, f"{d.name} start")
            time.sleep(rng.uniform(0.1, 1.5))
            rng.choice(daemons).kill9()
        for w in writers:
            assert w.wait(60) == 0
    finally:
        for d in daemons:
            d.kill9()
        for w in writers:
            if w.poll() is None:
                w.kill()
    cluster.drain()
    for node, url in cluster.city_urls.items():
        engine = create_engine(url)
        with engine.connect() as conn:
            rows = ledger.entries(conn)
        engine.dispose()
        acked = [e for e in rows if e.status.acknowledged]
        idents = [(e.hub_batch_id, e.first_seq, e.last_seq, e.row_count, e.checksum) for e in acked]
        held = hub_batches(cluster, node)
        assert len(held) > 5
        assert len(idents) == len(set(idents)), f"{node}: a batch recorded twice"
        assert set(idents) == held, f"{node}: ledger and hub differ (seed {SEED})"
        assert not [e for e in rows if e.status is EgressStatus.SENT], f"{node}: unsettled"
        proc = run_syncd(cluster.city_confs[node], "audit", "egress", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
