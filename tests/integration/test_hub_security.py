"""A node's login role at a PostgreSQL hub cannot act as another node (guarantee 3).

The hub's SECURITY DEFINER submission functions run with the owner's rights, so whatever the
caller can make them resolve is an attack: a temporary table shadowing a catalog view or a
syncd table, an operator or function in a schema the caller can write, another role taken
with SET ROLE. Each attack here runs as node A's real login role (from `node add`) and tries
to submit as node B; it must be refused with SQLSTATE 42501 and change nothing: not the audit
log, not any node's watermark, not the inbox. Where a hole needs a grant a DBA might give by
mistake (TEMP on the database, CREATE on the schema), the test gives it, so the functions'
own defences are tested, not only the missing grant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy.engine import make_url

from syncd.core.batch import UPSERT, Batch, Change, make_batch
from syncd.core.canonical import canonical
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import run_syncd, write_config
from tests.integration.test_apply import STAMP

A, B = "city-3301", "city-3302"


@dataclass(frozen=True)
class Hub:
    conf: Path
    admin: str  # psycopg URL of the superuser that ran init
    dbname: str
    urls: dict[str, str]  # node id -> psycopg URL with its login role
    roles: dict[str, str]  # node id -> login role


def _psycopg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _add_nodes(conf: Path) -> tuple[dict[str, str], dict[str, str]]:
    urls, roles = {}, {}
    for node in (A, B):
        added = json.loads(run_syncd(conf, "node", "add", node, "--json", check=True).stdout)
        url = make_url(added["hub_url"])
        assert url.username
        urls[node] = _psycopg_url(added["hub_url"])
        roles[node] = url.username
    return urls, roles


@pytest.fixture
def hub(tmp_path: Path, pg_url: str) -> Hub:
    """A hub made by `syncd init`, with nodes A and B registered by `syncd node add`."""
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", pg_url)
    run_syncd(conf, "init", check=True)
    urls, roles = _add_nodes(conf)
    return Hub(conf, _psycopg_url(pg_url), make_url(pg_url).database or "", urls, roles)


def forged(node: str = B, seq: int = 900000) -> Batch:
    row = {"loan_id": "FORGED", "balance": 10**9}
    return make_batch(node, seq, seq, [Change(seq, "loans", UPSERT, {"loan_id": "FORGED"}, row)])


def submit(conn: psycopg.Connection[Any], batch: Batch) -> str:
    rows = batch.wire_json or canonical([c.wire() for c in batch.changes])
    found = conn.execute(
        "SELECT syncd_submit_payload(%s, %s, %s, %s, %s::text, %s::jsonb)",
        (
            batch.node_id,
            batch.first_seq,
            batch.last_seq,
            batch.checksum,
            rows,
            canonical((batch.policy or STAMP).wire()),
        ),
    ).fetchone()
    assert found is not None
    # 'accepted:<batch id>': the id is the hub's, the caller only needs the verdict.
    return str(found[0]).partition(":")[0]


def state(hub: Hub) -> dict[str, Any]:
    """Everything an impersonation could move: audit log, watermarks, inbox."""
    with psycopg.connect(hub.admin) as conn:

        def rows(query: str) -> list[tuple[Any, ...]]:
            return conn.execute(query).fetchall()

        return {
            "audit": rows("SELECT count(*), max(entry_id) FROM syncd_audit"),
            "nodes": rows(
                "SELECT node_id, received_seq, applied_seq, last_seen_at FROM syncd_node "
                "ORDER BY node_id"
            ),
            "batches": rows(
                "SELECT batch_id, node_id, first_seq, last_seq, checksum, status "
                "FROM syncd_inbox_batch ORDER BY batch_id"
            ),
            "rows": rows("SELECT count(*) FROM syncd_inbox_row"),
            "events": rows("SELECT event_id, node_id, kind FROM syncd_inbox_event ORDER BY 1"),
        }


def admin_grant(hub: Hub, statement: str, **names: str) -> None:
    """A DBA's mistake: give node A's role a privilege it must not need."""
    idents = {k: sql.Identifier(v) for k, v in {"db": hub.dbname, **names}.items()}
    with psycopg.connect(hub.admin, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(**idents))


@pytest.fixture
def as_a(hub: Hub) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(hub.urls[A], autocommit=True)
    yield conn
    conn.close()


def assert_refused_as_b(conn: psycopg.Connection[Any], hub: Hub, before: dict[str, Any]) -> None:
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        submit(conn, forged())
    assert refused.value.sqlstate == "42501"
    assert "may not submit batches for node city-3302" in str(refused.value)
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT syncd_node_watermark(%s)", (B,))
    # Nor read or acknowledge B's insights (the downward path).
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM syncd_fetch_insights(%s, 0, 10)", (B,))
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT syncd_ack_insights(%s, 0)", (B,))
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT syncd_insight_summary(%s)", (B,))
    assert state(hub) == before


def assert_a_still_submits(hub: Hub, before: dict[str, Any]) -> None:
    """A's own batch goes in, and moves A's watermark and nothing of B's."""
    with psycopg.connect(hub.urls[A], autocommit=True) as conn:
        seq = max(n[1] for n in before["nodes"] if n[0] == A) + 1
        assert submit(conn, make_batch(A, seq, seq + 4, [])) == "accepted"
        assert conn.execute("SELECT syncd_node_watermark(%s)", (A,)).fetchone() == (seq + 4,)
    after = state(hub)
    assert [n for n in after["nodes"] if n[0] != A] == [n for n in before["nodes"] if n[0] != A]
    assert after["audit"] == before["audit"]


