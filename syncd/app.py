"""The composition root: a node's policy, engines and pusher built once, and its commands.

`Node.open(settings)` is where a process becomes a city or a hub node: it loads the policy,
opens the node's engine (and a city's engine to its hub) and wires the pusher. The daemon
runs its `cycle`; the CLI's commands take it (or the settings) and return data. `init`
and `schema check` are here too: they are the commands that span both sides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from syncd.city import capture, crm, insights, repair
from syncd.city.egress import EgressReport, egress_report
from syncd.city.push import Pusher, PushResult
from syncd.city.reconcile import (
    DEFAULT_LIMIT,
    ReconcileHub,
    ReconcileReport,
    reconcile_table,
    selected_tables,
)
from syncd.city.status import CityStatus, city_status, with_hub_report
from syncd.core.errors import SyncdError, UsageError
from syncd.core.logs import get_logger
from syncd.core.policy import Policy, SchemaProblem, load_policy
from syncd.core.settings import Settings
from syncd.hub import agreement, downlink, inbox, reports, search
from syncd.hub.apply import ApplySummary, apply_pending, refresh_statistics
from syncd.hub.inbox import HubInbox
from syncd.hub.reconcile import HubReconcile, NodeReconcile, last_results
from syncd.hub.status import HubStatus, hub_status
from syncd.store import hub_tables as schema_hub
from syncd.store import migrate
from syncd.store.db import cancel_running, create_engine, describe_failure, translated
from syncd.store.health import Health, error_record, write_error

log = get_logger("syncd.node")
# Batches per apply slice: a stop request is seen between slices.
APPLY_SLICE = 50


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
    warnings: tuple[str, ...] = field(default_factory=tuple)


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
        if insights.applies(policy):
            insights.install(conn, policy)
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
        agreement.record_policy(conn, policy)
        reports.install_views(conn, policy)
        search_warning = search.install_indexes(conn, policy)
    return InitReport(
        node_id=settings.node.id,
        role="hub",
        crm_tables_created=False,
        hub_tables=installed.tables,
        hub_columns_added=installed.columns_added,
        warnings=(search_warning,) if search_warning else (),
    )


def check_node(settings: Settings) -> list[SchemaProblem]:
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


def node_status(settings: Settings) -> CityStatus | HubStatus:
    """`syncd status` of the node the settings describe."""
    return read_city_status(settings) if settings.is_city else read_hub_status(settings)


def read_city_status(settings: Settings) -> CityStatus:
    """A city's status, with what its hub says of it (refused rows, a policy problem)."""
    with Node.open(settings) as node:
        status = city_status(settings, node.engine)
        assert node.pusher is not None
        try:
            report, error = node.pusher.hub.report(), None
        except SyncdError as exc:
            report, error = None, str(exc)
        return with_hub_report(status, report, error)


def read_egress(
    settings: Settings, since: dt.datetime | None, until: dt.datetime | None
) -> EgressReport:
    """`syncd audit egress`: the city's egress ledger for a period, checked against its policy.

    Reads the city's own database only: an auditor does not need the hub to be reachable.
    """
    if not settings.is_city:
        raise UsageError(
            f"audit egress runs at a city; {settings.node.id} is a {settings.node.role.value} node"
        )
    policy = load_policy(settings.policy.path)
    engine = create_engine(settings.database.url, **settings.engine_options)
    try:
        with engine.connect() as conn:
            return egress_report(
                conn, settings.node.id, policy, str(settings.policy.path), since, until
            )
    finally:
        engine.dispose()


def read_hub_status(settings: Settings) -> HubStatus:
    with Node.open(settings) as node:
        return hub_status(settings, node.engine)


class Observer(Protocol):
    """What watches a node's cycles (the daemon's metrics); every method is optional work."""

    def pushed(self, result: PushResult, seconds: float) -> None: ...

    def applied(self, part: ApplySummary) -> None: ...

    def apply_finished(self, seconds: float) -> None: ...

    def cycle_failed(self) -> None: ...

    def cycle_succeeded(self) -> None: ...


