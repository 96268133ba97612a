"""`syncd reconcile --repair`: re-send exactly the drifted keys, as a targeted snapshot.

Repairs take the one path every change takes: rows go into the changelog, the pusher filters,
batches and ships them, and the hub validates, applies and audits them like any change. A key
the hub lacks or holds with other values gets an 'I' image of the city's row (built as a
snapshot builds it, `syncd.city.triggers.row_image`); a key the hub holds but this city's
policy does not send gets a 'D' whose image is the hub's own version of the row, so the
filter columns the pusher checks for a delete are those the hub accepted — the filter
transition yields DELETE, as it did for the row when it was live.
"""

from __future__ import annotations

import decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.city.reconcile import CitySide, KeyState, ReconcileHub, ReconcileReport
from syncd.city.triggers import CAPTURE_CHANNEL, row_image
from syncd.core.policy import Policy
from syncd.core.reconcile import SEP, Col, Kind, Spec, spec_for
from syncd.store.city_tables import changelog
from syncd.store.db import translated
from syncd.store.dialect import dialect_for

CHUNK = 500


def _typed(col: Col, text: str | None) -> Any:
    """A canonical text back to the JSON value a capture trigger would have written."""
    if text is None:
        return None
    if col.kind is Kind.INT:
        return int(text)
    if col.kind is Kind.BOOL:
        return text == "t"
    if col.kind is Kind.LIST:
        return text.split(SEP) if text else []
    if col.kind is Kind.DEC:
        return str(decimal.Decimal(text))
    return text


def _reinserts(engine: Engine, policy: Policy, spec: Spec, keys: list[str]) -> int:
    table = policy.tables[spec.table]
    written = 0
    with translated(f"repairing {spec.table}"), engine.begin() as conn:
        digest = CitySide(conn, policy).table(spec)
        source, key_text = digest.source, digest.key_text
        for start in range(0, len(keys), CHUNK):
            rows = sa.select(
                sa.literal(spec.table, sa.String()),
                sa.literal("I", sa.String()),
                row_image(conn, source, table),
            ).where(key_text.in_(keys[start : start + CHUNK]))
            insert = changelog.insert().from_select(["table_name", "op", "row_image"], rows)
            written += int(conn.execute(insert.execution_options(preserve_rowcount=True)).rowcount)
        if written:
            dialect_for(conn).notify(conn, CAPTURE_CHANNEL)
    return written


def _deletes(engine: Engine, hub: ReconcileHub, spec: Spec, keys: list[str]) -> int:
    theirs = hub.columns(spec, keys, True)
    images = [
        {"table_name": spec.table, "op": "D", "row_image": _image(spec, theirs[k])}
        for k in keys
        if k in theirs
    ]
    if not images:
        return 0
    with translated(f"repairing {spec.table}"), engine.begin() as conn:
        conn.execute(changelog.insert(), images)
        dialect_for(conn).notify(conn, CAPTURE_CHANNEL)
    return len(images)


def _image(spec: Spec, values: dict[str, Any]) -> dict[str, Any]:
    return {c.name: _typed(c, values.get(c.name)) for c in spec.columns}


def repair(engine: Engine, hub: ReconcileHub, policy: Policy, report: ReconcileReport) -> int:
    """Queue the drifted keys of `report` for the pusher; returns how many changes it queued."""
    queued = 0
    for t in report.tables:
        spec = spec_for(policy.tables[t.table])
        resend = [k.text for k in t.keys if k.state in (KeyState.MISSING, KeyState.DIFFERENT)]
        extra = [k.text for k in t.keys if k.state is KeyState.EXTRA]
        if resend:
            queued += _reinserts(engine, policy, spec, resend)
        if extra:
            queued += _deletes(engine, hub, spec, extra)
    return queued
