"""The hub's node registry: cities registered at the hub and their login roles.

On a PostgreSQL hub each node gets a login role of its own that may only call the inbox's
SECURITY DEFINER submission functions (`syncd.hub.inbox`), so a node can submit batches as
itself and do nothing else (guarantee 3). A SQLite hub has no roles: access is the file's.
A node whose batches fail to apply is recorded here too, and rests while it backs off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from syncd.core.errors import SyncdError, UsageError
from syncd.core.logs import get_logger
from syncd.core.redact import redact_url
from syncd.core.settings import NODE_ID_RE
from syncd.hub.audit import Action, AuditWriter
from syncd.store import hub_tables as h
from syncd.store.db import translated, utcnow
from syncd.store.dialect import dialect_for

log = get_logger("syncd.hub.nodes")


def hub_schema(conn: Connection) -> str:
    """The hub's schema (current at init, normally public) as a quoted identifier."""
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    return str(conn.dialect.identifier_preparer.quote_schema(str(schema)))


def _hub_database(conn: Connection) -> str:
    name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    return str(conn.dialect.identifier_preparer.quote(str(name)))


# What a node's role may ask about its own source records (sql/postgresql/reconcile_functions.sql).
RECONCILE_FUNCTIONS = (
    "syncd_reconcile_digests(text, text, text[], text[], int[], text[], bigint, bigint, bigint[])",
    "syncd_reconcile_leaf(text, text, text[], text[], int[], text[], bigint, bigint[])",
    "syncd_reconcile_columns(text, text, text[], text[], int[], text[], text[], boolean)",
    "syncd_reconcile_pending(text, text, text[], text[])",
    "syncd_reconcile_record(text, jsonb)",
)


