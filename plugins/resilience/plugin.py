"""The Airflow plugin: a "Resilience" page in the UI's navigation, served by a small FastAPI app.

``/resilience/`` is the status page (lock, open faults, serving regions, recent runs with
reports), ``/resilience/status.json`` the same as JSON, ``/resilience/reports/<dag>/<file>``
the reports. Read-only. Like every plugin FastAPI app in Airflow 3.3 it is not behind
Airflow's login: it shows no secrets (DSNs in reports carry no password), and a deployment
that must restrict it puts the API server behind its usual access control.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


def _execute(sql: str) -> list[tuple]:
    from resilience.config import load_config
    from resilience.controldb import ControlDb, postgres_connect

    return ControlDb(postgres_connect(load_config().control_db_conn_id)).execute(sql)


def create_app(execute: Any = _execute) -> Any:
    """The FastAPI app; ``execute`` runs one SQL statement on the control DB (a test may pass its own)."""
    import json

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response

    from resilience import status_page

    app = FastAPI(title="Resilience", description=__doc__.partition("\n")[0])

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:  # sync: FastAPI runs it in its thread pool, off the event loop
        try:
            doc = status_page.collect(execute)
        except Exception as exc:  # say why, rather than a bare 500
            return HTMLResponse(status_page.render_unavailable(f"{type(exc).__name__}: {exc}"), status_code=503)
        return HTMLResponse(status_page.render_html(doc))

    @app.get("/status.json")
    def status() -> Response:
        doc = status_page.collect(execute)
        return Response(json.dumps(doc, default=str), media_type="application/json")

    @app.get("/reports/{dag_id}/{name}")
    def report(dag_id: str, name: str) -> FileResponse:
        from resilience.config import load_config

        path = status_page.report_path(load_config().report_dir, dag_id, name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no report {dag_id}/{name}")
        return FileResponse(path)

    return app


class ResiliencePlugin(AirflowPlugin):
    name = "resilience"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/resilience", "name": "Resilience status"}]
    external_views = [{"name": "Resilience", "href": "resilience/", "url_route": "resilience", "destination": "nav",
                       "category": "browse"}]
