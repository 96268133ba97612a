"""The web console's users: roles, argon2id password hashes, sign-in checks and their audit.

A user has one or more roles (`ROLES`); what each role may do is `PERMISSIONS` — the console
checks a permission, never a role name, so a page and its action agree on who may. Passwords
are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile);
a hash made with older parameters is replaced on the next good sign-in.

Every sign-in and failed sign-in is an audit entry (`console_signin`, `console_signin_failed`)
written in the same transaction as the user's counters, so the log and the lockout agree. A
failed sign-in never says whether the user exists; after `lockout_after` failures in a row
the user is locked for `lockout_minutes` (a good password does not open a locked account).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine

from syncd.core.errors import DatabaseError, UsageError
from syncd.hub.audit import AuditWriter
from syncd.store import hub_tables as h
from syncd.store.db import translated, utcnow


class Role(StrEnum):
    MANAGER = "manager"  # provincial managers: overview, customers, analysis, exports
    AUDITOR = "auditor"  # the audit log: browse, verify, export; may see full ID numbers
    OPS = "ops"  # sync health, quarantine and conflicts (read only)
    STEWARD = "steward"  # data stewards: resolve conflicts, retry quarantine; full ID numbers


class Permission(StrEnum):
    OVERVIEW = "overview"
    CUSTOMERS = "customers"
    ANALYSIS = "analysis"
    EXPORT = "export"  # Excel exports of the analysis pages
    HEALTH = "health"
    STEWARDSHIP_VIEW = "stewardship_view"
    STEWARDSHIP_ACT = "stewardship_act"
    AUDIT = "audit"
    AUDIT_EXPORT = "audit_export"
    UNMASK = "unmask"  # show full ID numbers (each view audited as ids_unmasked)


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.MANAGER: frozenset(
        {Permission.OVERVIEW, Permission.CUSTOMERS, Permission.ANALYSIS, Permission.EXPORT}
    ),
    Role.AUDITOR: frozenset(
        {Permission.AUDIT, Permission.AUDIT_EXPORT, Permission.CUSTOMERS, Permission.UNMASK}
    ),
    Role.OPS: frozenset({Permission.HEALTH, Permission.STEWARDSHIP_VIEW}),
    Role.STEWARD: frozenset(
        {
            Permission.STEWARDSHIP_VIEW,
            Permission.STEWARDSHIP_ACT,
            Permission.CUSTOMERS,
            Permission.UNMASK,
        }
    ),
}

SIGNIN = "console_signin"
SIGNIN_FAILED = "console_signin_failed"
USER_CHANGED = "console_user_changed"

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when the user does not exist, so "no such user" takes as long as "wrong
# password" and the answer's timing does not tell which.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str | None
    roles: frozenset[Role]

    @property
    def permissions(self) -> frozenset[Permission]:
        return frozenset().union(*(PERMISSIONS[r] for r in self.roles))

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username


def check_username(name: str) -> str:
    if not _USERNAME.fullmatch(name):
        raise UsageError(
            f"user name {name!r}: expected 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_roles(roles: Iterable[str]) -> frozenset[Role]:
    known = ", ".join(r.value for r in Role)
    out: set[Role] = set()
    for r in roles:
        try:
            out.add(Role(r.strip().lower()))
        except ValueError:
            raise UsageError(f"unknown console role {r!r}: expected one of {known}") from None
    if not out:
        raise UsageError(f"a console user needs at least one role: {known}")
    return frozenset(out)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a console password needs at least {MIN_PASSWORD} characters")
    return password


def _roles_text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(r.value for r in roles))


def _parse_roles(text: str) -> frozenset[Role]:
    return frozenset(Role(r) for r in text.split(",") if r in Role.__members__.values())


def _user(row: Any) -> User:
    return User(str(row.username), row.display_name, _parse_roles(str(row.roles)))


def _audit(conn: Connection, action: str, detail: dict[str, Any]) -> None:
    audit = AuditWriter(conn)
    audit.append(action, detail=detail)
    audit.flush()


def add_user(
    engine: Engine,
    username: str,
    roles: Iterable[str],
    password: str,
    *,
    display_name: str | None = None,
    by: str | None = None,
) -> User:
    """A new console user (audited as console_user_changed); UsageError if the name is taken."""
    username = check_username(username)
    role_set = check_roles(roles)
    check_password(password)
    now = utcnow()
    with translated("adding a console user"), engine.begin() as conn:
        taken = conn.execute(
            sa.select(h.console_users.c.username).where(h.console_users.c.username == username)
        ).first()
        if taken is not None:
            raise UsageError(f"console user {username!r} exists already")
        conn.execute(
            h.console_users.insert().values(
                username=username,
                display_name=display_name,
                roles=_roles_text(role_set),
                password_hash=_hasher.hash(password),
                created_at=now,
                password_changed_at=now,
            )
        )
        _audit(
            conn,
            USER_CHANGED,
            {"change": "added", "username": username, "roles": sorted(role_set), "by": by},
        )
    return User(username, display_name, role_set)


def set_password(engine: Engine, username: str, password: str, *, by: str | None = None) -> None:
    """Replace a user's password and unlock the account (audited)."""
    check_password(password)
    _update(
        engine,
        username,
        {
            "password_hash": _hasher.hash(password),
            "password_changed_at": utcnow(),
            "failed_signins": 0,
            "locked_until": None,
        },
        {"change": "password", "by": by},
    )


