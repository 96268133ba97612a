"""The README's demo command, exactly as written, and what the demo leaves behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncd.core.policy import load_policy
from tests.conftest import POLICY, REPO
from tests.helpers import run_syncd


def readme_demo_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^(make demo)\b", text, re.MULTILINE)
    assert match, "the README must give the demo command"
    return match.group(1)


@pytest.mark.slow
def test_readme_demo_command() -> None:
    proc = subprocess.run(
        readme_demo_command().split(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for check in [
        "✓ daemons stop cleanly on SIGTERM",
        "✓ local tables stay in the cities",
        "✓ excluded columns stay in the cities",
        "✓ prospects (潜在客户) stay in the cities",
        "✓ one golden record per customer identity",
        "✓ invalid ID numbers are quarantined, the rest applied: 3 quarantined, 3 seeded",
        "✓ a manual-rule disagreement opens a conflict",
        "✓ the audit chain verifies",
    ]:
        assert check in out, out[-3000:]
    assert "✗" not in out


@pytest.mark.slow
def test_demo_kept_files_hold_only_public_data(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    proc = run_syncd(
        None,
        "demo",
        "--dir",
        str(target),
        "--cities",
        "2",
        "--customers",
        "60",
        "--seed",
        "3",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    policy = load_policy(POLICY)
    hub = sa.create_engine(f"sqlite:///{target / 'hub.db'}")
    with hub.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert not tables & {t for t, spec in policy.tables.items() if not spec.is_public}
        columns = {c["name"] for c in sa.inspect(conn).get_columns("src_customers")}
        assert "rm_notes" not in columns
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM src_customers WHERE status = 'prospect'")
            ).scalar()
            == 0
        )
        quarantined = conn.execute(
            sa.text("SELECT count(*) FROM syncd_quarantine WHERE status = 'open'")
        ).scalar()
        assert quarantined == 2  # one invalid national ID seeded per city
    hub.dispose()
    # The printed configs work with the other commands.
    status = run_syncd(target / "hub.toml", "status", "--json", check=True)
    assert '"city-3301"' in status.stdout
    verify = run_syncd(target / "hub.toml", "audit", "verify")
    assert verify.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--cities", "0"], "--cities 0"), (["--customers", "3"], "--customers 3")],
)
def test_demo_bad_arguments(args: list[str], message: str) -> None:
    proc = run_syncd(None, "demo", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
