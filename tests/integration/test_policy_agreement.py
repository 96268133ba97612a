"""Policy agreement (issue 12): a city whose public policy differs from the hub's is stopped
at submission, before anything is stored or applied, and both ends' `status` say why; rows the
hub refuses are counted and shown at both ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.app import Node, init_node, read_city_status, read_hub_status
from syncd.core.agreement import Stamp, differences, mismatch, refusal, stamp
from syncd.core.batch import UPSERT, Change, make_batch
from syncd.core.canonical import canonical
from syncd.core.errors import BatchRefused
from syncd.core.policy import load_policy
from syncd.hub.audit import Action
from syncd.hub.audit_query import query
from syncd.hub.inbox import HubInbox
from syncd.hub.nodes import register_node
from syncd.store.db import create_engine
from tests.conftest import POLICY
from tests.helpers import run_syncd, settings_for, write_config
from tests.integration.test_push import NOW, customer

CITY = "city-3301"


def policy_with_public(tmp_path: Path, table: str) -> Path:
    """The demo policy with one local table made public: a careless (or hostile) city's."""
    doc = yaml.safe_load(Path(POLICY).read_text(encoding="utf-8"))
    doc["tables"][table]["class"] = "public"
    path = tmp_path / f"policy-{table}-public.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def with_policy(config: Path, policy: Path) -> Path:
    text = config.read_text(encoding="utf-8").replace(f'path = "{POLICY}"', f'path = "{policy}"')
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
def hub_url(tmp_path: Path, db_url: str, pg_url_factory: Any) -> str:
    url: str = (
        f"sqlite:///{tmp_path / 'hub.db'}" if db_url.startswith("sqlite") else pg_url_factory()
    )
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", url)))
    engine = create_engine(url)
    register_node(engine, url, CITY, "3301")
    engine.dispose()
    return url


@pytest.fixture
def city_conf(tmp_path: Path, db_url: str, hub_url: str) -> Path:
    # On a cluster shared with other tests, give the gap guard time for their transactions.
    sync = {"gap_wait_seconds": 2.0}
    conf = write_config(tmp_path / "city.toml", CITY, "city", db_url, hub_url, sync=sync)
    init_node(settings_for(conf))
    return conf


def write_customer(conf: Path, cid: str) -> None:
    engine = create_engine(settings_for(conf).database.url)
    md = sa.MetaData()
    md.reflect(engine, only=["customers"])
    with engine.begin() as conn:
        conn.execute(md.tables["customers"].insert(), [customer(cid)])
    engine.dispose()


def refused_push(city: Path) -> BatchRefused:
    """Push until the hub refuses: on PostgreSQL the gap guard may hold the changes back for a
    cycle or two while other tests' transactions run on the same cluster."""
    with Node.open(settings_for(city)) as node:
        for _ in range(20):
            try:
                node.cycle()
            except BatchRefused as exc:
                return exc
    raise AssertionError("the hub never refused the city's batch")


def hub_rows(url: str, query_: str) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(query_))]
    engine.dispose()
    return rows


