"""deploy/: every YAML and JSON file parses, and everything it names exists.

Metric names in the Grafana dashboard and the Prometheus alert rules are checked against the
registry of `syncd.daemon.metrics.Metrics` (with the suffixes Prometheus gives samples), the compose
node configs load as syncd settings and are scraped where prometheus.yml says, the systemd units
run `syncd --config FILE run` with the stop and restart settings the daemon relies on, and the
compose trial's init scripts really register cities and hand them their credentials.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.core.settings import load_settings
from syncd.daemon.metrics import STATUS_GAUGES, Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "syncd.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
UNITS = DEPLOY / "systemd"

YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(DEPLOY.rglob("*.json"))

# A metric name in PromQL: syncd_ followed by name characters (label values and label names
# never start with syncd_ in our files; `up` is Prometheus's own and not checked).
METRIC_RE = re.compile(r"\bsyncd_[a-zA-Z0-9_]*")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}
REQUIRED_IN_DASHBOARD = {
    "syncd_backlog_rows",
    "syncd_lag_seconds",
    "syncd_batches_total",
    "syncd_rows_total",
    "syncd_retries_total",
    "syncd_errors_total",
    "syncd_conflicts_open",
    "syncd_quarantined_rows",
    "syncd_push_duration_seconds_bucket",
    "syncd_apply_duration_seconds_bucket",
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "StateDirectory": "syncd",
    "ReadWritePaths": "/var/lib/syncd",
    "User": "syncd",
}


def exported_names() -> set[str]:
    """Every sample name the syncd registry can expose, whatever its labels."""
    names: set[str] = set(STATUS_GAUGES)  # read from the database at each scrape
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    return set(METRIC_RE.findall(expr))


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in all_panels(d["panels"]) for t in p.get("targets", [])]
    exprs += [
        v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        for v in d["templating"]["list"]
        if v["type"] == "query"
    ]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_DIR / "docker-compose.yml")
    return data


def expand(value: str) -> str:
    """Compose's `${VAR:-default}` interpolation, with no variable set (the trial's defaults)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def unit(name: str) -> configparser.ConfigParser:
    # strict=False: SystemCallFilter= appears twice, as systemd allows; no interpolation: %i.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name, encoding="utf-8")
    return parser


# --- every file parses ----------------------------------------------------------------------


def test_deploy_has_the_expected_files() -> None:
    assert len(YAML_FILES) >= 6
    assert JSON_FILES == [DASHBOARD]
    for name in ("syncd-city@.service", "syncd-hub.service", "syncd-console.service"):
        assert (UNITS / name).is_file()
    assert (DEPLOY / "nginx" / "syncd-console.conf").is_file()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_parses(path: Path) -> None:
    with path.open(encoding="utf-8") as f:
        assert isinstance(json.load(f), dict)


# --- metric names ----------------------------------------------------------------------------


def test_registry_names_include_the_sample_suffixes() -> None:
    names = exported_names()
    assert {
        "syncd_batches_total",
        "syncd_push_duration_seconds_bucket",
        "syncd_apply_duration_seconds_count",
        "syncd_lag_seconds",
    } <= names
    # The check below is not vacuous: a misspelt or suffix-less name is caught.
    assert metric_names("rate(syncd_batch_total[5m]) + syncd_push_duration_seconds") == {
        "syncd_batch_total",
        "syncd_push_duration_seconds",
    }
    assert not {"syncd_batch_total", "syncd_push_duration_seconds"} & names


def test_dashboard_metrics_exist() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert used - exported_names() == set()
    assert used >= REQUIRED_IN_DASHBOARD


def test_alert_metrics_exist() -> None:
    used = set().union(*(metric_names(r["expr"]) for r in alert_rules()))
    tests = load_yaml(ALERT_TESTS)["tests"]
    used |= {
        name
        for case in tests
        for series in case["input_series"]
        for name in metric_names(series["series"])
    }
    assert used - exported_names() == set()
    assert {"syncd_lag_seconds", "syncd_errors_total", "syncd_retries_total"} <= used
    assert {"syncd_quarantined_rows", "syncd_conflicts_open"} <= used


# --- alert rules -----------------------------------------------------------------------------


def test_alert_rules_cover_the_runbook() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert rules["SyncdCityLagHigh"]["expr"] == "syncd_lag_seconds > 3600"
    assert rules["SyncdCityLagHigh"]["for"] == "10m"
    assert rules["SyncdErrors"]["expr"] == "increase(syncd_errors_total[15m]) > 0"
    assert rules["SyncdConflictsOpen"]["for"] == "1d"
    assert "syncd_retries_total" in rules["SyncdRetryStorm"]["expr"]
    assert "syncd_quarantined_rows" in rules["SyncdQuarantineRising"]["expr"]
    assert re.fullmatch(r'up\{job=~"syncd-\.\*"\} == 0', rules["SyncdDaemonDown"]["expr"])
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        # syncd's own `job` label reaches Prometheus as `task`.
        assert "$labels.job }} cycles" not in rule["annotations"]["summary"], name
    tested = {
        t["alertname"] for case in load_yaml(ALERT_TESTS)["tests"] for t in case["alert_rule_test"]
    }
    assert tested == set(rules)