def restrict_public(conn: Connection) -> None:
    """Take TEMP on the hub database and CREATE on the hub schema from PUBLIC (PostgreSQL).

    Every role is a member of PUBLIC, which holds TEMP on a new database, so revoking TEMP from
    a node role alone leaves it. The database's and the schema's owners keep their own rights
    (the hub's role needs TEMP: apply stages rows in temporary tables). Only an owner (or a
    superuser) can revoke; otherwise the grants stay and a warning names the statements.
    """
    db, schema = _hub_database(conn), hub_schema(conn)
    found = conn.execute(
        sa.text(
            "SELECT pg_catalog.has_database_privilege('public', d.oid, 'TEMPORARY'), "
            "pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE'), "
            "pg_catalog.has_schema_privilege('public', s.oid, 'CREATE'), "
            "pg_catalog.pg_has_role(current_user, s.nspowner, 'USAGE') "
            "FROM pg_catalog.pg_database d, pg_catalog.pg_namespace s "
            "WHERE d.datname = pg_catalog.current_database() "
            "AND s.nspname = pg_catalog.current_schema()"
        )
    ).one()
    kept = []
    for held, may, stmt in (
        (found[0], found[1], f"REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC"),
        (found[2], found[3], f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"),
    ):
        if held and may:
            conn.exec_driver_sql(stmt)
        elif held:
            kept.append(stmt)
    if kept:
        log.warning("hub_public_privileges_kept", run_as_owner="; ".join(kept))


@dataclass(frozen=True)
class NodeCredentials:
    node_id: str
    hub_url: str
    role_name: str | None
    sessions_ended: int = 0


def _checked_hub_url(hub_url: str) -> None:
    try:
        make_url(hub_url)
    except sa.exc.ArgumentError:
        raise UsageError(f"--hub-url: not a database URL: {redact_url(hub_url)}") from None


def _node_url(hub_url: str, role: str, password: str) -> str:
    """The hub URL a city uses: the hub's address with the node's own role and password."""
    url = make_url(hub_url).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


def _password_literal(conn: Connection, password: str) -> str:
    # DDL takes no bind parameters: the password goes in as a quoted literal via the driver.
    literal = sa.literal(password, sa.String()).compile(
        dialect=conn.dialect, compile_kwargs={"literal_binds": True}
    )
    return str(literal)


def role_name_for(conn: Connection, node_id: str) -> str:
    """A login role name unique to this node *and* this hub database (roles are cluster-wide)."""
    dbname = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    tag = hashlib.sha256(str(dbname).encode()).hexdigest()[:6]
    return f"syncd_{node_id.replace('-', '_')}_{tag}"


DISPLAY_NAME_MAX = 64


def checked_display_name(name: str | None) -> str | None:
    """A node's display name as stored: trimmed, 1 to 64 characters, no control characters."""
    if name is None:
        return None
    text = name.strip()
    if not text or len(text) > DISPLAY_NAME_MAX or not text.isprintable():
        raise UsageError(
            f"--name {name!r}: give 1 to {DISPLAY_NAME_MAX} printable characters, e.g. 杭州"
        )
    return text


def register_node(
    engine: Engine,
    hub_url: str,
    node_id: str,
    city_code: str | None,
    display_name: str | None = None,
) -> NodeCredentials:
    """Register a city at the hub; on PostgreSQL create its login role (password shown once).

    display_name is what reports show for the node (杭州); without one they show its id.
    """
    _checked_hub_url(hub_url)
    if not NODE_ID_RE.match(node_id):
        raise UsageError(
            f"node id {node_id!r}: use lowercase letters, digits and '-', starting with a letter"
        )
    display_name = checked_display_name(display_name)
    with translated("registering a node"), engine.begin() as conn:
        exists = conn.execute(
            sa.select(h.nodes.c.node_id).where(h.nodes.c.node_id == node_id)
        ).scalar()
        if exists is not None:
            raise UsageError(f"node {node_id} is already registered")
        role = None
        url = hub_url
        if dialect_for(conn).has_roles:
            role = role_name_for(conn, node_id)
            password = secrets.token_urlsafe(24)
            _create_role(conn, role, password)
            url = _node_url(hub_url, role, password)
        conn.execute(
            h.nodes.insert().values(
                node_id=node_id,
                city_code=city_code,
                display_name=display_name,
                role_name=role,
                registered_at=utcnow(),
            )
        )
        audit = AuditWriter(conn)
        detail: dict[str, Any] = {"city_code": city_code, "role": role}
        if display_name is not None:  # absent, not null: entries of older releases look alike
            detail["display_name"] = display_name
        audit.append(Action.NODE_REGISTERED, node_id=node_id, detail=detail)
        audit.flush()
    return NodeCredentials(node_id, url, role)


def rename_node(engine: Engine, node_id: str, display_name: str | None) -> str | None:
    """Set (or with None clear) a registered node's display name; returns the previous one.

    Audited as node_renamed with the old and the new name, like registration.
    """
    name = checked_display_name(display_name)
    with translated("renaming a node"), engine.begin() as conn:
        found = conn.execute(
            sa.select(h.nodes.c.display_name).where(h.nodes.c.node_id == node_id)
        ).first()
        if found is None:
            raise UsageError(f"node {node_id} is not registered at this hub (see `node list`)")
        previous = found[0]
        conn.execute(h.nodes.update().where(h.nodes.c.node_id == node_id).values(display_name=name))
        audit = AuditWriter(conn)
        audit.append(Action.NODE_RENAMED, node_id=node_id, detail={"from": previous, "to": name})
        audit.flush()
    return None if previous is None else str(previous)


def display_names(conn: Connection) -> dict[str, str]:
    """node_id -> display name of every registered node that has one (reports show these)."""
    n = h.nodes.c
    rows = conn.execute(sa.select(n.node_id, n.display_name).where(n.display_name.is_not(None)))
    return {str(r.node_id): str(r.display_name) for r in rows}


def city_names(conn: Connection) -> dict[str, str]:
    """city_code -> how reports show a home city: the display name of the node registered with
    that code (杭州), else the code itself."""
    shown = display_names(conn)
    n = h.nodes.c
    rows = conn.execute(sa.select(n.city_code, n.node_id).where(n.city_code.is_not(None)))
    return {str(r.city_code): shown.get(str(r.node_id), str(r.city_code)) for r in rows}


def rotate_credentials(engine: Engine, hub_url: str, node_id: str) -> NodeCredentials:
    """Give a registered node's login role a new password and end the role's open sessions.

    For a password that leaked or is due for rotation: the old one stops working at once,
    including for sessions opened with it (they are terminated), so the city's daemon fails to
    reconnect until its `hub.url` holds the new one. Audited as node_credentials_rotated.
    """
    _checked_hub_url(hub_url)
    with translated("rotating node credentials"), engine.begin() as conn:
        if not dialect_for(conn).has_roles:
            raise UsageError(
                "a SQLite hub has no node credentials to rotate: its cities write to its file, "
                "so access is the file's permissions"
            )
        role = conn.execute(
            sa.select(h.nodes.c.role_name).where(h.nodes.c.node_id == node_id)
        ).first()
        if role is None:
            raise UsageError(f"node {node_id} is not registered at this hub (see `node list`)")
        if role[0] is None:
            raise UsageError(f"node {node_id} has no login role at this hub")
        name = str(role[0])
        password = secrets.token_urlsafe(24)
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.exec_driver_sql(f"ALTER ROLE {quoted} PASSWORD {_password_literal(conn, password)}")
        audit = AuditWriter(conn)
        audit.append(Action.NODE_CREDENTIALS_ROTATED, node_id=node_id, detail={"role": name})
        audit.flush()
    # After the commit: a session ended earlier could log in again with the old password.
    with translated("ending the node's sessions"), engine.connect() as conn:
        ended = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE usename = :r AND pid <> pg_backend_pid()"
            ),
            {"r": name},
        ).scalar_one()
    return NodeCredentials(node_id, _node_url(hub_url, name, password), name, int(ended))


