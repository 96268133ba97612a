"""The node config: one typed, frozen object built once from a TOML file and `SYNCD_…` variables.

Precedence, highest first: `SYNCD_<SECTION>__<KEY>` environment variables, the TOML file,
the defaults below. Relative paths in the file (the policy path, a SQLite database path) are
resolved against the directory of the config file, so a config can travel with its data.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
import zoneinfo
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncd.core.errors import ConfigError
from syncd.core.redact import redact_url

ENV_PREFIX = "SYNCD_"
NODE_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}\Z")  # \Z: `$` would accept a trailing newline


class Role(StrEnum):
    CITY = "city"
    HUB = "hub"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_db_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ValueError(f"not a SQLAlchemy URL ({redact_url(value)})") from exc
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"unsupported database {url.get_backend_name()!r}: use sqlite:/// or postgresql+psycopg://"
        )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() not in ("psycopg",):
        raise ValueError("PostgreSQL URLs must use the psycopg 3 driver: postgresql+psycopg://")
    return value


class NodeSection(_Section):
    id: str
    role: Role
    city_code: str | None = Field(
        default=None, description="the city code this node serves (e.g. 3301); city nodes only"
    )
    parent: str | None = Field(default=None, description="hub above this hub, for hierarchies")

    @field_validator("id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not NODE_ID_RE.match(value):
            raise ValueError(
                "must be lowercase letters, digits and '-', starting with a letter (e.g. city-3301)"
            )
        return value


class DatabaseSection(_Section):
    url: str
    lock_timeout_ms: int = Field(
        default=3000, gt=0, description="init: how long trigger DDL waits for a busy CRM table"
    )
    session_lock_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="PostgreSQL: how long any syncd statement waits for a lock (then retried)",
    )
    statement_timeout_ms: int = Field(
        default=600_000, gt=0, description="PostgreSQL: the longest any syncd statement may run"
    )

    _url = field_validator("url")(classmethod(lambda cls, v: _check_db_url(v)))


class HubSection(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_db_url(value)


class PolicySection(_Section):
    path: Path = Path("schemas/crm.yaml")


class CrmSection(_Section):
    create_schema: bool = False


class SyncSection(_Section):
    interval_seconds: float = Field(default=1.0, gt=0)
    batch_rows: int = Field(default=5000, gt=0)
    batch_bytes: int = Field(default=8_000_000, gt=1024)
    trim_interval_seconds: float = Field(default=60.0, gt=0)
    trim_retention_seconds: float = Field(
        default=0.0, ge=0, description="keep acknowledged changelog rows this long before trimming"
    )
    backlog_warn_seconds: float = Field(default=3600.0, gt=0)
    silent_node_seconds: float = Field(default=900.0, gt=0)
    gap_wait_seconds: float = Field(default=0.5, ge=0)
    wake_min_interval_seconds: float = Field(
        default=0.2,
        ge=0,
        description="a NOTIFY starts a cycle at most this often after the last one began",
    )
    retry_max_wait_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(
        default=3.0,
        ge=0,
        description="on SIGTERM, how long the job in flight may finish before it is cancelled",
    )


class LogSection(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSection(_Section):
    port: int | None = Field(default=None, ge=0, le=65535, description="unset: no endpoint")
    address: str = "127.0.0.1"


class ReportSection(_Section):
    weight_deposit: float = Field(default=1.0, ge=0)
    weight_loan: float = Field(default=0.5, ge=0)
    weight_fee: float = Field(default=20.0, ge=0)
    tier_key_pct: float = Field(default=5.0, gt=0, le=100)
    tier_high_pct: float = Field(default=15.0, ge=0, le=100)
    tier_medium_pct: float = Field(default=30.0, ge=0, le=100)
    # Risk early warning (docs/managers.md, "Warnings"). Severities: 1 low, 2 medium, 3 high.
    warn_tags_high: list[str] = Field(
        default=["fraud_alert", "aml_suspect", "sanctioned"],
        description="risk tags that warn with severity high",
    )
    warn_tags_medium: list[str] = Field(
        default=["litigation", "watchlist", "bankruptcy", "blacklist"],
        description="risk tags that warn with severity medium",
    )
    warn_risk_level: int = Field(
        default=4, ge=1, le=5, description="risk_level at or above warns (medium; 5 is high)"
    )
    warn_over_limit_high_pct: float = Field(
        default=20.0,
        ge=0,
        description="loans above the credit limit by more than this percent warn high",
    )
    warn_overdue_bands: list[int] = Field(
        default=[30, 90, 180],
        description="upper bounds of the overdue-day bands 1-30, 31-90, 91-180, >180",
    )
    warn_concentration_cities: int = Field(
        default=2, ge=2, description="loans in this many cities or more warn (concentration)"
    )
    warn_concentration_min: float = Field(
        default=1_000_000.0, ge=0, description="... when their total balance is at least this"
    )
    warn_growth_pct: float = Field(
        default=50.0, gt=0, description="loan balance grown by this percent since the snapshot"
    )
    warn_growth_min: float = Field(
        default=100_000.0, ge=0, description="... and by at least this amount"
    )
    # Snapshots (`report snapshot`, the hub daemon's daily job).
    snapshot_hour_utc: int = Field(
        default=0, ge=0, le=23, description="the daemon takes the day's snapshot from this hour"
    )
    customer_snapshot_days: int = Field(
        default=8,
        ge=2,
        description="days of per-customer snapshots kept (city figures are kept for good)",
    )

    @field_validator("warn_overdue_bands")
    @classmethod
    def _bands(cls, value: list[int]) -> list[int]:
        if not value or value[0] < 1 or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("expected increasing positive day counts, e.g. [30, 90, 180]")
        return value


def check_zone(value: str) -> str:
    """An IANA time zone name, or ValueError naming what is expected."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}: expected an IANA name such as Asia/Shanghai or UTC"
        ) from exc
    return value