def test_a_city_making_a_local_table_public_is_stopped_and_told(
    tmp_path: Path, hub_url: str, city_conf: Path
) -> None:
    write_customer(city_conf, "C1")
    with_policy(city_conf, policy_with_public(tmp_path, "opportunities"))
    city = settings_for(city_conf)
    refused = refused_push(city_conf)
    why = "table opportunities is public in the city's policy but not in the hub's"
    assert why in str(refused)
    # Nothing of the batch was stored, so nothing can be applied.
    assert hub_rows(hub_url, "SELECT count(*) FROM syncd_inbox_batch") == [(0,)]
    assert hub_rows(hub_url, "SELECT count(*) FROM syncd_inbox_row") == [(0,)]

    hub_view = read_hub_status(settings_for(tmp_path / "hub.toml"))
    (node_view,) = hub_view.nodes
    assert not hub_view.healthy
    assert node_view.policy_problem is not None
    assert why in node_view.policy_problem
    assert any(CITY in p and why in p for p in hub_view.problems)
    city_view = read_city_status(city)
    assert not city_view.healthy
    assert any("the hub refuses this city's batches" in p and why in p for p in city_view.problems)

    # Shown by the real CLI at both ends, exit 1 (unhealthy).
    hub_cli = run_syncd(tmp_path / "hub.toml", "status", "--json")
    assert hub_cli.returncode == 1
    assert why in json.loads(hub_cli.stdout)["nodes"][0]["policy_problem"]
    city_cli = run_syncd(city_conf, "status")
    assert city_cli.returncode == 1
    assert why in city_cli.stderr

    # The hub's next cycle audits the refusal.
    with Node.open(settings_for(tmp_path / "hub.toml")) as hub:
        hub.cycle()
        with hub.engine.connect() as conn:
            refusals = query(conn, action=Action.BATCH_REFUSED)
    assert [e["node_id"] for e in refusals] == [CITY]
    assert why in refusals[0]["detail"]["reason"]

    # The city deploys the hub's policy again: its changelog was kept, the batch goes in and
    # the problem clears at both ends.
    city_conf.write_text(
        city_conf.read_text(encoding="utf-8").replace(
            str(tmp_path / "policy-opportunities-public.yaml"), str(POLICY)
        ),
        encoding="utf-8",
    )
    with Node.open(settings_for(city_conf)) as node:
        sent = [node.cycle()["rows"] for _ in range(20)]  # the gap guard may hold a cycle back
    assert sum(sent) == 1
    assert read_hub_status(settings_for(tmp_path / "hub.toml")).healthy
    assert read_city_status(settings_for(city_conf)).healthy
    fp = stamp(load_policy(POLICY)).fingerprint
    assert hub_rows(hub_url, "SELECT policy_fingerprint FROM syncd_inbox_batch") == [(fp,)]


def test_a_dropped_column_is_named(tmp_path: Path, hub_url: str, city_conf: Path) -> None:
    doc = yaml.safe_load(Path(POLICY).read_text(encoding="utf-8"))
    doc["tables"]["customers"]["exclude"] = [*doc["tables"]["customers"]["exclude"], "phone"]
    narrower = tmp_path / "narrow.yaml"
    narrower.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    write_customer(city_conf, "C1")
    with_policy(city_conf, narrower)
    refused = refused_push(city_conf)
    assert "column customers.phone is public in the hub's policy but not in the city's" in str(
        refused
    )


def test_refused_rows_are_counted_and_shown_at_both_ends(
    tmp_path: Path, hub_url: str, city_conf: Path
) -> None:
    """A city that sends a row of a local table (a defect, or a tampered city) under a policy
    the hub agrees with: the row is refused at apply, and both ends show it."""
    demo = stamp(load_policy(POLICY))
    row = {"opportunity_id": "O1", "customer_id": "C1", "updated_at": NOW.isoformat()}
    forged = make_batch(
        CITY, 1, 2, [Change(1, "opportunities", UPSERT, {"opportunity_id": "O1"}, row)], demo
    )
    city = settings_for(city_conf)
    with Node.open(city) as node:
        assert node.pusher is not None
        assert node.pusher.hub.submit(forged).status == "accepted"
    with Node.open(settings_for(tmp_path / "hub.toml")) as hub:
        assert hub.cycle()["refused"] == 1
    (node_view,) = read_hub_status(settings_for(tmp_path / "hub.toml")).nodes
    assert node_view.refused_rows == 1
    assert node_view.last_refused_reason is not None
    assert "opportunities" in node_view.last_refused_reason
    city_view = read_city_status(city)
    assert city_view.at_hub is not None
    assert city_view.at_hub["refused_rows"] == 1
    assert any("the hub refused 1 rows of this city" in w for w in city_view.warnings)
    assert city_view.healthy  # a warning: the city goes on


def test_an_old_city_without_a_stamp_is_refused_saying_why(
    tmp_path: Path, hub_url: str, city_conf: Path
) -> None:
    old = make_batch(CITY, 1, 1, [])  # what a city older than the agreement sends: no stamp
    with Node.open(settings_for(city_conf)) as node:
        assert node.pusher is not None
        result = node.pusher.hub.submit(old)
    assert result.status == "refused"
    assert result.reason is not None
    assert "runs a syncd older than its hub" in result.reason


