"""What every run's closing tasks share, whichever DAG it is: giving the chaos/DR lock back and the final
verdict that fails the Airflow run when the report says it did not pass.

The first pieces of the run journal (issue 11): each DAG still keeps its own record (chaos/record.py,
dr/record.py, dr/operation.py); its closing steps go through here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from resilience.errors import ChecksFailedError

log = logging.getLogger(__name__)


def release_lock(run_id: str) -> bool:
    """Give the chaos/DR lock back (a no-op, logged, when ``run_id`` does not hold it)."""
    from resilience.config import load_config
    from resilience.ledger import release_run_lock

    return release_run_lock(load_config().control_db_conn_id, run_id)


def final_verdict(written: dict[str, Any] | None, what: str, passing: str = "passed") -> str:
    """The run's last task: fail it unless its report's status is ``passing`` (a plan run passes: it changed
    nothing), so the Airflow UI shows the verdict. ``written``: the write-report task's result; ``what``
    names the run in the error ("DR drill", "chaos campaign in staging")."""
    if not written:
        raise ChecksFailedError(f"the {what} did not complete: no report was written (see the failed task)")
    status = written["status"]
    if status == "planned":
        log.info("Plan run: nothing was changed; the planned calls are in %s", written["report_html"])
        return status
    if status != passing:
        raise ChecksFailedError(f"{what} {status}; see {Path(written['report_html']).name} "
                                f"({written['report_html']})")
    return status