def test_prometheus_loads_the_rules_and_names_nodes() -> None:
    prom = load_yaml(PROMETHEUS)
    assert [(PROMETHEUS.parent / f).resolve() for f in prom["rule_files"]] == [ALERTS]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert {"syncd-hub", "syncd-city"} <= set(jobs)
    for name in ("syncd-hub", "syncd-city"):
        role = name.removeprefix("syncd-")
        for static in jobs[name]["static_configs"]:
            assert static["labels"]["role"] == role
            assert static["labels"]["node"]
        assert {"source_labels": ["node"], "target_label": "instance"} in jobs[name][
            "relabel_configs"
        ]


# --- Grafana -----------------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            if "syncd_" in t["expr"]:
                assert 'job=~"$job"' in t["expr"], t["expr"]
                assert 'instance=~"$instance"' in t["expr"], t["expr"]


def test_grafana_provisioning_matches_compose() -> None:
    grafana = DEPLOY / "grafana"
    ds = load_yaml(grafana / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"]
    assert ds[0]["isDefault"] is True
    provider = load_yaml(grafana / "provisioning" / "dashboards" / "syncd.yml")["providers"][0]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "../grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro" in mounts


# --- systemd -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "config"),
    [("syncd-city@.service", "/etc/syncd/%i.toml"), ("syncd-hub.service", "/etc/syncd/hub.toml")],
)
def test_systemd_unit(name: str, config: str) -> None:
    u = unit(name)
    svc = u["Service"]
    assert svc["ExecStart"].split() == ["/opt/syncd/bin/syncd", "--config", config, "run"]
    assert "ExecStartPre" not in svc  # `syncd init` is an explicit ops step
    assert svc["Restart"] == "on-failure"
    assert svc["RestartSec"]
    assert svc["RestartPreventExitStatus"] == "2"  # bad config: restarting cannot fix it
    assert svc["KillSignal"] == "SIGTERM"
    assert int(svc["TimeoutStopSec"]) >= 60
    assert svc["EnvironmentFile"] == "-" + config.removesuffix(".toml") + ".env"
    assert svc["SystemCallFilter"] == "~@privileged @resources"  # the later of the two lines
    assert "@system-service" in (UNITS / name).read_text(encoding="utf-8")
    for key, value in HARDENING.items():
        assert svc[key] == value, key
    assert int(u["Unit"]["StartLimitBurst"]) > 0
    assert int(u["Unit"]["StartLimitIntervalSec"]) > 0
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_console_unit() -> None:
    u = unit("syncd-console.service")
    svc = u["Service"]
    config = "/etc/syncd/hub.toml"
    assert svc["ExecStart"].split() == ["/opt/syncd/bin/syncd", "--config", config, "console"]
    assert svc["EnvironmentFile"] == "-/etc/syncd/hub.env"
    assert svc["Restart"] == "on-failure"
    assert svc["RestartPreventExitStatus"] == "2"
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["SystemCallFilter"] == "~@privileged @resources"
    for key, value in HARDENING.items():
        assert svc[key] == value, key
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_nginx_console_proxy() -> None:
    """TLS at the proxy, the console at /syncd/ with the prefix stripped (the console's
    root_path puts it back), the scheme forwarded, plain HTTP redirected."""
    text = (DEPLOY / "nginx" / "syncd-console.conf").read_text(encoding="utf-8")
    conf = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert conf.count("{") == conf.count("}")
    assert re.search(r"listen 443 ssl;", conf)
    assert re.search(r"ssl_certificate\s+\S+;", conf)
    assert re.search(r"location /syncd/ \{[^}]*proxy_pass http://127\.0\.0\.1:8080/;", conf)
    assert re.search(r"proxy_set_header X-Forwarded-Proto\s+\$scheme;", conf)
    assert "return 301 https://$host$request_uri;" in conf
    assert 'root_path = "/syncd"' in text


# --- compose -----------------------------------------------------------------------------------