def test_node_roles_hold_no_more_than_execute(hub: Hub, as_a: psycopg.Connection[Any]) -> None:
    """No attribute, membership, TEMP or CREATE: a node cannot make objects at all."""
    with psycopg.connect(hub.admin) as admin:
        for role in hub.roles.values():
            found = admin.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                "rolinherit, rolcanlogin, "
                "(SELECT count(*) FROM pg_auth_members WHERE member = r.oid), "
                "has_database_privilege(r.oid, current_database(), 'TEMP'), "
                "has_database_privilege(r.oid, current_database(), 'CREATE'), "
                "(SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace "
                " WHERE has_schema_privilege(r.oid, oid, 'CREATE')) "
                "FROM pg_roles r WHERE rolname = %s",
                (role,),
            ).fetchone()
            assert found == (False, False, False, False, False, False, True, 0, False, False, None)
        # PUBLIC is every role: had it kept TEMP, revoking it from the node would do nothing.
        public = admin.execute(
            "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = current_database() AND a.grantee = 0 ORDER BY 1"
        ).fetchall()
        assert public == [("CONNECT",)]
    with pytest.raises(errors.InsufficientPrivilege):
        as_a.execute("CREATE TEMP TABLE pg_roles (rolname name, rolsuper boolean)")
    with pytest.raises(errors.InsufficientPrivilege):
        as_a.execute("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    with pytest.raises(errors.InsufficientPrivilege):
        as_a.execute("CREATE SCHEMA mine")


def definers(hub: Hub) -> list[tuple[Any, ...]]:
    with psycopg.connect(hub.admin) as admin:
        return admin.execute(
            "SELECT p.oid::regprocedure::text, p.proconfig, "
            "has_function_privilege('public', p.oid, 'EXECUTE') "
            "FROM pg_proc p WHERE p.prosecdef ORDER BY 1"
        ).fetchall()


def test_a_node_reads_only_its_own_insights(hub: Hub, as_a: psycopg.Connection[Any]) -> None:
    """Sovereignty downward: A's role fetches A's batches and nothing else, and has no right
    on the tables; a forged acknowledgement past what was built is refused."""
    with psycopg.connect(hub.admin, autocommit=True) as admin:
        for node in (A, B):
            admin.execute(
                "INSERT INTO syncd_downlink_node (node_id, built_seq, acked_seq) VALUES (%s, 1, 0)",
                (node,),
            )
            admin.execute(
                "INSERT INTO syncd_downlink_batch VALUES (%s, 1, 0, 'c', %s, now())",
                (node, f"[] of {node}"),
            )
    rows = as_a.execute("SELECT seq, payload FROM syncd_fetch_insights(%s, 0, 10)", (A,)).fetchall()
    assert rows == [(1, f"[] of {A}")]
    for table in ("syncd_downlink_batch", "syncd_insight_sent", "syncd_downlink_node"):
        with pytest.raises(errors.InsufficientPrivilege):
            as_a.execute(f"SELECT * FROM {table}")
    with pytest.raises(errors.UndefinedObject, match="never built"):
        as_a.execute("SELECT syncd_ack_insights(%s, 2)", (A,))
    assert as_a.execute("SELECT syncd_ack_insights(%s, 1)", (A,)).fetchone() == (1,)
    with psycopg.connect(hub.admin) as admin:
        acked = admin.execute(
            "SELECT node_id, acked_seq FROM syncd_downlink_node ORDER BY node_id"
        ).fetchall()
    assert acked == [(A, 1), (B, 0)]


def test_every_security_definer_function_is_pinned_also_after_reinit(hub: Hub) -> None:
    """Each SECURITY DEFINER function: pg_temp last, no writable schema, no EXECUTE for PUBLIC.

    And `syncd init` on an existing hub (here one set back to the old search_path and TEMP for
    PUBLIC) brings both back.
    """
    pinned = ["search_path=pg_catalog, pg_temp"]
    expected = [
        ("syncd_ack_insights(text,bigint)", pinned, False),
        ("syncd_caller_may_act_for(text)", pinned, False),
        ("syncd_fetch_insights(text,bigint,integer)", pinned, False),
        ("syncd_insight_summary(text)", pinned, False),
        ("syncd_node_report(text)", pinned, False),
        ("syncd_node_watermark(text)", pinned, False),
        ("syncd_receive_batch(text,bigint,bigint,text,text,jsonb,jsonb)", pinned, False),
        (
            "syncd_reconcile_columns(text,text,text[],text[],integer[],text[],text[],boolean)",
            pinned,
            False,
        ),
        (
            "syncd_reconcile_digests(text,text,text[],text[],integer[],text[],bigint,bigint,bigint[])",
            pinned,
            False,
        ),
        (
            "syncd_reconcile_leaf(text,text,text[],text[],integer[],text[],bigint,bigint[])",
            pinned,
            False,
        ),
        ("syncd_reconcile_pending(text,text,text[],text[])", pinned, False),
        ("syncd_reconcile_record(text,jsonb)", pinned, False),
        ("syncd_submit_batch(text,bigint,bigint,text,jsonb)", pinned, False),
        ("syncd_submit_batch(text,bigint,bigint,text,jsonb,jsonb)", pinned, False),
        ("syncd_submit_payload(text,bigint,bigint,text,text,jsonb)", pinned, False),
    ]
    assert definers(hub) == expected
    with psycopg.connect(hub.admin, autocommit=True) as admin:
        for name, _, _ in expected:
            admin.execute(f"ALTER FUNCTION {name} SET search_path = pg_catalog, public")
        admin.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(sql.Identifier(hub.dbname))
        )
    run_syncd(hub.conf, "init", check=True)
    assert definers(hub) == expected
    with (
        psycopg.connect(hub.urls[A], autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE TEMP TABLE t (i int)")


def test_the_node_guard_is_pinned_and_no_node_calls_it(
    hub: Hub, as_a: psycopg.Connection[Any]
) -> None:
    """syncd_check_caller, the guard the downlink functions call (as their owner): its
    search_path pinned like theirs, and no EXECUTE for PUBLIC or a node's role."""
    with psycopg.connect(hub.admin) as admin:
        row = admin.execute(
            "SELECT p.proconfig, p.prosecdef, has_function_privilege('public', p.oid, 'EXECUTE')"
            " FROM pg_proc p WHERE p.oid = 'syncd_check_caller(text)'::regprocedure"
        ).fetchone()
    assert row == (["search_path=pg_catalog, pg_temp"], False, False)
    with pytest.raises(errors.InsufficientPrivilege):
        as_a.execute("SELECT syncd_check_caller(%s)", (A,))


def test_temporary_pg_roles_cannot_make_a_node_superuser(
    hub: Hub, as_a: psycopg.Connection[Any]
) -> None:
    """Issue 10's attack: a temporary pg_roles, searched before pg_catalog, says 'superuser'."""
    admin_grant(hub, "GRANT TEMPORARY ON DATABASE {db} TO {a}", a=hub.roles[A])
    before = state(hub)
    as_a.execute("CREATE TEMP TABLE pg_roles (rolname name, rolsuper boolean)")
    as_a.execute("INSERT INTO pg_roles VALUES (current_user, true)")
    assert_refused_as_b(as_a, hub, before)
    assert_a_still_submits(hub, before)


def test_temporary_syncd_tables_are_not_read(hub: Hub, as_a: psycopg.Connection[Any]) -> None:
    """Temporary syncd_node / syncd_inbox_* that register A's role as B divert nothing."""
    admin_grant(hub, "GRANT TEMPORARY ON DATABASE {db} TO {a}", a=hub.roles[A])
    before = state(hub)
    as_a.execute(
        "CREATE TEMP TABLE syncd_node (node_id text, role_name text, received_seq bigint, "
        "last_seen_at timestamp)"
    )
    as_a.execute("INSERT INTO syncd_node VALUES (%s, current_user, 0, NULL)", (B,))
    as_a.execute(
        "CREATE TEMP TABLE syncd_inbox_batch (batch_id bigserial, node_id text, first_seq bigint, "
        "last_seq bigint, row_count int, checksum text, received_at timestamp, status text)"
    )
    as_a.execute(
        "CREATE TEMP TABLE syncd_inbox_row (batch_id bigint, ord int, seq bigint, "
        "table_name text, op text, row_key jsonb, row_data jsonb)"
    )
    as_a.execute(
        "CREATE TEMP TABLE syncd_inbox_event (node_id text, kind text, first_seq bigint, "
        "last_seq bigint, checksum text, reason text, at timestamp)"
    )
    assert_refused_as_b(as_a, hub, before)
    assert_a_still_submits(hub, before)


def test_trojan_operators_and_functions_in_a_writable_schema(
    hub: Hub, as_a: psycopg.Connection[Any]
) -> None:
    """`=` made always true for the types the functions compare, and shadowing functions."""
    with pytest.raises(errors.InsufficientPrivilege):
        as_a.execute("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    admin_grant(hub, "GRANT CREATE ON SCHEMA public TO {a}", a=hub.roles[A])
    before = state(hub)
    # syncd_node.node_id and role_name are varchar; the functions compare them with text
    # (p_node) and name (session_user). pg_catalog only has text = text and name = name, so an
    # exact-type operator found on the search path wins over them.
    for right in ("text", "name"):
        as_a.execute(
            f"CREATE FUNCTION public.trojan_eq(varchar, {right}) RETURNS boolean "
            "LANGUAGE sql IMMUTABLE AS 'SELECT true'"
        )
        as_a.execute(
            f"CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = {right}, "
            "FUNCTION = public.trojan_eq)"
        )
    for signature, body in (
        ("pg_has_role(name, name, text)", "SELECT true"),
        ("pg_has_role(name, oid, text)", "SELECT true"),
        ("syncd_caller_may_act_for(varchar)", "SELECT true"),
        ("jsonb_array_length(jsonb)", "SELECT 0"),
    ):
        returns = "int" if body == "SELECT 0" else "boolean"
        as_a.execute(
            f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE sql AS '{body}'"
        )
    as_a.execute("SET search_path = public, pg_catalog")  # the caller's path does not count
    assert_refused_as_b(as_a, hub, before)
    # The trojans must not widen A's own submission to every node's row either.
    assert_a_still_submits(hub, before)


def test_set_role_cannot_take_another_identity(hub: Hub, as_a: psycopg.Connection[Any]) -> None:
    """A cannot become B or the hub's owner; and even as a member of B it is still A."""
    with psycopg.connect(hub.admin) as admin:
        found = admin.execute(
            "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'syncd_submit_batch'"
        ).fetchone()
    assert found is not None
    for role in (hub.roles[B], found[0]):
        with pytest.raises(errors.InsufficientPrivilege):
            as_a.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        with pytest.raises(errors.InsufficientPrivilege):
            as_a.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role)))
    # SET ROLE changes current_user, never session_user, which is what the functions check.
    admin_grant(hub, "GRANT {b} TO {a}", a=hub.roles[A], b=hub.roles[B])
    before = state(hub)
    as_a.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(hub.roles[B])))
    assert as_a.execute("SELECT current_user").fetchone() == (hub.roles[B],)
    assert_refused_as_b(as_a, hub, before)


