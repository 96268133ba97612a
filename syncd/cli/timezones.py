"""Times as auditors read and type them (`syncd.core.times`), a bad one an exit 2 here."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from syncd.cli.render import usage
from syncd.core import times
from syncd.core.errors import UsageError
from syncd.core.times import naive_utc, shown

__all__ = ["naive_utc", "parse_time", "shown", "zone"]


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name` (from --tz or `[audit] timezone`), or exit 2 naming it."""
    try:
        return times.zone(name)
    except UsageError as exc:
        usage(str(exc))


def parse_time(option: str, text: str | None, tz: dt.tzinfo) -> dt.datetime | None:
    """An ISO date or time; one without an offset is a time in `tz` (a date is its midnight)."""
    try:
        return times.parse_time(option, text, tz)
    except UsageError as exc:
        usage(str(exc))
