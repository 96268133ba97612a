"""Edits that make shared customers conflict, for the demo to apply after a first sync."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from faker import Faker

from syncd.core.demo_data.draws import Rng
from syncd.core.demo_data.manifest import Manifest, SharedCustomer
from syncd.core.demo_data.regions import PROVINCE, city_by_code


@dataclass(frozen=True)
class Edit:
    """An update to make in one city's CRM: set `changes` on the row `key` of `table`."""

    city_code: str
    table: str
    key: dict[str, Any]
    changes: dict[str, Any]
    note: str = ""


def conflicting_edits(manifest: Manifest, seed: int) -> list[Edit]:
    """Edits to make at once in two cities on shared customers, in the order to apply them."""
    if not manifest.shared:
        return []
    # random hashes a str seed with SHA-512, so this is stable across processes.
    rng = Rng(f"{seed}:edits")
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    t = manifest.as_of + dt.timedelta(hours=1)
    minute = dt.timedelta(minutes=1)

    def pick(i: int) -> tuple[SharedCustomer, str, str]:
        s = manifest.shared[i % len(manifest.shared)]
        first, second = list(s.customer_ids)[:2]
        return s, first, second

    def edit(s: SharedCustomer, code: str, minutes: int, note: str, **changes: Any) -> Edit:
        changes["updated_at"] = t + minutes * minute
        return Edit(code, "customers", {"customer_id": s.customer_ids[code]}, changes, note)

    taken = {p for s in manifest.shared for p in s.phones.values()}

    def phone() -> str:
        number = str(fake.phone_number())
        while number in taken or number.startswith("14"):
            number = str(fake.phone_number())
        taken.add(number)
        return number

    def address(code: str) -> str:
        c = city_by_code(code)
        district = rng.one(c.districts).name
        return f"{PROVINCE}{c.name}{district}{fake.street_name()}{rng.between(1, 999)}号"

    s, a, b = pick(0)
    edits = [
        edit(s, a, 0, f"phone changed in {a}", phone=phone()),
        edit(s, b, 5, f"phone changed differently in {b}, later: {b} wins (latest)",
             phone=phone()),
    ]  # fmt: skip
    s, a, b = pick(1)
    edits += [
        edit(s, b, 10, f"address changed in {b}", address=address(b)),
        edit(s, a, 12, f"address changed in {a}, later: {a} wins (latest)", address=address(a)),
    ]
    s, a, b = pick(2)
    # Tags the generator never assigns, so that the union visibly grows by both.
    edits += [
        edit(s, a, 20, f"risk tag added in {a}",
             risk_tags=[*s.risk_tags[a], "litigation"]),
        edit(s, b, 21, f"another risk tag added in {b}: the golden record has both (union)",
             risk_tags=[*s.risk_tags[b], "fraud_alert"]),
    ]  # fmt: skip
    s, a, b = pick(3)
    flipped = "corporate" if s.customer_type == "individual" else "individual"
    edits += [
        edit(s, b, 30, f"customer_type changed in {b} only: a conflict opens (manual)",
             customer_type=flipped),
        edit(s, a, 31, f"phone changed in {a} at the same time", phone=phone()),
    ]  # fmt: skip
    return edits
