"""Node config: valid files load; every kind of mistake names the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.core.errors import ConfigError
from syncd.core.redact import redact_url
from syncd.core.settings import Role, load_settings

CITY = """
[node]
id = "city-3301"
role = "city"
[database]
url = "sqlite:///city.db"
[hub]
url = "postgresql+psycopg://city:s3cret@hub.example/syncd"
[policy]
path = "crm.yaml"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text, encoding="utf-8")
    return p


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


def test_city_config_loads_with_relative_paths_resolved(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, CITY))
    assert s.node.role is Role.CITY
    assert s.node.city_code == "3301"  # derived from the node id
    assert s.policy.path == tmp_path / "crm.yaml"
    assert s.database.url == f"sqlite:///{tmp_path / 'city.db'}"
    assert s.sync.batch_rows == 5000


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_SYNC__BATCH_ROWS", "77")
    monkeypatch.setenv("SYNCD_NODE__ID", "city-3302")
    s = load_settings(write(tmp_path, CITY))
    assert s.sync.batch_rows == 77
    assert s.node.id == "city-3302"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_CONFIG", str(write(tmp_path, CITY)))
    assert load_settings(None).node.id == "city-3301"


def test_missing_file(tmp_path: Path) -> None:
    e = error_of(tmp_path / "nope.toml")
    assert e.key == "(file)"
    assert "nope.toml" in str(e)


def test_bad_toml_syntax(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, "[node\nid = 1"))
    assert e.key == "(syntax)"
    assert "not valid TOML" in e.reason


def test_unknown_key(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY + "\n[sync]\nbatch_rowz = 5\n"))
    assert e.key == "sync.batch_rowz"
    assert e.reason == "unknown key"


def test_unknown_section(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY + "\n[synk]\nx = 1\n"))
    assert e.key == "synk"


def test_missing_required_key(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY.replace('role = "city"\n', "")))
    assert e.key == "node.role"
    assert e.reason == "required key is missing"


def test_wrong_type(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY + '\n[sync]\nbatch_rows = "many"\n'))
    assert e.key == "sync.batch_rows"
    assert "integer" in e.reason


def test_out_of_range(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY + "\n[sync]\ninterval_seconds = 0\n"))
    assert e.key == "sync.interval_seconds"
    assert "greater than 0" in e.reason


def test_bad_role(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY.replace('role = "city"', 'role = "town"')))
    assert e.key == "node.role"


def test_bad_node_id(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY.replace('id = "city-3301"', 'id = "City 3301"')))
    assert e.key == "node.id"


def test_node_id_with_trailing_newline(tmp_path: Path) -> None:
    # A TOML "\n" escape: `$` in the node id pattern would have accepted it.
    e = error_of(write(tmp_path, CITY.replace('id = "city-3301"', 'id = "city-3301\\n"')))
    assert e.key == "node.id"


def test_unsupported_database_and_password_not_echoed(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY.replace("sqlite:///city.db", "mysql://u:topsecret@h/db")))
    assert e.key == "database.url"
    assert "unsupported database" in e.reason
    assert "topsecret" not in str(e)


def test_postgres_needs_psycopg3(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, CITY.replace("sqlite:///city.db", "postgresql://u@h/db")))
    assert e.key == "database.url"
    assert "psycopg" in e.reason


def test_city_needs_hub_url(tmp_path: Path) -> None:
    text = CITY.replace('[hub]\nurl = "postgresql+psycopg://city:s3cret@hub.example/syncd"\n', "")
    e = error_of(write(tmp_path, text))
    assert e.key == "hub.url"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql+psycopg://city:s3cret@hub/syncd", "s3cret"),
        ("failed: postgresql://u:p%40ss@h:5432/x and more", "p%40ss"),
        ("host=h password=hunter2 dbname=x", "hunter2"),
        ("password='a b c' host=h", "a b c"),
    ],
)
def test_redaction(text: str, secret: str) -> None:
    out = redact_url(text)
    assert secret not in out
    assert "***" in out


def test_audit_timezone_and_four_eyes(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, CITY))
    assert (s.audit.timezone, s.conflicts.four_eyes) == ("UTC", False)
    extra = '[audit]\ntimezone = "Asia/Shanghai"\n[conflicts]\nfour_eyes = true\n'
    s = load_settings(write(tmp_path, CITY + extra))
    assert (s.audit.timezone, s.conflicts.four_eyes) == ("Asia/Shanghai", True)
    for example in ("hub", "city"):
        load_settings(Path(__file__).parents[2] / "config" / f"{example}.example.toml")


def test_unknown_timezone(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, CITY + '[audit]\ntimezone = "Asia/Atlantis"\n'))
    assert err.key == "audit.timezone"
    assert "unknown time zone 'Asia/Atlantis'" in str(err)
