"""A hub and cities as real processes: init, node registration, daemons, drains, comparison."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from syncd.core.policy import Policy, load_policy
from syncd.core.rowfilter import passes
from syncd.core.validate import validate_row
from syncd.store import hub_tables as h
from syncd.store.db import create_engine
from tests.conftest import POLICY, REPO
from tests.helpers import SYNCD, run_syncd, write_config


@dataclass
class Daemon:
    name: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [SYNCD, "--config", str(self.config), "run"], stdout=fh, stderr=fh, cwd=REPO
            )

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the contract is a clean exit 0."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    root: Path
    hub_url: str
    city_urls: dict[str, str]
    policy: Policy = field(default_factory=lambda: load_policy(POLICY))
    hub_conf: Path = field(init=False)
    city_confs: dict[str, Path] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    city_hub_urls: dict[str, str] = field(default_factory=dict)
    # More config for every node (e.g. a [downlink] section), appended to each file.
    extra: str = ""
    # Keys whose current city row the hub must quarantine (filled by expected_sources).
    invalid: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.hub_conf = write_config(
            self.root / "hub.toml", "hub-33", "hub", self.hub_url, sync=self.sync, extra=self.extra
        )

    def setup(self, hub_url_for_city: dict[str, str] | None = None) -> None:
        run_syncd(self.hub_conf, "init", check=True)
        for node, url in self.city_urls.items():
            out = run_syncd(self.hub_conf, "node", "add", node, "--json", check=True)
            creds = json.loads(out.stdout)["hub_url"]
            hub_for_city = (hub_url_for_city or {}).get(node, creds)
            self.city_hub_urls[node] = creds
            self.city_confs[node] = write_config(
                self.root / f"{node}.toml",
                node,
                "city",
                url,
                hub_for_city,
                sync=self.sync,
                extra=self.extra,
            )
            run_syncd(self.city_confs[node], "init", check=True)

    def daemon(self, node: str) -> Daemon:
        conf = self.hub_conf if node == "hub" else self.city_confs[node]
        return Daemon(node, conf, self.root / f"{node}.log")

    def writer(
        self, node: str, seed: int, seconds: float, prefix: str = "C"
    ) -> subprocess.Popen[bytes]:
        """A CRM writer process; writers of one city need distinct key prefixes."""
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.writer",
                self.city_urls[node],
                str(seed),
                str(seconds),
                prefix,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def drain(self, rounds: int = 5) -> None:
        """Push every city and apply at the hub until nothing moves."""
        for _ in range(rounds):
            moved = 0
            for conf in self.city_confs.values():
                out = run_syncd(conf, "sync", "--once", "--json", check=True)
                moved += json.loads(out.stdout)["rows"] + json.loads(out.stdout)["batches"]
            out = run_syncd(self.hub_conf, "sync", "--once", "--json", check=True)
            moved += json.loads(out.stdout).get("batches", 0)
            if moved == 0:
                return
        raise AssertionError("the cluster did not drain")

    # --- comparison --------------------------------------------------------------------

    def expected_sources(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every city's public rows as the hub must hold them: (table, node, key) → row."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for node, url in self.city_urls.items():
            engine = create_engine(url)
            md = sa.MetaData()
            md.reflect(engine, only=[t.name for t in self.policy.public_tables])
            with engine.connect() as conn:
                for t in self.policy.public_tables:
                    for r in conn.execute(sa.select(md.tables[t.name])).mappings():
                        row = {c: r[c] for c in t.public_columns}
                        if not passes(t.filter, row):
                            continue
                        typed, _reason = validate_row(t, row)
                        if typed is None:
                            # Quarantined at the hub. Its previous version, if one was valid,
                            # stays live there: `hub_sources` leaves these keys out.
                            self.invalid.add((t.name, node, _key(t.primary_key, row)))
                            continue
                        out[(t.name, node, _key(t.primary_key, typed))] = typed
            engine.dispose()
        return out

    def hub_sources(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The hub's live source rows, less the keys `expected_sources` found invalid: for
        those the hub keeps the last valid version it had, if any (the update is quarantined)."""
        md = h.policy_metadata(self.policy)
        engine = create_engine(self.hub_url)
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        with engine.connect() as conn:
            for t in self.policy.public_tables:
                table = md.tables[h.source_table_name(t)]
                q = sa.select(table).where(table.c._deleted.is_(False))
                for r in conn.execute(q).mappings():
                    typed, _ = validate_row(t, {c: r[c] for c in t.public_columns})
                    assert typed is not None
                    key = (t.name, r[h.ORIGIN], _key(t.primary_key, typed))
                    if key not in self.invalid:
                        out[key] = typed
                    else:
                        assert key in self._quarantined(conn), f"{key}: no open quarantine"
        engine.dispose()
        return out

    def check_downlink(self) -> int:
        """Every city holds exactly the province's insight on the customers it sent, each batch
        applied once: its rows are the hub's sent digests for it, its position the hub's last
        batch, and its keys the live customer rows it sent (none of another city's). Returns
        how many insight rows the cities hold."""
        engine = create_engine(self.hub_url)
        src = h.policy_metadata(self.policy).tables["src_customers"]
        d, sent = h.downlink_nodes, h.insight_sent
        total = 0
        with engine.connect() as conn:
            for node, url in self.city_urls.items():
                built, acked = conn.execute(
                    sa.select(d.c.built_seq, d.c.acked_seq).where(d.c.node_id == node)
                ).one()
                hub_digests = dict(
                    conn.execute(
                        sa.select(sent.c.row_key, sent.c.digest).where(sent.c.node_id == node)
                    ).all()
                )
                own = {
                    json.dumps({"customer_id": k}, ensure_ascii=False, separators=(",", ":"))
                    for (k,) in conn.execute(
                        sa.select(src.c.customer_id).where(
                            src.c[h.ORIGIN] == node, src.c._deleted.is_(False)
                        )
                    )
                }
                city = create_engine(url)
                with city.connect() as cc:
                    held = {
                        json.dumps({"customer_id": k}, ensure_ascii=False, separators=(",", ":")): v
                        for k, v in cc.execute(
                            sa.text("SELECT customer_id, digest FROM syncd_province_insight")
                        )
                    }
                    position = cc.execute(
                        sa.text("SELECT value FROM syncd_city_state WHERE key = 'downlink_seq'")
                    ).scalar()
                city.dispose()
                assert held == hub_digests, f"{node}: city insights differ from what was sent"
                assert set(held) == own, f"{node}: insights on customers it does not hold"
                assert int(json.loads(str(position)) if position is not None else 0) == built
                assert acked == built, f"{node}: acknowledged {acked} of {built}"
                total += len(held)
                print(f"downlink {node}: {len(held)} insights, {built} batches")
        engine.dispose()
        return total

    def _quarantined(self, conn: sa.Connection) -> set[tuple[str, str, str]]:
        q = h.quarantine.c
        rows = conn.execute(
            sa.select(q.table_name, q.node_id, q.row_key).where(q.status == "open")
        ).all()
        return {
            (name, node, _key(self.policy.table(name).primary_key, key)) for name, node, key in rows
        }


def _key(pk: tuple[str, ...], row: dict[str, Any]) -> str:
    return json.dumps([str(row[c]) for c in pk], ensure_ascii=False)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