def test_rotation_grants_nothing(hub: Hub) -> None:
    """`node rotate` changes the password only: no TEMP, CREATE or attribute comes back."""
    proc = run_syncd(hub.conf, "node", "rotate", A, "--json", check=True)
    url = _psycopg_url(json.loads(proc.stdout)["hub_url"])
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE t (i int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.t (i int)")
        assert conn.execute("SELECT syncd_node_watermark(%s)", (A,)).fetchone() == (0,)
    with psycopg.connect(hub.admin) as admin:
        found = admin.execute(
            "SELECT rolinherit, has_database_privilege(oid, current_database(), 'TEMP') "
            "FROM pg_roles WHERE rolname = %s",
            (hub.roles[A],),
        ).fetchone()
    assert found == (False, False)


@pytest.fixture
def owned_hub(tmp_path: Path, pg_admin: str) -> Iterator[tuple[Path, str]]:
    """A hub database owned by a role that is not a superuser (CREATEROLE, for `node add`)."""
    name = create_pg_database(pg_admin)
    # Named like the node roles, so drop_pg_database drops it with them.
    owner = f"syncd_owner_{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    try:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        base = make_url(pg_admin.replace("postgresql://", "postgresql+psycopg://", 1))
        url = base.set(username=owner, database=name).render_as_string(hide_password=False)
        yield write_config(tmp_path / "hub.toml", "hub-33", "hub", url), url
    finally:
        drop_pg_database(pg_admin, name)  # drops the node roles and the owner (same tag)


def test_hub_owner_keeps_temp_to_apply(owned_hub: tuple[Path, str]) -> None:
    """PUBLIC loses TEMP, the database's owner keeps it: apply stages rows in temp tables."""
    conf, url = owned_hub
    run_syncd(conf, "init", check=True)
    urls, _ = _add_nodes(conf)
    row = {
        "loan_id": "L1",
        "customer_id": "C1",
        "product": "mortgage",
        "principal": "1000.00",
        "balance": "900.00",
        "five_class": "normal",
        "overdue_days": 0,
        "issued_on": "2021-06-01",
        "maturity_on": "2051-06-01",
        "updated_at": "2026-03-01T09:00:00",
    }
    with psycopg.connect(urls[A], autocommit=True) as conn:
        batch = make_batch(A, 1, 1, [Change(1, "loans", UPSERT, {"loan_id": "L1"}, row)])
        assert submit(conn, batch) == "accepted"
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE t (i int)")
    run_syncd(conf, "sync", "--once", check=True)
    with psycopg.connect(_psycopg_url(url)) as conn:
        assert conn.execute("SELECT status FROM syncd_inbox_batch").fetchall() == [("applied",)]
        assert conn.execute("SELECT loan_id FROM loans").fetchall() == [("L1",)]
        public = conn.execute(
            "SELECT has_database_privilege('public', current_database(), 'TEMP'), "
            "has_database_privilege(current_user, current_database(), 'TEMP')"
        ).fetchone()
    assert public == (False, True)
