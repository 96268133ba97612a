"""Reconcile at a PostgreSQL hub: a node's role learns about its own source records only.

As node A's real login role (from `syncd node add`): asking any reconcile question for node B
is refused with SQLSTATE 42501; hub tables stay unreadable; a question naming a table that is
no source table, or a column that is no public column, is refused; and the answers A gets
about its own records never count B's rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.engine import make_url

from tests.helpers import run_syncd, write_config
from tests.integration.test_hub_security import A, B, Hub, _add_nodes, _psycopg_url


@pytest.fixture
def hub(tmp_path: Path, pg_url: str) -> Hub:
    """A hub made by `syncd init`, with nodes A and B registered by `syncd node add`."""
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url)
    run_syncd(conf, "init", check=True)
    urls, roles = _add_nodes(conf)
    return Hub(conf, _psycopg_url(pg_url), make_url(pg_url).database or "", urls, roles)


COLS = (["loan_id", "balance"], ["text", "dec"], [0, 2], ["loan_id"])


def _seed(hub: Hub) -> None:
    """One loan of each node at the hub, written as its owner would."""
    with psycopg.connect(hub.admin, autocommit=True) as conn:
        for node, loan in ((A, "LA"), (B, "LB")):
            conn.execute(
                "INSERT INTO loans (origin_node, loan_id, customer_id, product, principal, "
                "balance, five_class, overdue_days, issued_on, maturity_on, updated_at, _seq, "
                "_deleted, _applied_at) VALUES (%s, %s, 'C1', 'mortgage', 1, 5, 'normal', 0, "
                "'2024-01-01', '2030-01-01', now(), 1, false, now())",
                (node, loan),
            )


def _digests(conn: psycopg.Connection[Any], node: str, table: str = "loans") -> list[Any]:
    return conn.execute(
        "SELECT * FROM syncd_reconcile_digests(%s, %s, %s, %s, %s::int[], %s, 1, 1, NULL)",
        (node, table, *COLS),
    ).fetchall()


QUESTIONS = [
    "SELECT * FROM syncd_reconcile_digests(%(n)s, 'loans', %(c)s, %(k)s, %(s)s::int[], "
    "%(key)s, 1, 1, NULL)",
    "SELECT * FROM syncd_reconcile_leaf(%(n)s, 'loans', %(c)s, %(k)s, %(s)s::int[], "
    "%(key)s, 1, ARRAY[0]::bigint[])",
    "SELECT * FROM syncd_reconcile_columns(%(n)s, 'loans', %(c)s, %(k)s, %(s)s::int[], "
    "%(key)s, ARRAY['LB'], true)",
    "SELECT * FROM syncd_reconcile_pending(%(n)s, 'loans', %(key)s, ARRAY['LB'])",
    "SELECT syncd_reconcile_record(%(n)s, '{}'::jsonb)",
]


def test_a_cannot_ask_about_b(hub: Hub) -> None:
    _seed(hub)
    args = {"n": B, "c": COLS[0], "k": COLS[1], "s": COLS[2], "key": COLS[3]}
    with psycopg.connect(hub.urls[A], autocommit=True) as conn:
        for question in QUESTIONS:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(question, args)


def test_a_sees_only_its_own_records_and_no_hub_table(hub: Hub) -> None:
    _seed(hub)
    with psycopg.connect(hub.urls[A], autocommit=True) as conn:
        ((bucket, rows, _hash, sums),) = _digests(conn, A)
        assert (bucket, rows, sums) == (0, 1, ["5.00"])  # LB of node B is not counted
        cols = conn.execute(
            "SELECT * FROM syncd_reconcile_columns(%s, 'loans', %s, %s, %s::int[], %s, "
            "ARRAY['LA', 'LB'], true)",
            (A, *COLS),
        ).fetchall()
        assert [k for k, _ in cols] == ["LA"]
        for table in (
            "loans",
            "src_customers",
            "syncd_audit",
            "syncd_audit_row",
            "syncd_quarantine",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM syncd_reconcile_plan('loans', %s, %s, %s::int[], %s)", COLS)


BAD = [
    ("syncd_audit", COLS, errors.UndefinedObject),
    ("customers", COLS, errors.UndefinedObject),  # the golden table: no origin_node
    (
        "loans",
        (["loan_id", "_batch_id"], ["text", "int"], [0, 0], ["loan_id"]),
        errors.UndefinedColumn,
    ),
    (
        "loans",
        (["loan_id", "origin_node"], ["text", "text"], [0, 0], ["loan_id"]),
        errors.UndefinedColumn,
    ),
    (
        "loans",
        (["loan_id"], ["text); DROP TABLE loans; --"], [0], ["loan_id"]),
        errors.InvalidParameterValue,
    ),
]


def test_only_public_columns_of_source_tables(hub: Hub) -> None:
    with psycopg.connect(hub.urls[A], autocommit=True) as conn:
        for table, cols, error in BAD:
            with pytest.raises(error):
                conn.execute(
                    "SELECT * FROM syncd_reconcile_digests(%s, %s, %s, %s, %s::int[], %s, "
                    "1, 1, NULL)",
                    (A, table, *cols),
                )


def test_record_leaves_an_event_only(hub: Hub) -> None:
    with psycopg.connect(hub.urls[A], autocommit=True) as conn:
        conn.execute(
            "SELECT syncd_reconcile_record(%s, %s::jsonb)", (A, json.dumps({"in_sync": True}))
        )
    with psycopg.connect(hub.admin) as conn:
        rows = conn.execute("SELECT node_id, kind, reason FROM syncd_inbox_event").fetchall()
    assert rows == [(A, "reconcile", '{"in_sync": true}')]
