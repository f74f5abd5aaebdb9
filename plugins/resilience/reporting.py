"""Write a report document as ``<run>.json`` and ``<run>.html`` side by side; the style every HTML report
and the Resilience page share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
h1 .passed{color:#2e7d32}h1 .failed{color:#c62828}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.chart text{font-size:13px}.chart .small{font-size:11px;fill:#555}code{background:#f4f4f4;padding:0 .2rem}
"""


def report_stem(run_id: str) -> str:
    """A run id made path-safe: the report files' name without extension."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)


def write_report(report: dict[str, Any], directory: Path, render_html: Callable[[dict[str, Any]], str]
                 ) -> tuple[Path, Path]:
    """File names come from the run id (made path-safe); returns (json path, html path)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report["run_id"])
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path
