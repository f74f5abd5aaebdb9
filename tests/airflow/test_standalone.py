"""`resilience airflow up` under real Airflow: the sweeper runs by itself, no password leaks, the page has a login."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.integration]


def test_up_shows_every_dag_and_the_sweeper_on(real_airflow):
    out = real_airflow.up_output
    [line] = [ln for ln in out.splitlines() if ln.startswith("  chaos_abort ")]
    assert line.split()[1] == "unpaused", out
    assert "chaos_campaign" in out and "PAUSED" in out, out  # the others wait for someone to unpause them
    assert "chaos_abort is on: it sweeps every 2 minutes" in out, out


def test_up_never_shows_the_password(real_airflow):
    sa = real_airflow.sa
    password = sa.password()
    assert str(sa.passwords_file) in real_airflow.up_output
    assert password not in real_airflow.up_output
    assert password not in sa.logfile.read_text(errors="replace"), f"the admin password is in {sa.logfile}"
    assert sa.passwords_file.stat().st_mode & 0o077 == 0, "the passwords file is readable by others"


def test_chaos_abort_is_unpaused_and_runs_on_its_schedule(real_airflow):
    """Nobody unpauses it: created unpaused, the scheduler starts its latest interval, then one every 2 minutes."""
    api = real_airflow.api
    assert api.get("/dags/chaos_abort").json()["is_paused"] is False

    def scheduled(state: str) -> list[dict]:
        runs = api.get("/dags/chaos_abort/dagRuns", params={"run_type": "scheduled", "state": state}).json()
        return [r for r in runs["dag_runs"] if r["run_type"] == "scheduled" and r["state"] == state]

    try:  # the first run may have started before a busy machine's API server answered: any later one counts
        [run, *_] = real_airflow.wait_for(lambda: scheduled("success"), 300, "a successful scheduled chaos_abort run")
    except AssertionError:
        failed = scheduled("failed")
        raise AssertionError("\n".join(real_airflow.failure_logs("chaos_abort", r["dag_run_id"]) for r in failed)) from None
    assert run["triggered_by"] == "timetable"


@pytest.mark.parametrize("path", ["/resilience/", "/resilience/status.json"])
def test_the_resilience_page_needs_an_airflow_login(real_airflow, path):
    url = real_airflow.sa.base_url + path
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30).status_code in (401, 403)
    token = httpx.post(f"{real_airflow.sa.base_url}/auth/token", timeout=30,
                       json={"username": "admin", "password": real_airflow.sa.password()}).json()["access_token"]
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert "<h1>Resilience</h1>" in response.text or "locks" in response.json()
    # the UI's nav link: the browser sends the session cookie the login page set
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    assert httpx.get(url, cookies={COOKIE_NAME_JWT_TOKEN: token}, timeout=30).status_code == 200


def test_the_metadata_db_is_postgresql_on_the_lab(real_airflow):
    """Airflow's own state lives in this home's database on the control-plane PostgreSQL, not in a SQLite
    file (one writer at a time: a trigger once waited 30 s behind the scheduler on a busy machine)."""
    import psycopg

    from resilience import airflow_local

    sa, db = real_airflow.sa, real_airflow.lab["control_db"]

    def sweeps() -> int:
        with psycopg.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                             dbname=airflow_local.metadata_db_name(sa)) as conn:
            return conn.execute("SELECT count(*) FROM dag_run WHERE dag_id = 'chaos_abort'").fetchone()[0]

    assert real_airflow.wait_for(sweeps, 300, "a chaos_abort run in the PostgreSQL metadata DB") >= 1
    assert not (sa.home / "airflow.db").exists(), "a SQLite metadata DB was created in the home"
