"""Seeded, realistic demo data for the CRM of several Zhejiang cities, as rows per table.

Pure: no database code. `generate` returns, per city code, the rows of every table declared in
`schemas/crm.yaml` (decimals as `Decimal`, dates as `date`, timestamps as naive UTC `datetime`,
`risk_tags` as a list of strings), and a `Manifest` of what was seeded on purpose: customers
shared by several cities, prospects, rows with invalid ID numbers, corporates. Interest rates are
annual rates in percent (`Decimal("1.3500")` is 1.35 %). The same seed gives the same data.

Identity numbers are built from real administrative division codes; python-stdnum computes every
check digit (Faker's `ssn()` uses codes stdnum does not know). Names, streets, company name parts
and mobile prefixes come from Faker's zh_CN provider, drawn once into pools and then sampled with
a seeded `random.Random`, because calling Faker per row is too slow for 100k customers.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
from collections.abc import Sequence

from syncd.core.demo_data.accounts import FIVE_CLASSES
from syncd.core.demo_data.customers import CRM_START, Customers, Entity
from syncd.core.demo_data.edits import Edit, conflicting_edits
from syncd.core.demo_data.manifest import (
    AS_OF,
    INVALID_ID_REASONS,
    TABLES,
    CityCounts,
    CustomerRef,
    DemoData,
    InvalidCustomer,
    Manifest,
    Row,
    SharedCustomer,
)
from syncd.core.demo_data.regions import (
    CITIES,
    PROVINCE,
    City,
    District,
    cities,
    city_by_code,
    credit_code,
    id_districts,
    national_id,
)

__all__ = [
    "AS_OF",
    "CITIES",
    "CRM_START",
    "FIVE_CLASSES",
    "INVALID_ID_REASONS",
    "PROVINCE",
    "TABLES",
    "City",
    "CityCounts",
    "CustomerRef",
    "DemoData",
    "District",
    "Edit",
    "InvalidCustomer",
    "Manifest",
    "Row",
    "SharedCustomer",
    "cities",
    "city_by_code",
    "conflicting_edits",
    "credit_code",
    "generate",
    "id_districts",
    "minimum_customers",
    "national_id",
]


def minimum_customers(n_cities: int) -> int:
    """The fewest customers `generate` accepts for that many cities."""
    # One invalid ID and one prospect per city, two shared customers, one corporate.
    return 2 * n_cities + (2 if n_cities > 1 else 0) + 1


def _allocation(n_cities: int, customers: int) -> tuple[int, int, int]:
    """How many invalid-ID, prospect and shared customers; the rest are regular."""
    minimum = minimum_customers(n_cities)
    if customers < minimum:
        raise ValueError(f"customers must be at least {minimum} for {n_cities} cities")
    invalid = n_cities
    prospects = max(n_cities, round(customers * 0.06))
    shared = 0 if n_cities == 1 else max(2, round(customers * 0.08))
    assert invalid + prospects + shared < customers
    return invalid, prospects, shared


class _Generator(Customers):
    """Appends rows to per-city tables; one instance per `generate` call."""

    def plan(self, customers: int) -> list[Entity]:
        rng, cs = self.rng, self.cities
        n_prospects, n_shared = _allocation(len(cs), customers)[1:]
        weights = list(itertools.accumulate(c.weight for c in cs))

        def anywhere() -> City:
            return rng.choices(cs, cum_weights=weights)[0]

        entities = [Entity("invalid", c, (c,), corporate=False) for c in cs]
        for i in range(n_prospects):
            # The first prospects go round the cities so that every city has one.
            home = cs[i] if i < len(cs) else anywhere()
            entities.append(Entity("prospect", home, (home,), rng.random() < 0.15))
        for i in range(n_shared):
            home = anywhere()
            others = [c for c in cs if c is not home]
            k = 2 if len(others) < 2 or rng.random() < 0.7 else 3
            entities.append(
                Entity(
                    "shared", home, (home, *rng.sample(others, k - 1)), rng.random() < 0.2,
                    force_loans=i == 0 or rng.random() < 0.3, distinct_tags=i == 0,
                )
            )  # fmt: skip
        for i in range(customers - len(entities)):
            home = anywhere()
            entities.append(Entity("regular", home, (home,), i == 0 or rng.random() < 0.15))
        # Shuffled so that customer numbers do not give away which rows are special.
        rng.shuffle(entities)
        return entities

    def manifest(self, seed: int, customers: int) -> Manifest:
        counts: dict[str, CityCounts] = {}
        for c in self.cities:
            rows = self.tables[c.code]
            counts[c.code] = CityCounts(
                customers=len(rows["customers"]),
                public_customers=sum(r["status"] != "prospect" for r in rows["customers"]),
                prospects=sum(r.city_code == c.code for r in self.prospects),
                invalid_ids=sum(r.city_code == c.code for r in self.invalid),
                corporate=sum(r["customer_type"] == "corporate" for r in rows["customers"]),
                shared=sum(c.code in s.customer_ids for s in self.shared),
                rows={t: len(rows[t]) for t in TABLES},
            )
        return Manifest(
            seed=seed,
            as_of=self.as_of,
            cities=tuple(c.code for c in self.cities),
            distinct_customers=customers,
            golden_customers=customers - len(self.prospects) - len(self.invalid),
            shared=tuple(self.shared),
            prospects=tuple(self.prospects),
            invalid_ids=tuple(self.invalid),
            corporates=tuple(self.corporates),
            counts=counts,
        )


def generate(
    cities: Sequence[City], customers: int, seed: int, *, as_of: dt.datetime = AS_OF
) -> DemoData:
    """Rows of every CRM table of each city, for `customers` distinct persons and companies."""
    if not cities:
        raise ValueError("at least one city is required")
    if len({c.code for c in cities}) != len(cities):
        raise ValueError("the cities must be distinct")
    gen = _Generator(cities, seed, as_of)
    # Millions of small acyclic dicts: the cyclic collector would rescan them over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for ent in gen.plan(customers):
            gen.entity(ent)
    finally:
        if was_enabled:
            gc.enable()
    return DemoData(tables=gen.tables, manifest=gen.manifest(seed, customers))
