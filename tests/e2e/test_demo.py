"""The README's demo command, exactly as written, and what the demo leaves behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncd.core.policy import load_policy
from syncd.daemon.lock import NodeLock
from tests.conftest import POLICY, REPO
from tests.helpers import run_syncd


def readme_demo_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^(make demo)\b", text, re.MULTILINE)
    assert match, "the README must give the demo command"
    return match.group(1)


def readme_tour() -> str:
    """The shell block of the README's tour, which goes on from `make demo`'s files."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## A five-minute tour") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's tour must have a sh block"
    return match.group(1)


def fresh_shell_env() -> dict[str, str]:
    """A new user's shell: no syncd on PATH, no SYNCD_ variables."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "VIRTUAL_ENV"))}
    return {**env, "PATH": path}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_make_demo(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`make demo` as a user runs it: the demo, then its console, which must answer and say how
    to sign in, until Ctrl-C (SIGINT to syncd, as the terminal sends it); (exit code, output).
    CONSOLE_PORT: a free port, not the default 8080 other programs on the machine may hold."""
    port = free_port()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env={**env, "CONSOLE_PORT": str(port), "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            # The banner's last line. (Not earlier: communicate() below reads the pipe itself,
            # and what this loop's reader has buffered beyond the line it returned is lost.)
            if line.startswith("The same console later"):
                break
        out = "".join(lines)
        assert f"The hub's web console: http://127.0.0.1:{port}/" in out, out[-3000:]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the demo's console never answered"
                time.sleep(0.2)
        # make runs syncd as its child: Ctrl-C reaches syncd, which stops the console.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for child in children:
            if "--console-port" in Path(f"/proc/{child}/cmdline").read_text(errors="replace"):
                os.kill(int(child), signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(lines) + rest


@pytest.mark.slow
def test_readme_demo_command_and_tour_as_written() -> None:
    env = fresh_shell_env()
    code, out = run_make_demo(readme_demo_command().split(), env)
    assert code == 0, out[-3000:]
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
    # It says where its files are, how to delete them, and how to reach syncd from a shell.
    assert "The demo's files are kept in demo-out/" in out
    assert "`rm -rf demo-out`" in out
    assert "  source .venv/bin/activate" in out
    assert "  cd demo-out" in out
    assert (REPO / "demo-out" / "hub.toml").is_file()
    # Then the console, with a demo user per role and their password, until Ctrl-C.
    assert re.search(r"^Demo users, one per role, password for this run only: \w{16}$", out, re.M)
    for user in ("demo-manager", "demo-auditor", "demo-ops", "demo-steward"):
        assert f"\n  {user} " in out
    # (A recursive make, as under `make test`, adds its "Leaving directory" line after it.)
    shown = [line for line in out.rstrip().splitlines() if not line.startswith("make[")]
    assert shown[-1] == "console stopped"
    # Outside a terminal the demo's tables are plain text: nothing cut, no box drawing.
    assert "…" not in out
    assert not set("│┃━┏└") & set(out)

    tour = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_tour()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert tour.returncode == 0, tour.stdout[-3000:] + tour.stderr[-3000:]
    assert "conflict 1 resolved by steward-li" in tour.stdout
    assert "audit chain intact" in tour.stdout
    assert "schema ok" in tour.stdout

    code, again = run_make_demo(["make", "demo"], env)
    assert code == 0, again[-3000:]
    assert "replacing the previous demo in" in again
    subprocess.run(["make", "clean-demo"], cwd=REPO, check=True, capture_output=True, env=env)
    assert not (REPO / "demo-out").exists()


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
    [
        (["--cities", "0"], "--cities 0"),
        (["--customers", "3"], "--customers 3"),
        (["--console", "--tmp"], "--console serves the demo's files"),
        (["--console", "--console-port", "0"], "--console-port 0"),
    ],
)
def test_demo_bad_arguments(args: list[str], message: str) -> None:
    proc = run_syncd(None, "demo", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_demo_tmp_leaves_nothing(tmp_path: Path) -> None:
    proc = run_syncd(None, "demo", "--tmp", "--cities", "2", "--customers", "40", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("[1/6]")]
    directory = Path(line.rsplit(" in ", 1)[1])
    assert not directory.exists()
    assert "kept in" not in proc.stdout


def test_demo_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    proc = run_syncd(None, "demo", "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert "not empty and not a previous demo's directory" in proc.stderr
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_demo_refuses_to_replace_a_demo_a_daemon_still_runs_on(tmp_path: Path) -> None:
    from syncd.daemon.demo import MARKER

    (tmp_path / MARKER).write_text("", encoding="utf-8")
    (tmp_path / "mine.txt").write_text("kept", encoding="utf-8")
    hub = tmp_path / "hub.db"
    engine = sa.create_engine(f"sqlite:///{hub}")
    with NodeLock(engine, "hub-33"):  # as `syncd --config hub.toml run` holds it
        proc = run_syncd(None, "demo", "--dir", str(tmp_path))
    engine.dispose()
    assert proc.returncode == 2
    assert "still running on the previous demo" in proc.stderr
    assert hub.exists()
    assert (tmp_path / "mine.txt").exists()


def test_demo_console_refuses_a_taken_port_before_the_demo_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_syncd(
            None, "demo", "--dir", str(tmp_path / "d"), "--console", "--console-port", str(port)
        )
    assert proc.returncode == 2
    assert f"--console-port {port}: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "d").exists()  # nothing was started
