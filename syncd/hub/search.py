"""Finding golden customers by name or ID number: the console's Customer 360 search and
`syncd report search`.

`search_customers(conn, policy, text)` reads what a person typed, one of:

- a full ID number (6 or more letters and digits, one a digit at least, e.g.
  ``330102198503120019``, a passport's ``E12345678``): the golden
  customers holding it in any of the forms it may be stored under (as `report customer`
  looks it up);
- a masked ID number as the console and the reports show it (``330102********0019``): each
  ``*`` stands for one unknown character, the visible prefix and suffix must match;
- anything else: part of a name (``张``, ``三``), case-insensitive.

The text is hostile: LIKE's wildcards in it (``%``, ``_`` and the escape ``\\``) are matched
literally, it may be at most `MAX_LENGTH` characters, and an empty search is refused with a
message (`UsageError`). At most `limit` customers come back, by golden id; `more` says more
matched (the caller asks to narrow the search).

Speed at a million customers (PostgreSQL): `install_indexes` adds trigram GIN indexes
(pg_trgm) on the golden customers' name and id_number, which serve ``LIKE '%张三%'`` and the
masked pattern, and a B-tree on id_number for the full number. The extension needs a
privilege the hub's owner may lack: without it the B-tree alone is made and `install_indexes`
returns a warning (init prints it, `status` shows it); searches by name then scan the table.
SQLite (a demo-size hub) gets the B-tree only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from syncd.core.errors import UsageError
from syncd.core.logs import get_logger
from syncd.core.policy import Policy
from syncd.hub.report_views import CUSTOMERS, live, missing_inputs
from syncd.hub.reports import _stored_forms
from syncd.store import hub_tables as schema_hub
from syncd.store.dialect import Dialect, Kind, dialect_for
from syncd.store.health import put_state

log = get_logger("syncd.search")

MAX_LENGTH = 64
LIMIT = 50
MASK = "*"
ESCAPE = "\\"

# The indexes (on the golden customers table, `report_views.CUSTOMERS`).
TRIGRAM_INDEXES = {
    "ix_customers_name_trgm": "name",
    "ix_customers_id_number_trgm": "id_number",
}
ID_INDEX = "ix_customers_id_number"
# PostgreSQL: the characters of the name (lower case) in a GIN index, for searches shorter
# than a trigram (张, 张三), which pg_trgm cannot serve; no extension needed.
CHARS_INDEX = "ix_customers_name_chars"
CHARS_SQL = "string_to_array(lower(name), NULL)"
TRIGRAM = 3
# syncd_hub_state: why the trigram indexes are missing (None when they are there).
STATE_KEY = "customer_search_index"

_FULL_ID = re.compile(r"[0-9A-Za-z]{6,}")
_MASKED_ID = re.compile(r"[0-9A-Za-z*]+")


class Mode:
    NAME = "name"
    ID = "id_number"
    MASKED = "masked_id_number"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search found: up to `limit` rows (golden_id, name, id_type, id_number,
    customer_type, home_city), whether more matched, and how the text was read (`Mode`)."""

    text: str
    mode: str
    rows: list[dict[str, Any]]
    more: bool


def escape_like(text: str) -> str:
    """The text with LIKE's wildcards and escape character matched literally (ESCAPE '\\')."""
    return text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")


def masked_pattern(text: str) -> str:
    """A LIKE pattern for a masked ID number: each * is one unknown character (upper case,
    as numbers are stored)."""
    return "".join("_" if ch == MASK else escape_like(ch) for ch in text.upper())


def read_text(text: str | None) -> tuple[str, str]:
    """(the text stripped, its mode); UsageError for an empty or too long search."""
    text = (text or "").strip()
    if not text:
        raise UsageError("type part of a name or an ID number to search for")
    if len(text) > MAX_LENGTH:
        raise UsageError(f"a search is at most {MAX_LENGTH} characters, this one has {len(text)}")
    if MASK in text and _MASKED_ID.fullmatch(text) and text.strip(MASK):
        return text, Mode.MASKED
    if _FULL_ID.fullmatch(text) and any(ch.isdigit() for ch in text):
        return text, Mode.ID
    return text, Mode.NAME


