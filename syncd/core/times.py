"""Times as auditors read and type them: stored in naive UTC, shown and parsed in one zone.

Pure, raising UsageError: the CLI (`syncd.cli.timezones`) and the console both use these.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from syncd.core.errors import UsageError


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name` (from --tz or `[audit] timezone`), or UsageError naming it."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz {name!r}: unknown time zone; expected an IANA name such as Asia/Shanghai"
        ) from None


def parse_time(option: str, text: str | None, tz: dt.tzinfo) -> dt.datetime | None:
    """An ISO date or time; one without an offset is a time in `tz` (a date is its midnight)."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO date or time, e.g. 2026-11-26T08:00+08:00"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def shown(value: dt.datetime, tz: dt.tzinfo) -> str:
    """A stored (naive UTC) time in `tz`, to the second, with its offset."""
    return value.replace(tzinfo=dt.UTC).astimezone(tz).isoformat(timespec="seconds")


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """An aware time as naive UTC, how syncd stores time."""
    return None if value is None else value.astimezone(dt.UTC).replace(tzinfo=None)
