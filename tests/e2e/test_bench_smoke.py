"""bench/compare.py --quick runs end to end and reports every section; no figure is judged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SECTIONS = {
    "config": set(),
    "initial_load": {"copy", "native", "syncd"},
    "incremental": {"native", "syncd"},
    "end_of_day": {"native", "syncd"},
    "latency": {"native", "syncd"},
    "write_overhead": {
        "none",
        "native_publication",
        "syncd_capture",
        "syncd_capture_daemons_stopped",
    },
    "rss_mb": {"hub_daemon", "city_daemons", "snapshot"},
}


@pytest.mark.slow
def test_compare_quick_runs_and_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.Popen(
        # Smaller than --quick's own sizes: every phase still runs, and the suite keeps to its
        # 10-minute budget (the end-of-day phase of issue 13 made --quick longer).
        [
            sys.executable,
            str(REPO / "bench" / "compare.py"),
            "--quick",
            *("--customers", "3000", "--transactions", "15", "--samples", "5"),
            *("--out", str(out)),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the bench then stops its daemons and private clusters.
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        pytest.fail(f"bench/compare.py --quick did not finish in 900 s\n{output}")
    assert proc.returncode == 0, output
    results = json.loads(out.read_text(encoding="utf-8"))
    for section, parts in SECTIONS.items():
        assert results.get(section), f"section {section!r} is missing or empty\n{output}"
        missing = parts - set(results[section])
        assert not missing, f"{section} lacks {sorted(missing)}\n{output}"
