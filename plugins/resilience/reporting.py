"""Write a report document as ``<run>.json`` and ``<run>.html`` side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
