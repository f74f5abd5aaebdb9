"""The DR drill's steps in runbook order, one import for the DAG file's tasks."""

from resilience.dr.drill.conclude import measure_rto_rpo, notify_slack, write_drill_report
from resilience.dr.drill.restore import cleanup_sandbox, create_sandbox, restore
from resilience.dr.drill.run import start_drill
from resilience.dr.drill.verify_backups import verify_backups
from resilience.dr.drill.verify_restore import check_app, check_integrity

__all__ = [
    "start_drill", "verify_backups", "create_sandbox", "restore", "check_integrity", "check_app",
    "measure_rto_rpo", "cleanup_sandbox", "write_drill_report", "notify_slack",
]
