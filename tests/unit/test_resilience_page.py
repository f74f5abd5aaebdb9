"""The Resilience page: collecting (fake statement runner), rendering, serving reports, and the plugin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from resilience.plugin import create_app
from resilience.resilience_page import collect, recent_runs, render_html, report_path

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


class UndefinedTable(Exception):  # psycopg.errors.UndefinedTable is matched by name
    pass


ROWS = {
    "run_locks": [("chaos-dr", "manual__1", "dr_activation", T1)],
    "fault_ledger": [(7, "manual__0", "lab", "redis-unavailable", "revert_failed", T0, T1)],
    "runs": [("dr_activation", "manual__2026-11-28T11:00:00+00:00", "dr_operation", "lab", "passed", T1, T1, None,
              None, None, None),
             ("dr_monthly_drill", "scheduled__2026-11-01", "dr_drill", "lab", "passed", T0, T0, None, 13.2, 7.2, None)],
    "dr_regions": [("lab", "dr", True, "manual__1", T1, T0)],
    "incidents": [("inc-20261128-1100-abc123", "P0", "Service Disruption", "lab", "dr_activation", T1,
                   "/reports/dr_activation/manual__2026-11-28T11_00_00_00_00.incident.md", 7)],
}


def allow_all() -> None:
    """Stands in for Airflow's auth check (tested under real Airflow in tests/airflow/)."""


def fake_execute(sql: str, rows: dict[str, list[tuple] | None] = ROWS) -> list[tuple]:
    table = next(t for t in rows if f"FROM {t} " in f"{sql} ")
    if rows[table] is None:
        raise UndefinedTable(f'relation "{table}" does not exist')
    return rows[table]


def test_collect_reads_every_section_and_skips_missing_tables():
    doc = collect(fake_execute)
    assert doc["locks"][0]["dag_id"] == "dr_activation"
    assert [r["dag_id"] for r in recent_runs(doc)] == ["dr_activation", "dr_monthly_drill"]
    assert recent_runs(doc)[1]["result"] == "RTO 0.2 min, RPO 0.1 min"
    never_ran = collect(lambda sql: fake_execute(sql, {**ROWS, "runs": None}))  # the table does not exist yet
    assert never_ran["runs"] == [] and never_ran["regions"]


def test_page_shows_lock_open_faults_serving_region_and_report_links():
    html = render_html(collect(fake_execute))
    assert "<code>manual__1</code>" in html and "revert_failed" in html
    assert '<b class="fail">dr</b>' in html
    assert 'href="reports/dr_activation/manual__2026-11-28T11_00_00_00_00.html"' in html


def test_page_links_each_incident_to_its_drafted_report():
    html = render_html(collect(fake_execute))
    assert "<code>inc-20261128-1100-abc123</code>" in html and "<b>P0</b>" in html
    assert 'href="reports/dr_activation/manual__2026-11-28T11_00_00_00_00.incident.md">incident report</a>' in html


def test_an_empty_control_db_reads_as_all_clear():
    html = render_html(collect(lambda sql: []))
    assert "The chaos/DR lock is free" in html and "No fault is open" in html and "No run recorded yet." in html
    assert "No incident declared yet." in html


def test_report_path_serves_only_reports(tmp_path):
    (tmp_path / "dr_failback").mkdir()
    (tmp_path / "dr_failback" / "run_1.html").write_text("<html>")
    (tmp_path / "secret.html").write_text("no")
    assert report_path(tmp_path, "dr_failback", "run_1.html") == (tmp_path / "dr_failback" / "run_1.html").resolve()
    assert report_path(tmp_path, "dr_failback", "../secret.html") is None
    assert report_path(tmp_path, "unknown_dag", "run_1.html") is None
    assert report_path(tmp_path, "dr_failback", "run_1.sh") is None
    assert report_path(tmp_path, "dr_failback", "missing.html") is None
    (tmp_path / "dr_failback" / "run_1.incident.md").write_text("# Incident Report")
    assert report_path(tmp_path, "dr_failback", "run_1.incident.md") is not None


def test_app_routes():
    from resilience.config import load_config

    report = load_config().report_dir / "dr_activation" / f"test-{uuid.uuid4().hex}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text('{"status": "passed"}')
    try:
        client = TestClient(create_app(fake_execute, access=allow_all))
        assert client.get("/").status_code == 200 and "<h1>Resilience</h1>" in client.get("/").text
        assert client.get("/status.json").json()["regions"][0]["serving"] == "dr"
        assert client.get(f"/reports/dr_activation/{report.name}").json() == {"status": "passed"}
        assert client.get("/reports/dr_activation/..%2Fx.json").status_code == 404
    finally:
        report.unlink()


def test_airflow_loads_the_plugin_from_the_plugins_folder(airflow_db):
    from airflow import plugins_manager

    info = {p["name"]: p for p in plugins_manager.get_plugin_info()}
    assert "resilience" in info, plugins_manager.get_import_errors()
    assert info["resilience"]["external_views"][0]["href"] == "resilience/"
    assert [a["url_prefix"] for a in info["resilience"]["fastapi_apps"]] == ["/resilience"]
    assert not plugins_manager.get_import_errors()


def test_an_unreadable_control_db_is_explained():
    def broken(sql):
        raise ConnectionError("connection refused")

    response = TestClient(create_app(broken, access=allow_all)).get("/")
    assert response.status_code == 503 and "ConnectionError: connection refused" in response.text


def test_every_route_asks_airflow_for_a_login():
    client = TestClient(create_app(fake_execute))
    for path in ("/", "/status.json", "/reports/dr_activation/x.json"):
        response = client.get(path)
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
        assert "Resilience" not in response.text
