"""The example configs, copied as docs/operators.md says, find their policy and start a node."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import SYNCD

OPERATORS = REPO / "docs" / "operators.md"


def setup_commands(section: str) -> list[str]:
    """The `mkdir`/`cp` lines of a section's first sh block in docs/operators.md."""
    text = OPERATORS.read_text(encoding="utf-8")
    body = text[text.index(section) :]
    block = re.search(r"```sh\n(.*?)```", body, re.DOTALL)
    assert block, f"{section}: no sh block"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith(("mkdir ", "cp "))]


def _syncd(etc: Path, config: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    return subprocess.run(
        [SYNCD, *args, "--config", str(etc / config)],
        cwd="/",  # relative paths in a config do not depend on where syncd runs
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        check=False,
    )


def _copy_as_documented(section: str, etc: Path) -> None:
    commands = setup_commands(section)
    assert any("example.toml" in c for c in commands), commands
    script = "\n".join(c.replace("/etc/syncd", str(etc)) for c in commands)
    subprocess.run(["sh", "-ec", script], cwd=REPO, check=True)


@pytest.mark.parametrize("first", [True, False], ids=["fresh", "hub-already-there"])
def test_city_example_copied_as_documented_finds_its_policy(tmp_path: Path, first: bool) -> None:
    etc = tmp_path / "etc-syncd"
    if not first:
        _copy_as_documented("## 1. The hub", etc)
    _copy_as_documented("## 2. A city", etc)
    env = {
        "SYNCD_DATABASE__URL": f"sqlite:///{tmp_path / 'crm.db'}",
        "SYNCD_HUB__URL": f"sqlite:///{tmp_path / 'hub.db'}",
    }
    check = _syncd(etc, "city-3301.toml", "schema", "check", **env)
    assert check.returncode == 2  # an empty CRM: every table is missing, and said so
    assert "table is missing" in check.stdout
    assert "cannot read" not in check.stderr, check.stderr
    init = _syncd(etc, "city-3301.toml", "init", **env, SYNCD_CRM__CREATE_SCHEMA="true")
    assert init.returncode == 0, init.stderr
    assert _syncd(etc, "city-3301.toml", "schema", "check", **env).returncode == 0


def test_hub_example_copied_as_documented_initialises(tmp_path: Path) -> None:
    etc = tmp_path / "etc-syncd"
    _copy_as_documented("## 1. The hub", etc)
    env = {"SYNCD_DATABASE__URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    init = _syncd(etc, "hub.toml", "init", **env)
    assert init.returncode == 0, init.stderr
    check = _syncd(etc, "hub.toml", "schema", "check", **env)
    assert check.returncode == 0, check.stdout + check.stderr
