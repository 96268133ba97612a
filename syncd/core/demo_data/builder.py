"""What every row builder appends with: seeded draws, Faker's pools and per-city tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from syncd.core.demo_data.draws import Rng
from syncd.core.demo_data.manifest import TABLES, Row
from syncd.core.demo_data.pools import pools
from syncd.core.demo_data.regions import City


class Builder:
    """The state shared by the row builders of one `generate` call."""

    def __init__(self, chosen: Sequence[City], seed: int, as_of: dt.datetime) -> None:
        self.rng = Rng(seed)
        self.pools = pools(seed)
        self.as_of = as_of
        self.today = as_of.date()
        self.cities = list(chosen)
        self.tables: dict[str, dict[str, list[Row]]] = {
            c.code: {t: [] for t in TABLES} for c in self.cities
        }
        # Relationship managers per city, who own opportunities and activities.
        self.rms: dict[str, tuple[str, ...]] = {}
