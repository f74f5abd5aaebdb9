"""The runbook's alert rules and the lab's Prometheus config, checked by promtool (no servers)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from resilience.lab.layout import LabLayout, include_dir
from resilience.lab.prometheus_server import render_config, scrape_targets

PROMTOOL = shutil.which("promtool")
RULES = include_dir() / "prometheus" / "alerts.yml"

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60, check=False)


def test_alert_rules_are_valid_and_keep_the_runbook_thresholds() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {name: (r["for"], r["labels"]["severity"]) for name, r in rules.items()} == {
        "api_down": ("1m", "critical"), "error_rate_high": ("3m", "critical"), "response_time_high": ("5m", "warning")}
    assert rules["api_down"]["expr"] == 'up{job="api"} == 0'
    assert "> 0.05" in rules["error_rate_high"]["expr"] and "> 10" in rules["response_time_high"]["expr"]
    assert all(r["annotations"]["summary"] for r in rules.values())


def test_each_alert_fires_above_its_threshold_and_not_below() -> None:
    tested = promtool("test", "rules", str(RULES.with_name("alerts_test.yml")))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_generated_lab_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(scrape_targets(LabLayout(tmp_path, 55320)), rule_files=[str(RULES)]))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
