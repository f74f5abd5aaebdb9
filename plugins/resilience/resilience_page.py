"""The Resilience page of the Airflow UI: what runs, what is left open, which region serves.

Read-only, from the control DB: the chaos/DR lock, faults not yet reverted, each
environment's serving region, the declared incidents with their drafted Incident Reports, and
the latest runs of every DAG with links to their reports.
Collecting takes a statement runner (``ControlDb.execute``); rendering is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from resilience.reporting import CSS, report_stem

Execute = Callable[[str], list[tuple]]
RECENT = 8
REPORT_DAGS = ("dr_monthly_drill", "chaos_campaign", "dr_activation", "dr_failback", "emergency_rollback",
               "slo_verify")
REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(html|json|md)$")  # md: a drafted Incident Report

QUERIES = {
    "locks": "SELECT name, run_id, dag_id, acquired_at FROM run_locks ORDER BY acquired_at",
    "open_faults": "SELECT id, run_id, environment, scenario, state, injected_at, expires_at FROM fault_ledger"
                   " WHERE state <> 'reverted' ORDER BY id",
    "regions": "SELECT environment, serving, dr_active, run_id, activated_at, recovery_point FROM dr_regions"
               " ORDER BY environment",
    "runs": "SELECT dag_id, run_id, kind, environment, status, started_at, ended_at, score, rto_s, rpo_s,"
            f" summary ->> 'reason' FROM runs ORDER BY started_at DESC LIMIT {RECENT * 2}",
    "incidents": "SELECT i.id, i.severity, i.name, i.environment, i.dag_id, i.declared_at, i.report_path,"
                 " (SELECT count(*) FROM incident_items t WHERE t.incident_id = i.id AND t.done_at IS NULL)"
                 f" FROM incidents i ORDER BY i.declared_at DESC LIMIT {RECENT}",
}
COLUMNS = {
    "locks": ("name", "run_id", "dag_id", "acquired_at"),
    "open_faults": ("id", "run_id", "environment", "scenario", "state", "injected_at", "expires_at"),
    "regions": ("environment", "serving", "dr_active", "run_id", "activated_at", "recovery_point"),
    "runs": ("dag_id", "run_id", "kind", "environment", "status", "started_at", "ended_at", "score", "rto_s", "rpo_s",
             "reason"),
    "incidents": ("id", "severity", "name", "environment", "dag_id", "declared_at", "report_path", "open_items"),
}


def collect(execute: Execute) -> dict[str, Any]:
    """Every section's rows; a table that does not exist yet (that part never ran) is an empty section."""
    doc: dict[str, Any] = {}
    for section, sql in QUERIES.items():
        try:
            rows = execute(sql)
        except Exception as exc:
            if type(exc).__name__ != "UndefinedTable":
                raise
            rows = []
        doc[section] = [dict(zip(COLUMNS[section], row, strict=True)) for row in rows]
    return doc


def _result(run: dict[str, Any]) -> str:
    """A run's one-line result: a drill's RTO and RPO, a campaign's score, a verification's reason."""
    if run["kind"] == "dr_drill":
        rto = "n/a" if run["rto_s"] is None else f"{run['rto_s'] / 60:.1f} min"
        rpo = "n/a" if run["rpo_s"] is None else f"{run['rpo_s'] / 60:.1f} min"
        return f"RTO {rto}, RPO {rpo}"
    if run["kind"] == "chaos_campaign":
        return "" if run["score"] is None else f"resilience score {run['score']:g}"
    return run["reason"] or ""