@dataclass
class Node:
    """The long-lived parts of a node: settings, policy, engines, pusher, health.

    A hub's policy is read when first needed: the commands that only read syncd's own tables
    (audit verify, quarantine list, node list…) must work while the policy file is broken —
    an auditor verifying the chain should not depend on it. A city needs it to push.
    """

    settings: Settings
    engine: Engine
    pusher: Pusher | None = None
    reconciler: ReconcileHub | None = None
    health: Health = field(default_factory=Health)
    observer: Observer | None = None
    # Whether the database may hold a failure record to clear: unknown at start (a failure
    # from before a restart), so the first success clears it.
    _recorded_error: bool = True
    _policy: Policy | None = None
    # A hub records the policy it applies with before its first cycle (cities' batches are
    # checked against it); `init` records it too.
    _policy_recorded: bool = False

    @classmethod
    def open(cls, settings: Settings) -> Node:
        engine = create_engine(settings.database.url, **settings.engine_options)
        node = cls(settings, engine)
        if settings.is_city:
            assert settings.hub.url is not None
            hub = HubInbox(settings.hub.url, settings.node.id, **settings.engine_options)
            node.pusher = Pusher(settings, node.policy, engine, hub)
            node.reconciler = HubReconcile(hub, node.policy)
        return node

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = load_policy(self.settings.policy.path)
        return self._policy

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.hub.close()
        self.engine.dispose()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def engines(self) -> list[Engine]:
        return [self.engine] + ([self.pusher.hub.engine] if self.pusher is not None else [])

    def status(self) -> CityStatus | HubStatus:
        """This node's `syncd status`, on its own engine."""
        if self.settings.is_city:
            return city_status(self.settings, self.engine)
        return hub_status(self.settings, self.engine)

    def cycle(
        self, stop: threading.Event | None = None, *, retry_resting: bool = False
    ) -> dict[str, Any]:
        """One push (city) or apply (hub) cycle; `stop` ends it between batches.

        Its failure is recorded (`syncd.store.health`) before it is raised, so `status` shows
        it while the caller retries; the next success clears it. `retry_resting` (hub) tries
        the cities whose batches failed now, without waiting for their backoff.
        """
        try:
            if self.pusher is not None:
                result = self._push(stop)
            else:
                result = self._apply(stop, retry_resting)
        except Exception as exc:
            self._failed(exc)
            raise
        self._succeeded()
        return result

    def _failed(self, exc: BaseException) -> None:
        record = error_record(exc)
        self.health.failed(record["message"])
        if self.observer is not None:
            self.observer.cycle_failed()
        try:
            write_error(self.engine, self.settings.is_city, record)
            self._recorded_error = True
        except SyncdError as unrecorded:
            # The node's own database is what fails: status cannot read it either, and says so.
            log.warning("failure_not_recorded", error=str(unrecorded))

    def _succeeded(self) -> None:
        self.health.succeeded()
        if self.observer is not None:
            self.observer.cycle_succeeded()
        if self._recorded_error:
            write_error(self.engine, self.settings.is_city, None)
            self._recorded_error = False

    def _push(self, stop: threading.Event | None) -> dict[str, Any]:
        assert self.pusher is not None
        started = time.monotonic()
        res = self.pusher.push_once(stop=stop)
        if self.observer is not None:
            self.observer.pushed(res, time.monotonic() - started)
        result: dict[str, Any] = {
            "role": "city",
            "batches": res.batches,
            "rows": res.rows,
            "covered": res.covered,
            "acked_seq": res.acked_seq,
        }
        if self.settings.downlink.enabled and insights.applies(self.policy):
            result["downlink"] = self._pull()
        return result

    def _pull(self) -> dict[str, Any]:
        """Apply the province's insights for this city. Its failure is recorded for `status`
        and logged, and does not fail the push cycle: upward sync goes on regardless."""
        assert self.pusher is not None
        try:
            got = insights.pull(self.engine, self.pusher.hub, self.policy, self.settings.node.id)
        except SyncdError as exc:
            log.error("downlink_failed", error=str(exc))
            insights.record_error(self.engine, str(exc))
            return {"error": str(exc)}
        return dataclasses.asdict(got)

    def _apply(self, stop: threading.Event | None, retry_resting: bool) -> dict[str, Any]:
        started = time.monotonic()
        if not self._policy_recorded:
            with translated("recording the hub's policy"), self.engine.begin() as conn:
                agreement.record_policy(conn, self.policy)
            self._policy_recorded = True
        parts = []
        while True:  # in slices, so a stop request is seen between batches
            part = apply_pending(
                self.engine,
                self.policy,
                max_batches=APPLY_SLICE,
                max_backoff=self.settings.sync.retry_max_wait_seconds,
                retry_resting=retry_resting,
                stop=stop,
            )
            retry_resting = False  # once: a node failing again rests for its backoff
            parts.append(part)
            if self.observer is not None:
                self.observer.applied(part)
            if part.batches + part.batches_refused < APPLY_SLICE or (
                stop is not None and stop.is_set()
            ):
                break
        summary = _summed(parts)
        summary["analyzed"] = refresh_statistics(self.engine, self.policy, summary["tables"])
        if self.observer is not None:
            self.observer.apply_finished(time.monotonic() - started)
        return {"role": "hub", **summary}

    def publish_if_due(self) -> dict[str, Any] | None:
        """Build the cities' insight batches if batches were applied since the last build (or
        none was ever made); None when there was nothing to do or publishing is off.

        The hub daemon runs this as its own job, every `[downlink] publish_interval_seconds`,
        so a long build at a million customers never holds up the apply cycle.
        """
        down = self.settings.downlink
        if not down.enabled:
            return None
        with translated("reading when insights were last built"), self.engine.connect() as c:
            due = downlink.due(c)
            c.rollback()
        return self.publish() if due else None

    def publish(self, nodes: list[str] | None = None) -> dict[str, Any]:
        """Build the insight batches of every city (or of `nodes`); failures go to `status`."""
        try:
            res = downlink.publish(
                self.engine, self.policy, self.settings.report, self.settings.downlink, nodes
            )
        except SyncdError as exc:
            log.error("downlink_publish_failed", error=str(exc))
            downlink.record_error(self.engine, str(exc))
            return {"error": str(exc)}
        failed = "; ".join(f"{n}: {e}" for n, e in sorted(res.failed.items()))
        downlink.record_error(self.engine, failed or None)
        return dataclasses.asdict(res)

    def trim(self) -> int:
        return self.pusher.trim() if self.pusher is not None else 0

    def cancel_running(self) -> int:
        """Interrupt the statements this node's jobs are running (shutdown past its grace)."""
        return sum(cancel_running(e) for e in self.engines())

    def ready(self) -> tuple[bool, str]:
        """/readyz: the node's database answers and its last cycle did not fail."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
        except Exception as exc:
            return False, f"database unreachable: {describe_failure(exc)}"
        if self.health.failing:
            return False, f"last cycle failed: {self.health.last_error}"
        return True, "ok"


def reconcile(
    settings: Settings,
    tables: list[str] | None = None,
    show_values: bool = False,
    repair_drift: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> ReconcileReport:
    """`syncd reconcile` at a city: compare, optionally repair (and push), record at the hub."""
    if not settings.is_city:
        raise UsageError(
            "reconcile compares a city with its hub: run it at a city (at the hub: --all-nodes)"
        )
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit}")
    with Node.open(settings) as node:
        assert node.reconciler is not None
        hub = node.reconciler
        specs = selected_tables(node.policy, tables or [])
        watermark = hub.watermark()
        report = ReconcileReport(settings.node.id)
        for spec in specs:
            report.tables.append(
                reconcile_table(node.engine, hub, node.policy, spec, watermark, show_values, limit)
            )
        if not tables and settings.downlink.enabled and insights.applies(node.policy):
            assert node.pusher is not None
            report.insights = insights.reconcile(node.engine, node.pusher.hub, node.policy)
        if repair_drift and not report.in_sync:
            report.repaired = repair.repair(node.engine, hub, node.policy, report)
            if report.repaired:
                report.pushed_batches = int(node.cycle()["batches"])
        hub.record(report.summary())
        return report


def reconcile_results(settings: Settings, node_id: str | None = None) -> list[NodeReconcile]:
    """`syncd reconcile --all-nodes` at the hub: each city's last recorded reconcile."""
    if settings.is_city:
        raise UsageError("--all-nodes runs at the hub; at a city, run reconcile without it")
    with (
        Node.open(settings) as node,
        translated("reading reconcile results"),
        node.engine.connect() as conn,
    ):
        return last_results(conn, node_id)


def _summed(parts: list[ApplySummary]) -> dict[str, Any]:
    """One cycle's apply slices as one summary: counts added, per-node results merged."""
    total: dict[str, Any] = {}
    by_node: dict[str, dict[str, int]] = {}
    failed: dict[str, str] = {}
    tables: dict[str, int] = {}
    for part in parts:
        for key, value in dataclasses.asdict(part).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
        for node, counts in part.by_node.items():
            mine = by_node.setdefault(node, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value
        failed.update(part.failed)
        for name, n in part.tables.items():
            tables[name] = tables.get(name, 0) + n
    total["waiting"] = parts[-1].waiting
    total["by_node"] = by_node
    total["failed"] = failed
    total["resting"] = list(parts[-1].resting)
    total["tables"] = tables
    return total
