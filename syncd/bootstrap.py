"""`syncd init`: create or upgrade this node's tables and, on a city, reconcile capture."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from syncd.city import capture, crm
from syncd.core.policy import Policy, load_policy
from syncd.core.settings import Settings
from syncd.hub import inbox, reports
from syncd.store import hub_tables as schema_hub
from syncd.store import migrate
from syncd.store.db import create_engine, translated


@dataclass(frozen=True)
class InitReport:
    node_id: str
    role: str
    crm_tables_created: bool
    triggers_added: tuple[str, ...] = ()
    triggers_replaced: tuple[str, ...] = ()
    triggers_dropped: tuple[str, ...] = ()
    triggers_kept: tuple[str, ...] = ()
    hub_tables: tuple[str, ...] = field(default_factory=tuple)
    hub_columns_added: tuple[str, ...] = field(default_factory=tuple)


def init_node(settings: Settings, policy: Policy | None = None) -> InitReport:
    """Idempotently bring the node's database to what the config and policy say.

    The policy is loaded before anything is touched: a policy that fails to load never drops
    existing triggers. Everything happens in one transaction, so a failed init changes nothing.
    """
    policy = policy or load_policy(settings.policy.path)
    engine = create_engine(settings.database.url, **settings.engine_options)
    try:
        if settings.is_city:
            return _init_city(settings, policy, engine)
        return _init_hub(settings, policy, engine)
    finally:
        engine.dispose()


def _init_city(settings: Settings, policy: Policy, engine: Engine) -> InitReport:
    with translated("init"), engine.begin() as conn:
        migrate.upgrade(conn, "city")
        if settings.crm.create_schema:
            crm.create_crm_schema(conn, policy)
        report = capture.install_triggers(conn, policy, settings.database.lock_timeout_ms)
    return InitReport(
        node_id=settings.node.id,
        role="city",
        crm_tables_created=settings.crm.create_schema,
        triggers_added=report.added,
        triggers_replaced=report.replaced,
        triggers_dropped=report.dropped,
        triggers_kept=report.kept,
    )


def _init_hub(settings: Settings, policy: Policy, engine: Engine) -> InitReport:
    with translated("init"), engine.begin() as conn:
        migrate.upgrade(conn, "hub")
        installed = schema_hub.install(conn, policy)
        inbox.install_functions(conn)
        reports.install_views(conn, policy)
    return InitReport(
        node_id=settings.node.id,
        role="hub",
        crm_tables_created=False,
        hub_tables=installed.tables,
        hub_columns_added=installed.columns_added,
    )


def check_node(settings: Settings) -> list[crm.SchemaProblem]:
    """`schema check`: every problem between the policy and the live database."""
    policy = load_policy(settings.policy.path)
    engine = create_engine(settings.database.url, **settings.engine_options)
    try:
        with translated("schema check"), engine.connect() as conn:
            if settings.is_city:
                return crm.check_schema(conn, policy)
            return schema_hub.check(conn, policy)
    finally:
        engine.dispose()
