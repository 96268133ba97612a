"""What `generate` returns: rows per city and table, and the manifest of what was seeded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

Row = dict[str, Any]

AS_OF: Final = dt.datetime(2026, 6, 30, 16, 0)
TABLES: Final = (
    "customers",
    "deposit_accounts",
    "loans",
    "intermediary_business",
    "opportunities",
    "sales_activities",
    "service_activities",
)
INVALID_ID_REASONS: Final = ("check_digit", "birth_date", "length")


@dataclass(frozen=True)
class CustomerRef:
    """One city's row of a customer."""

    city_code: str
    customer_id: str
    id_type: str
    id_number: str


@dataclass(frozen=True)
class InvalidCustomer(CustomerRef):
    """A public customer whose ID number is wrong on purpose, for the hub to quarantine."""

    reason: str  # one of INVALID_ID_REASONS


@dataclass(frozen=True)
class SharedCustomer:
    """A person or company that is a customer in several cities."""

    id_type: str
    id_number: str
    name: str
    customer_type: str
    home_city: str
    customer_ids: dict[str, str]  # city code -> that city's customer_id, home city first
    phones: dict[str, str]  # city code -> phone, different in every city
    risk_tags: dict[str, tuple[str, ...]]  # city code -> risk tags
    loan_cities: tuple[str, ...]  # cities where this customer has loans


@dataclass(frozen=True)
class CityCounts:
    """What one city's CRM holds, and what of it the hub should see."""

    customers: int  # rows, prospects included
    public_customers: int  # rows passing the policy's filter, invalid IDs included
    prospects: int
    invalid_ids: int
    corporate: int
    shared: int
    rows: dict[str, int]  # table -> row count


@dataclass(frozen=True)
class Manifest:
    """What was seeded on purpose, for the demo's checks."""

    seed: int
    as_of: dt.datetime
    cities: tuple[str, ...]
    distinct_customers: int
    # Golden records the hub should hold after a full sync: public rows with valid IDs.
    golden_customers: int
    shared: tuple[SharedCustomer, ...]
    prospects: tuple[CustomerRef, ...]
    invalid_ids: tuple[InvalidCustomer, ...]
    corporates: tuple[CustomerRef, ...]
    counts: dict[str, CityCounts]

    @property
    def totals(self) -> CityCounts:
        """The counts summed over the cities."""
        every = list(self.counts.values())
        return CityCounts(
            customers=sum(c.customers for c in every),
            public_customers=sum(c.public_customers for c in every),
            prospects=sum(c.prospects for c in every),
            invalid_ids=sum(c.invalid_ids for c in every),
            corporate=sum(c.corporate for c in every),
            shared=sum(c.shared for c in every),
            rows={t: sum(c.rows[t] for c in every) for t in TABLES},
        )


@dataclass(frozen=True)
class DemoData:
    """Rows per city code and table, and the manifest."""

    tables: dict[str, dict[str, list[Row]]]
    manifest: Manifest
