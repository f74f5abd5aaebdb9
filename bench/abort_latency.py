"""Benchmark the SLO guard: time from breach onset to the fault reverted, and recovery time.

Each round injects ``s3-5xx`` at rate 1.0 through the ledger (as the campaign does) while a
bounded client sends uploads through the lab's load balancer, so the error-rate SLO breaks.
The guard (``SloGuardTrigger``, exactly as the triggerer runs it, polling every
``poll_interval_s`` from environments.yaml: 1 s in the lab, scrape 1 s) reverts the fault
from the ledger on the breach. Measured per round:

- onset: the first 5xx the client receives after the inject (the breach as users see it);
- reverted: the ledger's ``reverted_at`` (the proxy answers 2xx again after it);
- detection: the guard's breach reading minus the onset;
- recovery: the revert to the first all-green reading (``SloRecoveryTrigger``).

Usage: ``python bench/abort_latency.py [--rounds 7] [--lab-dir DIR --port-base N]``.
Traffic goes only to 127.0.0.1 and stops with each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lab-dir")
    parser.add_argument("--port-base", type=int, default=23320)
    args = parser.parse_args()
    load = None
    rounds: list[dict] = []
    with own_lab(args.lab_dir, args.port_base) as lab, quiet_stdout():
        from resilience.chaos.campaign import Campaign
        from resilience.chaos.params import parse_campaign_params
        from resilience.config import load_config
        from resilience.ledger import ledger_for
        from resilience.platforms.base import get_platform

        config = load_config()
        campaign = Campaign(parse_campaign_params({"environment": "lab", "scenarios": ["s3-5xx"]}, config), "b", config)
        spec = campaign.slo_spec()
        platform, ledger = get_platform(config.environment("lab")), ledger_for(config.control_db_conn_id)
        load = UploadLoad(lab["app"]["url"]).start()
        try:
            for n in range(1, args.rounds + 1):
                spec["baseline"] = steady_baseline(spec)
                result = asyncio.run(guard_round(spec, ledger, platform, load))
                rounds.append(result)
                print(f"  round {n}: {result['status']} ({result['reason']}), onset->reverted "
                      f"{result['reverted_at'] - result['onset']:.2f} s, recovery {result['recovery_s']:.1f} s",
                      file=sys.stderr)
        finally:
            load.stop()
    latencies = [r["reverted_at"] - r["onset"] for r in rounds if r["onset"]]
    detections = [r["detected_at"] - r["onset"] for r in rounds if r["onset"]]
    inject_to_revert = [r["reverted_at"] - r["injected_at"] for r in rounds]
    recoveries = [r["recovery_s"] for r in rounds if r["recovery_s"] is not None]

    def line(name: str, values: list[float]) -> str:
        return (f"{name:34s} median {statistics.median(values):5.2f} s  min {min(values):5.2f} s  "
                f"max {max(values):5.2f} s  (n={len(values)})")

    print(f"guard poll {spec['poll_interval_s']:g} s, rate window {spec['window']}, lab scrape 1 s, "
          f"{args.rounds} rounds of s3-5xx at rate 1.0 with {UPLOAD_RPS} uploads/s")
    print(line("breach onset -> fault reverted", latencies))
    print(line("breach onset -> breach detected", detections))
    print(line("inject -> fault reverted", inject_to_revert))
    print(line("revert -> SLOs green (recovery)", recoveries))
    print(f"breaches detected: {sum(r['status'] == 'breach' for r in rounds)} of {len(rounds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
