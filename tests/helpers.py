"""Helpers shared by integration and end-to-end tests: configs, nodes, CRM writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from syncd.core.settings import Settings, load_settings
from tests.conftest import POLICY, REPO

SYNCD = str(Path(sys.executable).parent / "syncd")


def write_config(
    path: Path,
    node_id: str,
    role: str,
    db_url: str,
    hub_url: str | None = None,
    *,
    create_schema: bool = True,
    sync: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A node config file; returns its path."""
    lines = [
        "[node]",
        f'id = "{node_id}"',
        f'role = "{role}"',
        "[database]",
        f'url = "{db_url}"',
        "[policy]",
        f'path = "{POLICY}"',
        "[log]",
        'format = "json"',
    ]
    if hub_url:
        lines += ["[hub]", f'url = "{hub_url}"']
    if role == "city":
        lines += ["[crm]", f"create_schema = {'true' if create_schema else 'false'}"]
    sync = {
        "interval_seconds": 0.2,
        "gap_wait_seconds": 0.2,
        "retry_max_wait_seconds": 2,
        **(sync or {}),
    }
    lines += ["[sync]"] + [f"{k} = {v!r}" for k, v in sync.items()]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def settings_for(path: Path) -> Settings:
    return load_settings(path)


def run_syncd(
    config: Path | None,
    *args: str,
    check: bool = False,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `syncd` binary."""
    cmd = [SYNCD] + (["--config", str(config)] if config else []) + list(args)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