class DownlinkSection(_Section):
    """The downward path (`syncd.hub.downlink`, `syncd.city.insights`).

    At the hub: a daemon job looks every `publish_interval_seconds` whether batches were
    applied since the insights were last built, and builds them if so (`sync --once` too); 0
    leaves it to `syncd insights publish`. At a city: each push cycle also fetches and applies
    the batches the hub built for it. `batch_rows`: changes per downlink batch.
    """

    enabled: bool = True
    publish_interval_seconds: float = Field(default=300.0, ge=0)
    batch_rows: int = Field(default=5000, gt=0)
    retention_days: float = Field(default=7.0, ge=0)


class AuditSection(_Section):
    # An IANA zone: `audit log` shows times in it, and reads --since/--until without an offset
    # in it. UTC by default, which is how those options read before the setting existed.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_zone(value)


class ConflictsSection(_Section):
    # Four eyes: `conflicts resolve` only proposes; another steward's `conflicts approve`
    # applies the resolution.
    four_eyes: bool = False


class ConsoleSection(_Section):
    """The hub's web console (`syncd console`, `syncd.console`).

    `host`/`port`: where uvicorn listens (loopback by default: the bank's reverse proxy, which
    terminates TLS, forwards to it). `root_path`: the path prefix the proxy serves it under,
    e.g. /syncd. `session_minutes`: a sign-in lasts this long (a signed cookie with that
    expiry). `secure_cookies`: mark the session cookie Secure (the proxy speaks HTTPS); turn it
    off only to try the console over plain HTTP on one machine. `timezone`: the IANA zone the
    pages show times in (Asia/Shanghai: bank staff read Beijing time; times are stored in UTC,
    and exports keep them so). `secret_key`: signs the
    cookies; by default one made at the first start and kept in the hub's database, so every
    console process of the hub shares it. `lockout_after`/`lockout_minutes`: a user is locked
    out for that long after that many failed sign-ins in a row. `overview_max_age_seconds`: the
    overview's figures are recomputed in the background when older than this.
    `report_max_age_seconds`: the same for the analysis pages (segments, key customers, risk
    warnings), each result by its filters; they cost a minute at a million customers.
    `report_workers`: how many of those computations one console process runs at once (each
    holds gigabytes at a million customers); the others wait their turn, shown as queued.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    root_path: str = ""
    session_minutes: float = Field(default=480.0, gt=0)
    secure_cookies: bool = True
    timezone: str = "Asia/Shanghai"
    secret_key: SecretStr | None = None
    lockout_after: int = Field(default=5, ge=1)
    lockout_minutes: float = Field(default=15.0, ge=0)
    overview_max_age_seconds: float = Field(default=300.0, ge=0)
    report_max_age_seconds: float = Field(default=900.0, ge=0)
    report_workers: int = Field(default=1, ge=1)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError(f"expected a path that starts with /, e.g. /syncd: {value!r}")
        return value


class Settings(BaseSettings):
    """Everything a node needs; built by `load_settings`, never at import."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node: NodeSection
    database: DatabaseSection
    hub: HubSection = HubSection()
    policy: PolicySection = PolicySection()
    crm: CrmSection = CrmSection()
    sync: SyncSection = SyncSection()
    log: LogSection = LogSection()
    metrics: MetricsSection = MetricsSection()
    report: ReportSection = ReportSection()
    downlink: DownlinkSection = DownlinkSection()
    audit: AuditSection = AuditSection()
    conflicts: ConflictsSection = ConflictsSection()
    console: ConsoleSection = ConsoleSection()
    config_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values come in as init kwargs; the environment must win over them.
        return (env_settings, init_settings)

    @property
    def engine_options(self) -> dict[str, int]:
        """Keyword arguments of `syncd.store.db.create_engine` for every engine this node opens."""
        return {
            "lock_timeout_ms": self.database.session_lock_timeout_ms,
            "statement_timeout_ms": self.database.statement_timeout_ms,
        }

    @property
    def is_city(self) -> bool:
        return self.node.role is Role.CITY

    @property
    def is_hub(self) -> bool:
        return self.node.role is Role.HUB