def test_pg_old_five_argument_submit_is_refused(tmp_path: Path, pg_url_factory: Any) -> None:
    hub = pg_url_factory()
    init_node(settings_for(write_config(tmp_path / "hub.toml", "hub-33", "hub", hub)))
    engine = create_engine(hub)
    creds = register_node(engine, hub, CITY, "3301")
    engine.dispose()
    batch = make_batch(CITY, 1, 1, [])
    url = creds.hub_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT syncd_submit_batch(%s, %s, %s, %s, %s::jsonb)",
            (CITY, 1, 1, batch.checksum, "[]"),
        ).fetchone()
    assert found is not None
    assert str(found[0]).startswith("refused: the batch carries no policy")


# -- the PostgreSQL function and the Python path say the same thing --------------------------

NAMES = st.sampled_from(["a", "b", "c", "customers", "loans", "x_1"])
SHAPES = st.dictionaries(NAMES, st.lists(NAMES, max_size=5, unique=True), max_size=4)


@given(city=SHAPES, hub=SHAPES)
def test_differences_are_empty_exactly_when_the_shapes_agree(
    city: dict[str, list[str]], hub: dict[str, list[str]]
) -> None:
    same = {t: set(c) for t, c in city.items()} == {t: set(c) for t, c in hub.items()}
    found = differences(city, hub)
    assert (found == []) == same
    assert found == sorted(found)
    # Every table or column in one shape and not the other is named, nothing else.
    named = {line.split()[1] for line in found}
    expected = set(set(city) ^ set(hub)) | {
        f"{t}.{c}" for t in set(city) & set(hub) for c in set(city[t]) ^ set(hub[t])
    }
    assert named == expected


@settings(max_examples=60, deadline=None)
@given(city=SHAPES, hub=SHAPES, fp=st.text(max_size=70))
def test_pg_refusal_says_what_python_says(
    pg_functions: psycopg.Connection[Any],
    city: dict[str, list[str]],
    hub: dict[str, list[str]],
    fp: str,
) -> None:
    conn = pg_functions
    conn.execute(
        "INSERT INTO syncd_hub_state (key, value, updated_at) VALUES ('policy', %s::jsonb, now())"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (canonical({"fingerprint": "hub", "shape": hub}),),
    )
    sent = {"fingerprint": fp.replace("\x00", ""), "shape": city}
    found = conn.execute("SELECT syncd_policy_refusal(%s::jsonb)", (canonical(sent),)).fetchone()
    assert found is not None
    assert found[0] == refusal(sent, Stamp("hub", hub))


def test_malformed_and_long_refusals() -> None:
    hub = stamp(load_policy(POLICY))
    assert refusal({"fingerprint": 1, "shape": {}}, hub) == "the batch's policy stamp is malformed"
    assert refusal({"fingerprint": "f", "shape": {"t": "c"}}, hub) is not None
    many = {f"t{i:02}": ["c"] for i in range(25)}
    text = refusal({"fingerprint": "f", "shape": many}, None)
    assert text is not None
    assert "run `syncd init` at the hub" in text
    long = mismatch([f"line {i}" for i in range(25)])
    assert long.endswith("; and 15 more")
    assert "line 9" in long
    assert "line 10" not in long


def test_pg_init_grants_new_node_functions_to_existing_roles(
    tmp_path: Path, pg_url_factory: Any
) -> None:
    """A node registered before an upgrade gets the functions the upgrade added at `init`."""
    hub = pg_url_factory()
    conf = write_config(tmp_path / "hub.toml", "hub-33", "hub", hub)
    init_node(settings_for(conf))
    engine = create_engine(hub)
    creds = register_node(engine, hub, CITY, "3301")
    with engine.begin() as conn:  # as a role made by an older syncd: no syncd_node_report
        conn.exec_driver_sql(
            f'REVOKE EXECUTE ON FUNCTION syncd_node_report(text) FROM "{creds.role_name}"'
        )
    engine.dispose()
    inbox = HubInbox(creds.hub_url, CITY)
    try:
        with pytest.raises(BatchRefused, match="permission denied"):
            inbox.report()
        init_node(settings_for(conf))
        assert inbox.report()["refused_rows"] == 0
    finally:
        inbox.close()