def test_compose_dependencies_are_well_formed() -> None:
    services = compose()["services"]
    assert {"hub-db", "crm-3301-db", "crm-3302-db", "prometheus", "grafana"} <= set(services)
    assert {"hub-init", "hub", "city-3301-init", "city-3301", "city-3302-init", "city-3302"} <= (
        set(services)
    )
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            elif cond["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", (name, dep)
            else:
                pytest.fail(f"{name}: unexpected condition {cond}")
        for mount in svc.get("volumes", []):
            host = mount.split(":", 1)[0]
            if host.startswith("."):
                assert (COMPOSE_DIR / host).exists(), (name, mount)
        entry = svc.get("entrypoint", [])
        for arg in entry:
            if arg.startswith("/scripts/"):
                assert (COMPOSE_DIR / "scripts" / arg.removeprefix("/scripts/")).is_file()
    for db in ("hub-db", "crm-3301-db", "crm-3302-db"):
        assert services[db]["image"].startswith("postgres:15")
    daemons = [n for n, s in services.items() if s.get("command") == ["run"]]
    assert sorted(daemons) == ["city-3301", "city-3302", "hub"]
    for name in daemons:
        init = "hub-init" if name == "hub" else f"{name}-init"
        assert services[name]["depends_on"][init]["condition"] == "service_completed_successfully"


def _scrape_targets() -> dict[str, dict[str, str]]:
    prom = load_yaml(PROMETHEUS)
    return {
        target: static.get("labels", {})
        for job in prom["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }


@pytest.mark.parametrize(
    "config", sorted((COMPOSE_DIR / "config").glob("*.toml")), ids=lambda p: p.name
)
def test_compose_node_config_loads_and_is_scraped(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose()["services"]
    (name,) = [
        n
        for n, s in services.items()
        if s.get("command") == ["run"]
        and s["environment"]["SYNCD_CONFIG"] == f"/etc/syncd/{config.name}"
    ]
    env = {k: expand(str(v)) for k, v in services[name]["environment"].items()}
    for key in [k for k in os.environ if k.startswith("SYNCD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SYNCD_DATABASE__URL", env["SYNCD_DATABASE__URL"])
    if "SYNCD_CREDS_FILE" in env:  # a city: hub-init's file provides the hub URL
        monkeypatch.setenv("SYNCD_HUB__URL", "postgresql+psycopg://r:pw@hub-db:5432/syncd_hub")
    s = load_settings(config)
    assert s.node.id == config.stem
    assert s.database.url == env["SYNCD_DATABASE__URL"]  # the environment wins over the file
    assert str(s.policy.path) == "/usr/share/syncd/schemas/crm.yaml"
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert "/usr/share/syncd/schemas" in dockerfile
    assert s.metrics.port is not None
    assert s.metrics.address == "0.0.0.0"
    labels = _scrape_targets()[f"{name}:{s.metrics.port}"]
    assert labels == {"node": s.node.id, "role": s.node.role.value}
    assert f"127.0.0.1:{s.metrics.port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
    expected = 9330 if s.is_hub else 9331 + int(s.node.city_code or 0) - 3301
    assert s.metrics.port == expected


# --- the compose trial's init scripts, run for real on SQLite -------------------------------------


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(COMPOSE_DIR / "scripts" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_trial_init_scripts_register_cities_and_hand_over_credentials(tmp_path: Path) -> None:
    policy = REPO / "schemas" / "crm.yaml"
    (tmp_path / "hub.toml").write_text(
        f'[node]\nid = "hub-33"\nrole = "hub"\n[database]\nurl = "sqlite:///hub.db"\n'
        f'[policy]\npath = "{policy}"\n',
        encoding="utf-8",
    )
    (tmp_path / "city.toml").write_text(
        f'[node]\nid = "city-3301"\nrole = "city"\n[database]\nurl = "sqlite:///city.db"\n'
        f'[policy]\npath = "{policy}"\n[crm]\ncreate_schema = true\n',
        encoding="utf-8",
    )
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    hub_env = {
        **base,
        "SYNCD_CONFIG": str(tmp_path / "hub.toml"),
        "SYNCD_CREDS_DIR": str(creds),
        "SYNCD_TRIAL_CITIES": "city-3301 city-3302",
    }

    first = _run("hub-init.sh", hub_env)
    assert first.returncode == 0, first.stderr
    for node in ("city-3301", "city-3302"):
        f = creds / f"{node}.env"
        assert f.stat().st_mode & 0o077 == 0
        assert f.read_text(encoding="utf-8").startswith("SYNCD_HUB__URL=")

    again = _run("hub-init.sh", hub_env)  # every `docker compose up` runs it again
    assert again.returncode == 0, again.stderr
    assert "already registered" in again.stdout

    city_env = {
        **base,
        "SYNCD_CONFIG": str(tmp_path / "city.toml"),
        "SYNCD_CREDS_FILE": str(creds / "city-3301.env"),
    }
    init = _run("city-entrypoint.sh", city_env, "init", "--json")
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["node_id"] == "city-3301"
    push = _run("city-entrypoint.sh", city_env, "sync", "--once", "--json")
    assert push.returncode == 0, push.stderr
    assert json.loads(push.stdout)["role"] == "city"

    missing = _run("city-entrypoint.sh", {**city_env, "SYNCD_CREDS_FILE": str(tmp_path / "no")})
    assert missing.returncode == 2
    assert "has hub-init run?" in missing.stderr

    (creds / "city-3302.env").unlink()  # registered, but its one-time credentials are lost
    lost = _run("hub-init.sh", hub_env)
    assert lost.returncode == 1
    assert "city-3302 is registered at the hub" in lost.stderr


def test_promtool_passes_the_alert_rules_and_their_unit_tests() -> None:
    """`promtool check rules` and `promtool test rules`: the rules parse and fire as written.

    .ci/run installs promtool (Debian's prometheus package); CI fails without it. A developer
    machine without it skips, with the reason in pytest's summary.
    """
    import os
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed: .ci/run installs Debian's prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus); CI runs this")
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        done = subprocess.run(
            [promtool, *args], capture_output=True, text=True, check=False, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
