"""The CLI as users type it: `--config` before or after the sub-command, no config, --help text."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer

from syncd.city.crm import crm_metadata
from syncd.cli import app, command
from syncd.core.policy import load_policy
from tests.conftest import POLICY
from tests.helpers import SYNCD, run_syncd, write_config

# Read commands that work on a freshly initialised SQLite hub and print the same thing twice.
HUB_COMMANDS = [
    ["status"],
    ["schema", "check"],
    ["audit", "log"],
    ["node", "list"],
    ["quarantine", "list"],
    ["report", "cities"],
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hub")
    conf = write_config(d / "hub.toml", "hub-33", "hub", f"sqlite:///{d / 'hub.db'}")
    run_syncd(conf, "init", check=True)
    run_syncd(conf, "node", "add", "city-3301", check=True)
    return conf


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else _clean_env(),
        check=False,
    )


@pytest.mark.parametrize("command", HUB_COMMANDS, ids=" ".join)
def test_config_before_and_after_the_sub_command(hub: Path, command: list[str]) -> None:
    before = _run("--config", str(hub), *command, "--json")
    after = _run(*command, "--json", "--config", str(hub))
    assert before.returncode == 0, before.stderr
    assert (after.returncode, after.stdout) == (before.returncode, before.stdout), after.stderr


def test_short_config_after_the_sub_command(hub: Path) -> None:
    proc = _run("node", "list", "-c", str(hub), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "city-3301" in proc.stdout


def test_config_between_group_and_command(hub: Path) -> None:
    proc = _run("schema", "--config", str(hub), "check")
    assert proc.returncode == 0, proc.stderr


def test_syncd_config_env_and_the_nearer_option_wins(hub: Path, tmp_path: Path) -> None:
    env = {**_clean_env(), "SYNCD_CONFIG": str(hub)}
    assert _run("node", "list", "--json", env=env).returncode == 0
    missing = str(tmp_path / "missing.toml")
    # The option wins over the environment, wherever it is; after the command over before it.
    for args in (["node", "list", "--config", missing], ["--config", missing, "node", "list"]):
        proc = _run(*args, env=env)
        assert proc.returncode == 2
        assert f"{missing}: (file): cannot read" in proc.stderr
    proc = _run("--config", missing, "node", "list", "--config", str(hub), env=env)
    assert proc.returncode == 0, proc.stderr


def test_no_config_says_how_to_give_one() -> None:
    proc = _run("status")
    assert proc.returncode == 2
    assert proc.stderr.startswith("syncd: error: no configuration: pass --config FILE")
    assert "SYNCD_CONFIG" in proc.stderr
    assert "config/hub.example.toml" in proc.stderr
    assert "required key" not in proc.stderr


def test_environment_only_config_still_names_the_missing_key() -> None:
    proc = _run("status", env={**_clean_env(), "SYNCD_NODE__ID": "hub-33"})
    assert proc.returncode == 2
    assert "node.role: required key is missing" in proc.stderr


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, group
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(cmd, (*path, name))


def _bracketed(cmd: Any) -> set[str]:
    texts = [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]
    return {m for t in texts for m in re.findall(r"\[[^\]\s]+\]", t)}


# Every command, as typer builds it before syncd's own changes to the tree.
ALL_COMMANDS = list(_commands(typer.main.get_command(app)))


def test_help_keeps_bracketed_words_and_offers_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's --help, rendered by the built command tree in one process (one
    subprocess per command cost a minute of the suite; the subprocess below covers the entry
    point itself)."""
    monkeypatch.setenv("COLUMNS", "200")
    root = command()
    for path, cmd in ALL_COMMANDS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = root.main([*path, "--help"], prog_name="syncd", standalone_mode=False)
        shown = buf.getvalue()
        assert code in (0, None), shown
        for word in _bracketed(cmd):
            assert word in shown, f"{' '.join(path)} --help lost {word}:\n{shown}"
        assert "--config" in shown, " ".join(path)


def test_the_help_text_that_lost_report_keeps_it() -> None:
    proc = _run("report", "value", "--help", env={**_clean_env(), "COLUMNS": "200"})
    assert "with value tiers ([report] weights)" in proc.stdout


def test_schema_check_before_init_says_run_init(tmp_path: Path) -> None:
    """A CRM with its tables but no capture triggers yet: one line naming `syncd init`."""
    crm = tmp_path / "city.db"
    engine = sa.create_engine(f"sqlite:///{crm}")
    crm_metadata(load_policy(POLICY)).create_all(engine)
    engine.dispose()
    conf = write_config(
        tmp_path / "city.toml",
        "city-3301",
        "city",
        f"sqlite:///{crm}",
        f"sqlite:///{tmp_path / 'hub.db'}",
        create_schema=False,
    )
    proc = run_syncd(conf, "schema", "check")
    assert proc.returncode == 2
    (line,) = proc.stdout.splitlines()
    assert re.fullmatch(
        r"\d+ capture triggers are missing \(on .*customers.*\): run `syncd init`.*", line
    )
    listed = json.loads(run_syncd(conf, "schema", "check", "--json").stdout)["problems"]
    assert len(listed) == int(line.split()[0])
    run_syncd(conf, "init", check=True)
    assert run_syncd(conf, "schema", "check").returncode == 0
