"""A CRM writer process for end-to-end tests: seeded random inserts, updates and deletes.

It writes with plain SQL through its own connection, never through syncd: capture must see
every writer of the CRM. Run: python -m tests.e2e.writer URL SEED SECONDS [PREFIX]
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
import sys
import time

import sqlalchemy as sa
from stdnum.cn import ric

from syncd.city.crm import crm_metadata
from syncd.core.policy import load_policy
from syncd.store.db import create_engine
from tests.conftest import POLICY

REGIONS = ["330102", "330106", "330203", "330302", "330402"]


def national_id(rng: random.Random, identity_pool: int) -> str:
    n = rng.randrange(identity_pool)  # a small pool: the same person turns up in many cities
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=n * 37 % 18000)
    body = f"{REGIONS[n % len(REGIONS)]}{birth:%Y%m%d}{n % 1000:03d}"
    return body + ric.calc_check_digit(body)


def main() -> None:
    url, seed, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else "C"
    rng = random.Random(seed)
    engine = create_engine(url)
    # The CRM's own table definitions (typed as the CRM declares them); the writes are plain
    # SQL statements on the writer's own connection, never syncd calls.
    md = crm_metadata(load_policy(POLICY))
    cust, loans, opp = md.tables["customers"], md.tables["loans"], md.tables["opportunities"]
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        now = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=n)
        with engine.begin() as conn:
            for _ in range(rng.randint(1, 5)):
                n += 1
                cid = f"{prefix}{rng.randrange(60):03d}"
                _write(conn, rng, cust, loans, opp, cid, now)
        time.sleep(rng.random() * 0.01)
    engine.dispose()


def _write(
    conn: sa.Connection,
    rng: random.Random,
    cust: sa.Table,
    loans: sa.Table,
    opp: sa.Table,
    cid: str,
    now: dt.datetime,
) -> None:
    exists = conn.execute(sa.select(cust.c.customer_id).where(cust.c.customer_id == cid)).first()
    roll = rng.random()
    if exists is None:
        conn.execute(
            cust.insert().values(
                customer_id=cid,
                customer_type="individual",
                name=f"客户{cid}",
                id_type="ric",
                id_number=national_id(rng, 40),
                phone=f"138{rng.randrange(10**8):08d}",
                status=rng.choice(["active", "active", "prospect"]),
                risk_tags=[rng.choice("abc")],
                rm_notes="内部备注",
                created_at=now,
                updated_at=now,
            )
        )
    elif roll < 0.5:
        conn.execute(
            cust.update()
            .where(cust.c.customer_id == cid)
            .values(
                phone=f"139{rng.randrange(10**8):08d}",
                updated_at=now,
                status=rng.choice(["active", "active", "dormant", "prospect"]),
            )
        )
    elif roll < 0.8:
        lid = f"L{cid}{rng.randrange(3)}"
        values = {
            "customer_id": cid,
            "product": "consumer",
            "principal": decimal.Decimal(rng.randrange(10**7)) / 100 + 1000,
            "balance": decimal.Decimal(rng.randrange(10**5)) / 100,
            "five_class": rng.choice(["normal", "normal", "substandard"]),
            "overdue_days": rng.randrange(3),
            "issued_on": dt.date(2025, 1, 1),
            "maturity_on": dt.date(2030, 1, 1),
            "approval_memo": "审批意见",
            "updated_at": now,
        }
        if conn.execute(sa.select(loans.c.loan_id).where(loans.c.loan_id == lid)).first():
            conn.execute(loans.update().where(loans.c.loan_id == lid).values(**values))
        else:
            conn.execute(loans.insert().values(loan_id=lid, **values))
    elif roll < 0.9:
        conn.execute(loans.delete().where(loans.c.customer_id == cid))
        conn.execute(cust.delete().where(cust.c.customer_id == cid))
    else:
        conn.execute(
            opp.insert().values(
                opportunity_id=f"O{now.timestamp():.0f}{rng.random()}",
                customer_id=cid,
                stage="lead",
                updated_at=now,
            )
        )


if __name__ == "__main__":
    main()