def set_disabled(engine: Engine, username: str, disabled: bool, *, by: str | None = None) -> None:
    """Disable (no sign-in; open sessions end at their next request) or enable a user."""
    _update(
        engine,
        username,
        {"disabled": disabled, "failed_signins": 0, "locked_until": None},
        {"change": "disabled" if disabled else "enabled", "by": by},
    )


def set_roles(
    engine: Engine, username: str, roles: Iterable[str], *, by: str | None = None
) -> None:
    role_set = check_roles(roles)
    _update(
        engine,
        username,
        {"roles": _roles_text(role_set)},
        {"change": "roles", "roles": sorted(role_set), "by": by},
    )


def _update(engine: Engine, username: str, values: dict[str, Any], detail: dict[str, Any]) -> None:
    with translated("changing a console user"), engine.begin() as conn:
        done = conn.execute(
            h.console_users.update().where(h.console_users.c.username == username).values(values)
        )
        if done.rowcount != 1:
            raise UsageError(f"no console user {username!r}")
        _audit(conn, USER_CHANGED, {**detail, "username": username})


def list_users(conn: Connection) -> list[dict[str, Any]]:
    t = h.console_users
    rows = conn.execute(
        sa.select(
            t.c.username,
            t.c.display_name,
            t.c.roles,
            t.c.disabled,
            t.c.locked_until,
            t.c.last_signin_at,
            t.c.created_at,
        ).order_by(t.c.username)
    )
    return [dict(r._mapping) for r in rows]


def active_user(
    conn: Connection, username: str, signed_in_at: dt.datetime | None = None
) -> User | None:
    """The user a session names, if it may still use the console (exists, not disabled) and,
    given when the session signed in (naive UTC), its password has not changed since: a new
    password ends every session opened with the old one (a stolen cookie included)."""
    row = conn.execute(
        sa.select(h.console_users).where(
            h.console_users.c.username == username, h.console_users.c.disabled.is_(False)
        )
    ).first()
    if row is None:
        return None
    if signed_in_at is not None and row.password_changed_at > signed_in_at:
        return None
    return _user(row)


@dataclasses.dataclass(frozen=True, slots=True)
class SignIn:
    user: User | None
    reason: str | None = None  # why not: "bad_credentials", "locked", "disabled"


def sign_in(
    engine: Engine,
    username: str,
    password: str,
    *,
    client: str | None,
    lockout_after: int,
    lockout_minutes: float,
) -> SignIn:
    """Check a password; audit the attempt either way; count failures and lock after too many."""
    t = h.console_users
    now = utcnow()
    name = username.strip().lower()[:63]
    with translated("signing in to the console"), engine.begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.username == name).with_for_update()).first()
        if row is None:
            _verify(_DUMMY_HASH, password)
            return _failed(conn, name, client, "bad_credentials", known=False)
        if row.disabled:
            _verify(_DUMMY_HASH, password)
            return _failed(conn, name, client, "disabled")
        if row.locked_until is not None and row.locked_until > now:
            _verify(_DUMMY_HASH, password)
            return _failed(conn, name, client, "locked")
        if not _verify(str(row.password_hash), password):
            failures = int(row.failed_signins) + 1
            lock = failures >= lockout_after and lockout_minutes > 0
            conn.execute(
                t.update()
                .where(t.c.username == name)
                .values(
                    failed_signins=0 if lock else failures,
                    locked_until=now + dt.timedelta(minutes=lockout_minutes) if lock else None,
                )
            )
            return _failed(conn, name, client, "locked_now" if lock else "bad_credentials")
        values: dict[str, Any] = {"failed_signins": 0, "locked_until": None, "last_signin_at": now}
        if _hasher.check_needs_rehash(str(row.password_hash)):
            values["password_hash"] = _hasher.hash(password)
        conn.execute(t.update().where(t.c.username == name).values(values))
        _audit(conn, SIGNIN, {"username": name, "client": client})
        return SignIn(_user(row))


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _failed(
    conn: Connection, name: str, client: str | None, reason: str, *, known: bool = True
) -> SignIn:
    _audit(
        conn,
        SIGNIN_FAILED,
        {"username": name, "known_user": known, "reason": reason, "client": client},
    )
    return SignIn(None, "locked" if reason in ("locked", "locked_now") else reason)


def session_key(engine: Engine) -> str:
    """The key that signs the console's cookies: made once and kept in the hub's database."""
    t = h.console_keys
    for _attempt in range(2):  # two consoles starting at once: the second reads the first's
        try:
            with translated("reading the console's key"), engine.begin() as conn:
                row = conn.execute(sa.select(t.c.secret).where(t.c.id == 1)).first()
                if row is not None:
                    return str(row.secret)
                secret = secrets.token_urlsafe(48)
                conn.execute(t.insert().values(id=1, secret=secret, created_at=utcnow()))
                return secret
        except DatabaseError:
            continue
    raise DatabaseError("the console's key could not be read or made")