def _resolve_relative(data: dict[str, Any], base: Path) -> None:
    policy = data.get("policy")
    if isinstance(policy, dict) and isinstance(policy.get("path"), str):
        p = Path(policy["path"])
        if not p.is_absolute():
            policy["path"] = str(base / p)
    for section in ("database", "hub"):
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get("url"), str):
            sec["url"] = _absolute_sqlite(sec["url"], base)


def _absolute_sqlite(url: str, base: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str(base / rest)
    return url


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


class NoConfig(ConfigError):
    """No config file given and none in the environment: say how to give one."""

    def __init__(self) -> None:
        super().__init__("(no config)", "--config", NO_CONFIG_HINT)

    def __str__(self) -> str:
        return f"no configuration: {self.reason}"


NO_CONFIG_HINT = (
    "pass --config FILE (before or after the command) or set SYNCD_CONFIG=FILE; "
    "examples: config/hub.example.toml, config/city.example.toml, or the files `syncd demo` "
    "keeps"
)


def _env_has_settings() -> bool:
    fields = tuple(f"{ENV_PREFIX}{name.upper()}__" for name in Settings.model_fields)
    return any(key.upper().startswith(fields) for key in os.environ)


def load_settings(path: Path | str | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read the node config: the TOML file at `path` (or `$SYNCD_CONFIG`) plus the environment."""
    if path is None:
        env_path = os.environ.get("SYNCD_CONFIG")
        path = Path(env_path) if env_path else None
    if path is None and not overrides and not _env_has_settings():
        raise NoConfig
    data: dict[str, Any] = {}
    source = "environment (no config file)"
    if path is not None:
        source = str(path)
        data = _read_file(Path(path))
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(source, exc) from None
    if settings.is_city and settings.hub.url is None:
        raise ConfigError(source, "hub.url", "a city node needs the hub's database URL")
    return _with_city_code(settings)


def _read_file(path: Path) -> dict[str, Any]:
    """The TOML file's keys, relative paths resolved against its directory."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "(syntax)", f"not valid TOML: {exc}") from exc
    _resolve_relative(data, path.resolve().parent)
    data["config_path"] = str(path.resolve())
    return data


def _config_error(source: str, exc: ValidationError) -> ConfigError:
    """The first problem pydantic found, named by its file and key."""
    err = exc.errors()[0]
    reason = {"missing": "required key is missing", "extra_forbidden": "unknown key"}.get(
        err["type"], err["msg"]
    )
    return ConfigError(source, _key_of(err["loc"]), reason)


def _with_city_code(settings: Settings) -> Settings:
    """A city without `node.city_code` takes the last digits of its node id (city-3301)."""
    if not settings.is_city or settings.node.city_code is not None:
        return settings
    digits = re.findall(r"\d+", settings.node.id)
    if not digits:
        return settings
    node = settings.node.model_copy(update={"city_code": digits[-1]})
    return settings.model_copy(update={"node": node})
