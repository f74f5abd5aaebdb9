"""The chaos campaign's steps in runbook order, one import for the DAG files' tasks."""

from resilience.chaos.abort import abort_or_sweep, orphans, release_stale_lock, revert_all
from resilience.chaos.campaign import preflight, start_campaign
from resilience.chaos.conclude import slack_message, write_campaign_report
from resilience.chaos.scenario_steps import baseline, blast_radius_wait, inject, judge, revert

__all__ = [
    "start_campaign", "preflight", "baseline", "inject", "blast_radius_wait", "revert", "judge",
    "write_campaign_report", "slack_message", "orphans", "revert_all", "release_stale_lock",
    "abort_or_sweep",
]