def search_customers(
    conn: sa.Connection, policy: Policy, text: str | None, limit: int = LIMIT
) -> SearchResult:
    """Live golden customers whose name contains `text`, or whose ID number is `text` (full
    or masked); see the module docstring."""
    text, mode = read_text(text)
    query = search_query(policy, text, limit, dialect_for(conn))
    rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row.setdefault("customer_type", None)
        row.setdefault("home_city", None)
    return SearchResult(text, mode, rows[:limit], len(rows) > limit)


def search_query(
    policy: Policy, text: str, limit: int = LIMIT, dialect: Dialect | None = None
) -> sa.Select[Any]:
    """The SELECT of a search on `dialect` (one row more than `limit`, to tell that more
    matched)."""
    text, mode = read_text(text)
    problems = missing_inputs(policy)
    if problems:
        raise UsageError("the customer search needs " + ", ".join(problems) + " in the policy")
    golden = schema_hub.policy_metadata(policy).tables[CUSTOMERS]
    c = golden.c
    match: sa.ColumnElement[bool]
    if mode == Mode.ID:
        match = c.id_number.in_(_stored_forms(text))
    elif mode == Mode.MASKED:
        match = c.id_number.like(masked_pattern(text), escape=ESCAPE)
    else:
        match = c.name.ilike("%" + escape_like(text) + "%", escape=ESCAPE)
        if len(text) < TRIGRAM and dialect is not None and dialect.kind is Kind.POSTGRES:
            # Too short for a trigram: the characters' index narrows, ILIKE decides.
            match = sa.and_(match, name_chars(c.name).contains(sorted(set(text.lower()))))
    wanted = [c[schema_hub.GOLDEN_ID], c.name, c.id_type, c.id_number]
    wanted += [c[k] for k in ("customer_type", "home_city") if k in c]
    return (
        sa.select(*wanted)
        .where(match, live(golden))
        .order_by(c[schema_hub.GOLDEN_ID])
        .limit(limit + 1)
    )


def name_chars(name: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The expression CHARS_INDEX indexes: the name's characters, lower case."""
    return sa.func.string_to_array(sa.func.lower(name), sa.null(), type_=ARRAY(sa.Text()))


# --- indexes -------------------------------------------------------------------------------


def install_indexes(conn: sa.Connection, policy: Policy | None = None) -> str | None:
    """Make the search's indexes on the golden customers table, if it exists (idempotent).

    Returns None, or a warning when PostgreSQL could not have pg_trgm (the search works, by
    name without an index); the warning is logged and kept in syncd_hub_state for `status`.
    """
    del policy  # the golden customers table is the reports' `customers` whatever the policy
    if not sa.inspect(conn).has_table(CUSTOMERS):
        return None
    columns = {col["name"] for col in sa.inspect(conn).get_columns(CUSTOMERS)}
    if not {"name", "id_number"} <= columns:
        return None
    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {ID_INDEX} ON {CUSTOMERS} (id_number)"))
    if dialect_for(conn).kind is not Kind.POSTGRES:
        return None
    conn.execute(
        sa.text(f"CREATE INDEX IF NOT EXISTS {CHARS_INDEX} ON {CUSTOMERS} USING gin ({CHARS_SQL})")
    )
    warning = _trigram(conn)
    _record(conn, warning)
    if warning:
        log.warning("customer_search_unindexed", reason=warning)
    return warning


def _trigram(conn: sa.Connection) -> str | None:
    try:
        with conn.begin_nested():
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return (
            "customer search by name has no trigram index (CREATE EXTENSION pg_trgm failed: "
            f"{reason}); a database superuser can run CREATE EXTENSION pg_trgm in the hub's "
            "database, then `syncd init` again"
        )
    # The operator class is named through the extension's own schema (it may not be public).
    schema = conn.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar_one()
    quote = conn.dialect.identifier_preparer.quote
    for index, column in TRIGRAM_INDEXES.items():
        conn.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS {index} ON {CUSTOMERS} "
                f"USING gin ({column} {quote(schema)}.gin_trgm_ops)"
            )
        )
    return None


def _record(conn: sa.Connection, warning: str | None) -> None:
    put_state(conn, schema_hub.hub_state, STATE_KEY, {"warning": warning})


def index_warning(conn: sa.Connection) -> str | None:
    """The warning `install_indexes` last recorded (None: indexed, or not PostgreSQL)."""
    state = schema_hub.hub_state
    found = conn.execute(sa.select(state.c.value).where(state.c.key == STATE_KEY)).scalar()
    warning = found.get("warning") if isinstance(found, dict) else None
    return str(warning) if warning else None