def recent_runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every DAG's runs from the journal, newest first, each with a one-line result."""
    return [{**run, "result": _result(run)} for run in doc["runs"]]


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) else escape(str(value or ""))


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(doc: dict[str, Any]) -> str:
    """The page; report links are relative (``reports/<dag>/<file>``), as the UI embeds the page."""
    locks = _table(["lock", "held by", "DAG", "since"],
                   [[escape(r["name"]), f"<code>{escape(r['run_id'])}</code>", escape(r["dag_id"]),
                     _when(r["acquired_at"])] for r in doc["locks"]],
                   "The chaos/DR lock is free: chaos, drills and DR operations may start.")
    faults = _table(["#", "scenario", "environment", "state", "injected", "expires", "run"],
                    [[str(r["id"]), escape(r["scenario"]), escape(r["environment"]),
                      f'<span class="fail">{escape(r["state"])}</span>', _when(r["injected_at"]),
                      _when(r["expires_at"]), f"<code>{escape(r['run_id'])}</code>"] for r in doc["open_faults"]],
                    "No fault is open: every injected fault has been reverted.")
    regions = _table(["environment", "serving", "DR active", "since", "DR data from", "run"],
                     [[escape(r["environment"]),
                       f'<b class="{"fail" if r["serving"] == "dr" else "pass"}">{escape(r["serving"])}</b>',
                       "yes" if r["dr_active"] else "no", _when(r["activated_at"]), _when(r["recovery_point"]),
                       f"<code>{escape(r['run_id'] or '')}</code>"] for r in doc["regions"]],
                     "Every environment is served by its primary region (no DR activation recorded).")

    def link(run: dict[str, Any]) -> str:
        if run["dag_id"] not in REPORT_DAGS:
            return ""
        return f'<a href="reports/{run["dag_id"]}/{report_stem(run["run_id"])}.html">report</a>'

    def incident_link(incident: dict[str, Any]) -> str:
        if not incident["report_path"] or incident["dag_id"] not in REPORT_DAGS:
            return ""
        name = Path(incident["report_path"]).name
        return f'<a href="reports/{escape(incident["dag_id"])}/{escape(name)}">incident report</a>'

    runs = _table(["started", "DAG", "environment", "status", "result", "run", ""],
                  [[_when(r["started_at"]), escape(r["dag_id"]), escape(r["environment"]),
                    f'<span class="{"fail" if r["status"] in ("failed", "aborted", "rolled_back") else "pass"}">'
                    f'{escape(r["status"])}</span>', escape(r["result"]), f"<code>{escape(r['run_id'])}</code>",
                    link(r)] for r in recent_runs(doc)],
                  "No run recorded yet.")
    incidents = _table(["declared", "incident", "severity", "name", "environment", "post-mortem items open", ""],
                       [[_when(r["declared_at"]), f"<code>{escape(r['id'])}</code>", f"<b>{escape(r['severity'])}</b>",
                         escape(r["name"]), escape(r["environment"]), str(r["open_items"]), incident_link(r)]
                        for r in doc["incidents"]],
                       "No incident declared yet.")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Resilience</title>
<style>{CSS}</style></head><body>
<h1>Resilience</h1>
<h2>Chaos/DR lock</h2>{locks}
<h2>Open faults</h2>{faults}
<h2>Regions</h2>{regions}
<h2>Incidents</h2>{incidents}
<h2>Recent runs</h2>{runs}
<p><a href="status.json">status.json</a></p>
</body></html>"""


def render_unavailable(reason: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Resilience</title><style>{CSS}</style>"
            f"</head><body><h1>Resilience</h1><p class=\"fail\">The control database cannot be read: "
            f"{escape(reason)}</p><p>Check the Connection named by <code>defaults.control_db_conn_id</code> in "
            f"environments.yaml.</p></body></html>")


def media_type(name: str) -> str | None:
    """How a report file is served: a drafted Incident Report as text the browser shows (not a download)."""
    return "text/plain; charset=utf-8" if name.endswith(".md") else None


def report_path(report_dir: Path, dag_id: str, name: str) -> Path | None:
    """The report file ``name`` of ``dag_id`` under ``report_dir``, or None for anything else."""
    if dag_id not in REPORT_DAGS or not REPORT_NAME.match(name):
        return None
    path = (report_dir / dag_id / name).resolve()
    if not path.is_relative_to(report_dir.resolve()) or not path.is_file():
        return None
    return path
