"""The Grafana dashboards' queries against the lab's Prometheus: every one parses and runs, and the
ones that describe a running lab return data (a renamed metric would leave a panel empty)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "include" / "grafana" / "dashboards").glob("*.json"))
# panels that may be empty in a healthy lab with no DR region and no firing alert
MAY_BE_EMPTY = ("dr_lb", "ALERTS")


def targets():
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield pytest.param(target["expr"], id=f"{path.stem}: {panel['title']} {target['refId']}")


def query(prometheus_url: str, expr: str) -> dict:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_there_are_dashboards():
    assert {p.stem for p in DASHBOARDS} == {"dr-status", "chaos-engineering"}


@pytest.mark.parametrize("expr", targets())
def test_panel_query_runs_on_the_lab(lab, expr):
    deadline = time.monotonic() + 15  # a rate() needs two scrapes of a lab that may have just come up
    while True:
        answer = query(lab["prometheus"]["url"], expr)
        assert answer["status"] == "success", answer
        if any(word in expr for word in MAY_BE_EMPTY) or answer["data"]["result"]:
            return
        assert time.monotonic() < deadline, f"no data for {expr}"
        time.sleep(0.5)
