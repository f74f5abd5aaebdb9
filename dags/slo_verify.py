"""SLO verification: the runbook's Key Metrics over a window, from Prometheus, with the error budget left.

The runbook's `verify-slo`, daily and on demand. Over the window (`window_h`, ending when the run
starts) it reads from the environment's Prometheus (`slo_verify` in environments.yaml) and checks
the runbook's "Key Metrics":

| SLO | bound |
|---|---|
| p95 latency | < 10 s |
| p99 latency | < 15 s |
| error rate | < 1 % |
| throughput | within ±20 % of the window of the same length just before |
| availability | > 99.9 % |
| each business metric the environment maps | > its `min_pct` (runbook: publishing 95 %, upload 98 %, webhooks 99.9 %) |

A metric Prometheus cannot give (no series, NaN for no traffic, an error, a timeout) fails its
check: missing data is never a pass. Exactly at a bound fails, as the runbook writes them (`<`, `>`).

1. **start_verification** — Params, environments.yaml and the Prometheus Connection; fixes the window.
2. **measure_slos** — one instant query per metric at the window's end; each check in the log.
3. **write_report** — JSON + HTML: every SLO with its value and unit, the **error budget** of the
   availability SLO over the window ((100 % - 99.9 %) x window; consumed = measured unavailability x
   window; left in minutes and %), charts of error rate, latency, throughput against the previous
   window and the budget's burn-down.
4. **notify_slack** — when an SLO failed: the failed SLOs and the budget to the environment's Slack
   Connection (logged when it is absent).
5. **verdict** — fails the run when an SLO failed.

It reads Prometheus only: no lock, nothing changed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from resilience.context import pulled, run_id
from resilience.slo_verify.params import verify_params


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule="30 6 * * *",  # daily, 06:30 UTC: yesterday's 24 h before the team's day starts
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["slo", "monitoring"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params=verify_params(),
)
def slo_verify():
    @task
    def start_verification() -> dict:
        """Validate Params, environments.yaml and the Prometheus Connection; fix the window."""
        from resilience.slo_verify import steps

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        return steps.start_verification(dict(ctx["params"]), run_id(), ctx["dag_run"].run_type, started_at)

    @task
    def measure_slos(run: dict) -> dict:
        """Every Key Metric and business metric over the window, from Prometheus."""
        from resilience.slo_verify import steps

        return steps.measure_slos(run)

    @task(trigger_rule="all_done")
    def write_report() -> dict:
        """JSON + HTML report: the SLOs, the error budget left, charts."""
        from resilience.slo_verify import steps

        return steps.write_report(pulled("start_verification"), pulled("measure_slos"))

    @task(trigger_rule="all_done")
    def notify_slack() -> bool:
        """Failed SLOs to Slack (logged when the Connection is absent; nothing when all held)."""
        from resilience.slo_verify import steps

        return steps.notify_slack(pulled("write_report"))

    @task(trigger_rule="all_done")
    def verdict() -> str:
        """Fail the run when an SLO failed."""
        from resilience import journal

        return journal.final_verdict(pulled("write_report"), "SLO verification")

    measure_slos(start_verification()) >> write_report() >> notify_slack() >> verdict()


slo_verify()