def _create_role(conn: Connection, role: str, password: str) -> None:
    """A login role that may only EXECUTE the submission and reconcile functions (guarantee 3).

    No attribute that reaches past them (superuser, createrole, …), NOINHERIT, no TEMP on the
    database and no CREATE anywhere: a node cannot create a temporary table, function or
    operator for the SECURITY DEFINER code to find. A role left from an earlier registration
    is reused only if it holds no such attribute and belongs to no other role.
    """
    prep = conn.dialect.identifier_preparer
    q_role = prep.quote(role)
    q_db, q_schema = _hub_database(conn), hub_schema(conn)
    existing = conn.execute(
        sa.text(
            "SELECT r.rolsuper OR r.rolreplication OR r.rolbypassrls OR EXISTS "
            "(SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid) "
            "FROM pg_catalog.pg_roles r WHERE r.rolname = :r"
        ),
        {"r": role},
    ).first()
    pw = _password_literal(conn, password)
    if existing is None:
        conn.exec_driver_sql(
            f"CREATE ROLE {q_role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            f"NOBYPASSRLS NOINHERIT PASSWORD {pw}"
        )
    elif existing[0]:
        raise UsageError(
            f"role {role} already exists with more rights than a node may have (superuser, "
            "replication, bypassrls or membership of another role): drop it, then add the node"
        )
    else:
        conn.exec_driver_sql(
            f"ALTER ROLE {q_role} LOGIN NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {pw}"
        )
    restrict_public(conn)
    conn.exec_driver_sql(f"REVOKE CREATE, TEMPORARY ON DATABASE {q_db} FROM {q_role}")
    conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {q_schema} FROM {q_role}")
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {q_db} TO {q_role}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {q_schema} TO {q_role}")
    grant_node_functions(conn, role)


# Everything a node's login role may do at a PostgreSQL hub: these SECURITY DEFINER functions,
# each answering for the caller's own node only. The five-argument submit is the one cities
# older than the policy agreement call; it refuses them, saying why.
NODE_FUNCTIONS = (
    "syncd_node_watermark(text)",
    "syncd_submit_batch(text, bigint, bigint, text, jsonb)",
    "syncd_submit_batch(text, bigint, bigint, text, jsonb, jsonb)",
    "syncd_submit_payload(text, bigint, bigint, text, text, jsonb)",
    "syncd_node_report(text)",
    "syncd_fetch_insights(text, bigint, integer)",
    "syncd_ack_insights(text, bigint)",
    "syncd_insight_summary(text)",
    *RECONCILE_FUNCTIONS,
)


def grant_node_functions(conn: Connection, role: str) -> None:
    """Let a node's role EXECUTE the node functions (again: `init` adds new ones to old roles)."""
    q_role, q_schema = conn.dialect.identifier_preparer.quote(role), hub_schema(conn)
    for signature in NODE_FUNCTIONS:
        conn.exec_driver_sql(f"GRANT EXECUTE ON FUNCTION {q_schema}.{signature} TO {q_role}")


def regrant_node_functions(conn: Connection) -> None:
    """Grant the node functions to every registered node's role that still exists."""
    roles = conn.execute(
        sa.text(
            "SELECT n.role_name FROM syncd_node n JOIN pg_catalog.pg_roles r "
            "ON r.rolname = n.role_name ORDER BY n.role_name"
        )
    ).scalars()
    for role in list(roles):
        grant_node_functions(conn, role)


def list_nodes(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(h.nodes).order_by(h.nodes.c.node_id)).mappings()
    return [dict(r) for r in rows]


# --- a node whose batches fail to apply ----------------------------------------------------

# What `syncd.hub.apply` writes on a node when its batch applies: that clears its failures.
HEALTHY: dict[str, Any] = {
    "failures": 0,
    "failing_since": None,
    "last_error": None,
    "last_error_at": None,
    "retry_at": None,
}


def backoff_seconds(failures: int, max_backoff: float) -> float:
    """Seconds before a node's next try after its `failures`-th failure in a row (jittered)."""
    base = min(max_backoff, 0.5 * 2.0 ** min(failures - 1, 30))
    return float(base * random.uniform(0.8, 1.0))


def record_node_failure(
    engine: Engine, node_id: str, message: str, max_backoff: float
) -> dt.datetime:
    """Record a failed apply on the node and when to try it again; returns that time.

    In its own transaction (the batch's rolled back). `status` and metrics show it until a
    batch of the node applies (`HEALTHY`).
    """
    n = h.nodes.c
    with translated("recording a node's apply failure"), engine.begin() as conn:
        found = conn.execute(
            sa.select(n.failures, n.failing_since).where(n.node_id == node_id).with_for_update()
        ).first()
        if found is None:
            raise SyncdError(f"node {node_id} is not registered at this hub")
        failures = int(found.failures or 0) + 1
        now = utcnow()
        retry_at = now + dt.timedelta(seconds=backoff_seconds(failures, max_backoff))
        conn.execute(
            h.nodes.update()
            .where(n.node_id == node_id)
            .values(
                failures=failures,
                failing_since=found.failing_since or now,
                last_error=message,
                last_error_at=now,
                retry_at=retry_at,
            )
        )
    return retry_at


def resting_nodes(engine: Engine) -> set[str]:
    """Nodes whose last apply failed and whose retry time has not come."""
    n = h.nodes.c
    with translated("reading node health"), engine.connect() as conn:
        rows = conn.execute(sa.select(n.node_id).where(n.retry_at > utcnow())).scalars()
        return {str(r) for r in rows}
