"""The Airflow plugin: a "Resilience" page in the UI's navigation, served by a small FastAPI app.

``/resilience/`` is the status page (lock, open faults, serving regions, recent runs with
reports), ``/resilience/status.json`` the same as JSON, ``/resilience/reports/<dag>/<file>``
the reports. Read-only, and behind Airflow's own login: every route asks Airflow's auth manager
(the API token, or the UI's session cookie) for read access to DAG runs, as the REST API does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from resilience.deadlines import QueuedAtPlusParamMinutes


def _execute(sql: str) -> list[tuple]:
    from resilience.config import load_config
    from resilience.controldb import ControlDb, postgres_connect

    return ControlDb(postgres_connect(load_config().control_db_conn_id)).execute(sql)


def read_access() -> Callable[..., None]:
    """Airflow's check for the page: a logged-in user allowed to read DAG runs (401/403 otherwise).

    The page lists the runs and reports of every DAG, so it asks for the runs of all DAGs;
    ``/reports/<dag_id>/...`` asks for that DAG's (``requires_access_dag`` reads ``dag_id`` from the path)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag("GET", DagAccessEntity.RUN)


def create_app(execute: Any = _execute, access: Callable[..., None] | None = None) -> Any:
    """The FastAPI app; ``execute`` runs one SQL statement on the control DB, ``access`` guards every
    route (default: :func:`read_access`; a test may pass its own of either)."""
    import json

    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response

    from resilience import resilience_page

    app = FastAPI(title="Resilience", description=__doc__.partition("\n")[0],
                  dependencies=[Depends(access or read_access())])

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:  # sync: FastAPI runs it in its thread pool, off the event loop
        try:
            doc = resilience_page.collect(execute)
        except Exception as exc:  # say why, rather than a bare 500
            return HTMLResponse(resilience_page.render_unavailable(f"{type(exc).__name__}: {exc}"), status_code=503)
        return HTMLResponse(resilience_page.render_html(doc))

    @app.get("/status.json")
    def status() -> Response:
        doc = resilience_page.collect(execute)
        return Response(json.dumps(doc, default=str), media_type="application/json")

    @app.get("/reports/{dag_id}/{name}")
    def report(dag_id: str, name: str) -> FileResponse:
        from resilience.config import load_config

        path = resilience_page.report_path(load_config().report_dir, dag_id, name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no report {dag_id}/{name}")
        return FileResponse(path, media_type=resilience_page.media_type(path.name))

    return app


AsgiApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class _AppOnFirstRequest:
    """The ASGI app, built on its first request: task processes load plugins too (for macros) and
    must not pay for FastAPI and Airflow's API security imports they never use."""

    def __init__(self, factory: Callable[[], AsgiApp]) -> None:
        self._factory = factory
        self._app: AsgiApp | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


class ResiliencePlugin(AirflowPlugin):
    name = "resilience"
    fastapi_apps = [{"app": _AppOnFirstRequest(create_app), "url_prefix": "/resilience", "name": "Resilience status"}]
    external_views = [{"name": "Resilience", "href": "resilience/", "url_route": "resilience", "destination": "nav",
                       "category": "browse"}]
    # the scheduler and the API server evaluate the DAGs' Deadline Alerts with it when they create a run
    deadline_references = [QueuedAtPlusParamMinutes]
