"""The lab's Prometheus: config rendered from ``include/prometheus/lab/``, runs as ``nobody``."""

from __future__ import annotations

import json
import logging
import shutil
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

from resilience.lab.app_process import wait_http_ok
from resilience.lab.daemons import is_alive, log_tail, running_pid, start_daemon, stop_daemon, wait_for
from resilience.lab.errors import LabError
from resilience.lab.layout import DR_HOST, HOST, NODES, LabLayout, include_dir
from resilience.lab.osuser import NOBODY, make_dir

log = logging.getLogger(__name__)

TEMPLATE = "prometheus/lab/prometheus.yml.tmpl"
RULES = "prometheus/alerts.yml"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not found:
        raise LabError("prometheus binary not found: apt-get install prometheus")
    return found


def scrape_targets(layout: LabLayout) -> dict[str, Any]:
    """host:port of every scrape target; ``api`` / ``dr_api`` map replica name -> target. The DR region's
    targets are listed whether it runs or not (down while it is stopped)."""
    def target(component: str) -> str:
        return f"{HOST}:{layout.port(component)}"

    return {"lb": [target("lb")], "api": {n: f"{HOST}:{layout.replica_port(n)}" for n in layout.replica_names},
            "lab": [target("supervisor")], "s3": [target("s3_proxy")], "prometheus": [target("prometheus")],
            "dr_lb": [f"{DR_HOST}:{layout.port('lb')}"],
            "dr_api": {n: f"{HOST}:{layout.replica_port(n)}" for n in layout.region_replica_names("dr")},
            "dr_lab": [target("dr_supervisor")], "loadgen": [target("loadgen")],
            "patroni": {n: target(f"patroni_{n}") for n in NODES}}


def render_config(targets: Mapping[str, Any], scrape_interval: str = "1s", rule_files: Sequence[str] = (),
                  template: Path | None = None) -> str:
    """The lab's prometheus.yml: every job scraped every ``scrape_interval``; JSON is valid YAML."""
    text = (template or include_dir() / TEMPLATE).read_text()
    api = [{"targets": [t], "labels": {"replica": name, "service": "demo-app"}}
           for name, t in targets["api"].items()]
    dr_api = [{"targets": [t], "labels": {"replica": name, "service": "demo-app", "region": "dr"}}
              for name, t in targets["dr_api"].items()]
    patroni = [{"targets": [t], "labels": {"node": name}} for name, t in targets["patroni"].items()]
    return Template(text).substitute(
        patroni_static_configs=json.dumps(patroni),
        scrape_interval=scrape_interval,
        lb_targets=json.dumps(list(targets["lb"])),
        api_static_configs=json.dumps(api),
        dr_lb_targets=json.dumps(list(targets["dr_lb"])),
        dr_api_static_configs=json.dumps(dr_api),
        loadgen_targets=json.dumps(list(targets["loadgen"])),
        dr_lab_targets=json.dumps(list(targets["dr_lab"])),
        lab_targets=json.dumps(list(targets["lab"])),
        s3_targets=json.dumps(list(targets["s3"])),
        prometheus_targets=json.dumps(list(targets["prometheus"])),
        rule_files=json.dumps(list(rule_files)),
    )


def rules_file(layout: LabLayout) -> Path:
    return layout.prometheus_dir / "alerts.yml"


def write_config(layout: LabLayout) -> bool:
    """Copy the alert rules and render prometheus.yml into the lab dir; True if the config changed."""
    make_dir(layout.prometheus_dir, None, 0o755)
    rules = rules_file(layout)
    old_rules = rules.read_text() if rules.exists() else None
    rules.write_text((include_dir() / RULES).read_text())
    rules.chmod(0o644)
    conf = config_file(layout)
    text = render_config(scrape_targets(layout), rule_files=[str(rules)])
    changed = not conf.exists() or conf.read_text() != text or old_rules != rules.read_text()
    conf.write_text(text)
    conf.chmod(0o644)
    return changed


def reload(layout: LabLayout) -> None:
    """``POST /-/reload`` (the lab runs Prometheus with --web.enable-lifecycle)."""
    request = urllib.request.Request(f"{layout.url('prometheus')}/-/reload", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10):
        log.info("Prometheus reloaded its configuration (%s)", config_file(layout))


def config_file(layout: LabLayout) -> Path:
    return layout.prometheus_dir / "prometheus.yml"


def pid_file(layout: LabLayout) -> Path:
    return layout.run_dir / "prometheus.pid"


def argv(layout: LabLayout) -> list[str]:
    return [
        prometheus_binary(),
        f"--config.file={config_file(layout)}",
        f"--storage.tsdb.path={layout.prometheus_dir / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={HOST}:{layout.port('prometheus')}",
        "--web.enable-lifecycle",
    ]


def is_running(layout: LabLayout) -> int | None:
    return running_pid(pid_file(layout))


def start(layout: LabLayout, timeout_s: float = 15.0) -> int:
    """Render the config, start Prometheus as ``nobody`` (when root) and wait for ``/-/ready``."""
    url = layout.url("prometheus")
    changed = write_config(layout)
    existing = is_running(layout)
    if existing is not None:
        log.info("Prometheus already up on %s (pid %d)", url, existing)
        if changed:
            reload(layout)
        return existing
    make_dir(layout.prometheus_dir / "data", NOBODY, 0o750)
    log_file = layout.run_dir / "prometheus.log"
    log.info("Starting Prometheus on %s (jobs lb, api, dr_lb, dr_api, loadgen, lab, s3 every 1 s; rules %s; "
             "data %s)", url,
             rules_file(layout), layout.prometheus_dir / "data")
    pid = start_daemon(argv(layout), pid_file(layout), log_file, user=NOBODY)
    if not wait_http_ok(f"{url}/-/ready", timeout_s, lambda: is_alive(pid)):
        stop_daemon(pid_file(layout), timeout_s=5, name="Prometheus")
        raise LabError(f"Prometheus on {url} not ready within {timeout_s:.0f} s\n--- {log_file}:\n"
                       f"{log_tail(log_file)}")
    return pid


def target_up(prometheus_url: str, job: str) -> bool:
    """True once this Prometheus process has scraped every target of ``job`` successfully.

    Asks ``/api/v1/targets`` (live scrape state), not ``up{job=...}``: after a restart the
    TSDB still holds the previous run's samples.
    """
    try:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/targets?state=active", timeout=2) as response:
            targets = json.load(response)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return False
    ours = [t for t in targets if t.get("labels", {}).get("job") == job]
    return bool(ours) and all(t.get("health") == "up" for t in ours)


def wait_for_first_scrape(layout: LabLayout, job: str = "lb", timeout_s: float = 15.0) -> bool:
    """Wait until job ``job`` is scraped as up (Prometheus syncs new targets within ~5 s)."""
    url = f"http://{HOST}:{layout.port('prometheus')}"
    if wait_for(lambda: target_up(url, job), timeout_s, interval_s=0.25):
        log.info('Prometheus scrapes job %s: up{job="%s"} == 1', job, job)
        return True
    log.warning("Prometheus has not scraped job %s as up within %.0f s (see %s/targets)", job, timeout_s, url)
    return False


def stop(layout: LabLayout) -> bool:
    return stop_daemon(pid_file(layout), timeout_s=10, name="Prometheus")
