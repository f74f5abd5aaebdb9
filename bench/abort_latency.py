"""Benchmark the SLO guard: time from breach onset to the fault reverted, and recovery time.

Two paths, both with ``s3-5xx`` at rate 1.0 while a bounded client sends uploads through the
lab's load balancer, so the error-rate SLO breaks:

- **real**: the product path. ``airflow standalone`` (scheduler, triggerer, LocalExecutor) runs
  ``chaos_campaign`` through the REST API (``airflow_local``, as ``resilience airflow run`` does);
  the guard's trigger applies the fault after its first healthy reading and reverts it on the
  breach. Onset -> reverted is read from the client and the ledger's ``reverted_at``.
- **in-process**: the guard's own floor. ``SloGuardTrigger`` runs in this process right after
  the inject (no scheduler, no triggerer pick-up), as before.

In-process rounds inject through the ledger (as the campaign does); the guard (polling every
``poll_interval_s`` from environments.yaml: 1 s in the lab, scrape 1 s) reverts the fault from
the ledger on the breach. Measured per round:

- onset: the first 5xx the client receives after the inject (the breach as users see it);
- reverted: the ledger's ``reverted_at`` (the proxy answers 2xx again after it);
- detection: the guard's breach reading minus the onset;
- recovery: the revert to the first all-green reading (``SloRecoveryTrigger``).

Usage: ``python bench/abort_latency.py [--rounds 7] [--real-rounds 5] [--airflow-port P]
[--lab-dir DIR --port-base N]``. ``--real-rounds 0`` skips the real path (no Airflow started).
Traffic goes only to 127.0.0.1 and stops with each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import isolated_airflow_home, own_lab, quiet_stdout

isolated_airflow_home()
UPLOAD_RPS = 25
MAX_ROUND_S = 60


class UploadLoad:
    """Uploads to the LB at a steady rate on a thread, recording (time, status); bounded by stop()."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/api/uploads"
        self.results: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 3600
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            request = urllib.request.Request(self.url, data=os.urandom(512), method="POST",
                                             headers={"Content-Type": "application/octet-stream"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 599
            self.results.append((time.time(), status))
            self._stop.wait(max(0.0, 1 / UPLOAD_RPS - (time.monotonic() - started)))

    def start(self) -> UploadLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def first_error_after(self, moment: float) -> float | None:
        return next((t for t, status in list(self.results) if t >= moment and status >= 500), None)


async def guard_round(spec: dict, ledger, platform, load: UploadLoad) -> dict:
    from resilience.faults.base import get_fault
    from resilience.slo import Baseline
    from resilience.triggers import SloGuardTrigger, SloRecoveryTrigger

    fault = get_fault("s3-5xx")
    plan = fault.plan(platform, {"error_rate": 1.0, "status": 503})
    entry = ledger.record_intent("bench", "abort_latency", "lab", "s3-5xx", plan, MAX_ROUND_S)
    common = {k: spec[k] for k in ("prometheus_conn_id", "queries", "window", "poll_interval_s", "query_timeout_s")}
    common.update(baseline=spec["baseline"], policy={})
    Baseline(**spec["baseline"])
    guard = SloGuardTrigger(**common, until=datetime.now(UTC) + timedelta(seconds=MAX_ROUND_S),
                            revert_ledger_id=entry, control_conn_id=spec["control_conn_id"])
    injected_at = time.time()
    ledger.mark_active(entry, fault.inject(platform, plan))
    event = None
    async for fired in guard.run():
        event = fired.payload
    reverted_at = ledger.get(entry).reverted_at.timestamp()
    onset = load.first_error_after(injected_at)
    recovery = None
    async for fired in SloRecoveryTrigger(**common, until=datetime.now(UTC) + timedelta(seconds=120),
                                          reverted_at=reverted_at).run():
        recovery = fired.payload
    return {"status": event["status"], "reason": event["verdict"]["reason"], "injected_at": injected_at,
            "onset": onset, "detected_at": event["at"], "reverted_at": reverted_at,
            "recovery_s": recovery.get("recovery_s")}


REAL_DURATION_S = 30  # the guard breaks the window within seconds; this only bounds a round it never breaks
REAL_CONF = {"environment": "lab", "scenarios": ["s3-5xx"], "duration": REAL_DURATION_S,
             "scenario_options": {"s3-5xx": {"error_rate": 1.0, "status": 503}}}


def real_round(api, ledger, load: UploadLoad) -> dict:
    """One chaos_campaign through the REST API; the ledger says when the guard applied and reverted."""
    from resilience import airflow_local

    run_id = airflow_local.trigger(api, "chaos_campaign", REAL_CONF)
    run = airflow_local.wait_run(api, "chaos_campaign", run_id, timeout_s=900)
    entries = ledger.entries(run_id)
    if not entries or entries[-1].injected_at is None or entries[-1].reverted_at is None:
        raise RuntimeError(f"chaos_campaign {run_id} ({run['state']}, tasks {run['task_states']}): no applied and "
                           f"reverted fault in the ledger: {entries}")
    entry = entries[-1]
    injected_at, reverted_at = entry.injected_at.timestamp(), entry.reverted_at.timestamp()
    return {"status": entry.reverted_by, "reason": entry.revert_reason, "planned_at": entry.created_at.timestamp(),
            "injected_at": injected_at, "onset": load.first_error_after(injected_at), "reverted_at": reverted_at,
            "run_state": run["state"]}


def no_alert_firing(spec: dict, timeout_s: float = 180) -> None:
    """Preflight refuses a campaign while an alert fires (the previous round's breach): wait it out."""
    from resilience.prometheus import PrometheusHook

    hook = PrometheusHook(spec["prometheus_conn_id"])
    deadline = time.monotonic() + timeout_s
    while firing := hook.query('ALERTS{alertstate="firing"}'):
        if time.monotonic() > deadline:
            raise TimeoutError(f"alerts still firing after {timeout_s:g} s: {[labels for labels, _ in firing]}")
        time.sleep(2)


def steady_baseline(spec: dict) -> dict:
    from resilience.prometheus import PrometheusHook, read_slo
    from resilience.slo import baseline_from

    hook = PrometheusHook(spec["prometheus_conn_id"])
    deadline = time.monotonic() + 60
    while True:
        readings = []
        for _ in range(3):
            readings.append(read_slo(hook, spec["queries"], spec["window"]))
            time.sleep(1)
        try:
            baseline = baseline_from(readings)
            if baseline.error_rate_pct < 0.5:
                return baseline.to_dict()
        except ValueError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no steady baseline within 60 s: {readings[-1].to_dict()}")


def _started_airflow(lab: dict, port: int):
    """An ``airflow standalone`` of the benchmark's own (home, port), against its lab; triggered runs only."""
    from resilience import airflow_local

    sa = airflow_local.Standalone(Path(tempfile.mkdtemp(prefix="resilience-bench-standalone-")), port)
    if airflow_local.healthy(sa):
        raise RuntimeError(f"something already answers on {sa.base_url}: pass --airflow-port")
    airflow_local.up(sa, lab, timeout_s=400, schedules=False)
    return sa


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:48s} no data"
    return (f"{name:48s} median {statistics.median(values):5.2f} s  min {min(values):5.2f} s  "
            f"max {max(values):5.2f} s  (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="in-process rounds (the guard's own floor)")
    parser.add_argument("--real-rounds", type=int, default=5, help="chaos_campaign runs under airflow standalone")
    parser.add_argument("--airflow-port", type=int,
                        default=int(os.environ.get("RESILIENCE_AIRFLOW_PORT") or 28080))
    parser.add_argument("--lab-dir")
    parser.add_argument("--port-base", type=int, default=23320)
    args = parser.parse_args()
    load = sa = None
    rounds: list[dict] = []
    real: list[dict] = []
    with own_lab(args.lab_dir, args.port_base) as lab, quiet_stdout():
        from resilience import airflow_local
        from resilience.chaos.campaign import Campaign
        from resilience.chaos.params import parse_campaign_params
        from resilience.config import load_config
        from resilience.ledger import ledger_for
        from resilience.platforms.base import get_platform

        config = load_config()
        campaign = Campaign(parse_campaign_params({"environment": "lab", "scenarios": ["s3-5xx"]}, config), "b", config)
        spec = campaign.slo_spec()
        platform, ledger = get_platform(config.environment("lab")), ledger_for(config.control_db_conn_id)
        try:
            # Airflow idles during the in-process rounds too: both paths see the same background load
            if args.real_rounds > 0:
                sa = _started_airflow(lab, args.airflow_port)
            load = UploadLoad(lab["app"]["url"]).start()
            for n in range(1, args.rounds + 1):
                spec["baseline"] = steady_baseline(spec)
                result = asyncio.run(guard_round(spec, ledger, platform, load))
                rounds.append(result)
                print(f"  in-process round {n}: {result['status']} ({result['reason']}), onset->reverted "
                      f"{result['reverted_at'] - result['onset']:.2f} s, recovery {result['recovery_s']:.1f} s",
                      file=sys.stderr)
            if sa is not None:
                with airflow_local.client(sa) as api:
                    airflow_local.wait_parsed(api, ["chaos_campaign"])
                    for n in range(1, args.real_rounds + 1):
                        steady_baseline(spec)
                        no_alert_firing(spec)
                        result = real_round(api, ledger, load)
                        real.append(result)
                        gap = "n/a" if result["onset"] is None else f"{result['reverted_at'] - result['onset']:.2f} s"
                        print(f"  real round {n}: reverted by {result['status']} ({result['reason']}), planned->"
                              f"applied {result['injected_at'] - result['planned_at']:.1f} s, onset->reverted "
                              f"{gap}, "
                              f"run {result['run_state']}", file=sys.stderr)
        finally:
            if load is not None:
                load.stop()
            if sa is not None:
                airflow_local.down(sa)
    latencies = [r["reverted_at"] - r["onset"] for r in rounds if r["onset"]]
    real_latencies = [r["reverted_at"] - r["onset"] for r in real if r["onset"]]
    detections = [r["detected_at"] - r["onset"] for r in rounds if r["onset"]]
    inject_to_revert = [r["reverted_at"] - r["injected_at"] for r in rounds]
    recoveries = [r["recovery_s"] for r in rounds if r["recovery_s"] is not None]

    print(f"guard poll {spec['poll_interval_s']:g} s, rate window {spec['window']}, lab scrape 1 s, "
          f"s3-5xx at rate 1.0 with {UPLOAD_RPS} uploads/s, load average {os.getloadavg()[0]:.1f}")
    print("breach onset (first 5xx a client sees) -> fault reverted (ledger reverted_at):")
    print(line("  real: chaos_campaign under airflow standalone", real_latencies))
    print(line("  in-process trigger (the guard's own floor)", latencies))
    if real_latencies and latencies:
        print(f"  ratio real / in-process (medians): "
              f"{statistics.median(real_latencies) / statistics.median(latencies):.2f}")
    print(line("real: ledger row planned -> fault applied", [r["injected_at"] - r["planned_at"] for r in real]))
    print(f"real: reverted by {sorted({r['status'] for r in real})}, runs {sorted({r['run_state'] for r in real})}")
    print(line("in-process: breach onset -> breach detected", detections))
    print(line("in-process: inject -> fault reverted", inject_to_revert))
    print(line("in-process: revert -> SLOs green (recovery)", recoveries))
    print(f"in-process breaches detected: {sum(r['status'] == 'breach' for r in rounds)} of {len(rounds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
