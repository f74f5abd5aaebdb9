"""Benchmark the SLO guard against Chaos Toolkit's: time from breach onset to the fault reverted.

Three rows, each ``s3-5xx`` at rate 1.0 through the lab's S3 fault proxy while a bounded client sends
uploads through the lab's load balancer, so the availability SLO breaks; the same measurement for each:
**the first 5xx the client sees -> the fault off, from the proxy's own record** (``changes``):

- **Chaos Toolkit** (the reference, ``bench/chaostoolkit_ref.py``): ``chaos run --rollback-strategy
  always`` of the experiment a Chaos Toolkit user would write: the fault on, a 1 s
  ``chaosaddons`` safeguard on the same availability SLO (``chaosprometheus``), a rollback that turns it off.
- **real** (ours as users run it): ``airflow standalone`` (scheduler, triggerer, LocalExecutor) runs
  ``chaos_campaign`` through the REST API (``airflow_local``, as ``resilience airflow run`` does);
  the guard's trigger applies the fault after its first healthy reading and reverts it on the breach.
- **in-process** (the guard's own floor): ``SloGuardTrigger`` runs in this process right after the
  inject through the ledger (no scheduler, no triggerer pick-up), polling every ``poll_interval_s``
  (0.5 s in the lab, scrape 1 s). Its rounds also give the detection (breach reading - onset) and the
  recovery (revert -> first all-green reading, ``SloRecoveryTrigger``).

The onset is the first 5xx the client receives after the fault went on (the breach as users see it).

Then what each leaves behind when SIGKILLed mid-fault, 3 s after the fault went on (a harmless 1 % rate, so
that no guard ends it first): Chaos Toolkit's process, and all of our Airflow (scheduler, triggerer, task
processes). Read from the proxy for ``--left-behind-s`` (default 60).

Usage: ``python bench/abort_latency.py [--rounds 7] [--real-rounds 7] [--ctk-rounds 7] [--airflow-port P]
[--lab-dir DIR --port-base N]``. ``--real-rounds 0`` skips the real path (no Airflow started);
``--ctk-rounds 0`` skips Chaos Toolkit. Traffic goes only to 127.0.0.1 and stops with each round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

import chaostoolkit_ref as ctk
from benchlib import SummaryRow, isolated_airflow_home, own_lab, quiet_stdout, record_summary

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
    _, reverted_at = ctk.on_and_off(ctk.fault_record(spec["fault_api"]), injected_at - 1)
    if reverted_at is None:
        raise RuntimeError(f"ledger #{entry}: the proxy's record has the fault still on after the guard's revert")
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
# the SIGKILL comparison needs a fault still on 3 s in: 1 % of S3 PUTs fail, the app's retries hide them, no
# SLO breaks, so neither guard ends it first
HARMLESS_RATE = 0.01


def real_round(api, ledger, load: UploadLoad, fault_api: str) -> dict:
    """One chaos_campaign through the REST API; the proxy's record says when the fault went on and off."""
    from resilience import airflow_local

    run_id = airflow_local.trigger(api, "chaos_campaign", REAL_CONF)
    run = airflow_local.wait_run(api, "chaos_campaign", run_id, timeout_s=900)
    entries = ledger.entries(run_id)
    if not entries or entries[-1].injected_at is None or entries[-1].reverted_at is None:
        raise RuntimeError(f"chaos_campaign {run_id} ({run['state']}, tasks {run['task_states']}): no applied and "
                           f"reverted fault in the ledger: {entries}")
    entry = entries[-1]
    on, off = ctk.on_and_off(ctk.fault_record(fault_api), entry.created_at.timestamp())
    if on is None or off is None:
        raise RuntimeError(f"chaos_campaign {run_id}: the proxy's record has no fault on and off: {entry}")
    return {"status": entry.reverted_by, "reason": entry.revert_reason, "planned_at": entry.created_at.timestamp(),
            "injected_at": on, "onset": load.first_error_after(on), "reverted_at": off, "run_state": run["state"]}


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


def reference_spec(spec: dict, lab: dict) -> dict:
    """Chaos Toolkit's experiment on the lab: our availability query and the guard's default bound (the
    in-process rounds use it too)."""
    from resilience.prometheus import render
    from resilience.slo import SloPolicy

    return {"fault_api": lab["s3"]["fault_api"], "prometheus_url": lab["prometheus"]["url"],
            "availability_query": render(spec["queries"]["availability_pct"], spec["window"]),
            "min_availability_pct": SloPolicy().min_availability_pct}


def ctk_rounds(chaos: str, rounds: int, spec: dict, lab: dict, load: UploadLoad) -> list[dict]:
    """Chaos Toolkit's rounds: the same fault, onset -> off from the proxy's record."""
    ctk_spec = reference_spec(spec, lab)
    results = []
    for n in range(1, rounds + 1):
        steady_baseline(spec)
        with tempfile.TemporaryDirectory(prefix="resilience-bench-ctk-") as workdir:
            result = ctk.run_round(chaos, Path(workdir), ctk_spec)
        if result["on"] is None or result["off"] is None:
            raise RuntimeError(f"Chaos Toolkit round {n}: the proxy's record has no fault on and off: {result}")
        result.update(onset=load.first_error_after(result["on"]), reverted_at=result["off"])
        results.append(result)
        gap = "n/a" if result["onset"] is None else f"{result['off'] - result['onset']:.2f} s"
        print(f"  Chaos Toolkit round {n}: {result['status']} (safeguard {result['triggered_by']}, rollbacks "
              f"{result['rollbacks']}), onset->off {gap}", file=sys.stderr)
    return results


def left_behind(fault_api: str, on: float, killed_at: float, watch_s: float) -> str:
    """What the proxy serves after a SIGKILL of whoever turned the fault on at ``on``: when (and how) the
    fault ended, from the proxy's record, or that it is still on."""
    deadline = time.time() + watch_s
    while time.time() < deadline:
        changes = ctk.fault_record(fault_api)  # a GET: the proxy also checks its dead-man switch
        off = next((c for c in changes if c["at"] > on and c["error_rate"] == 0), None)
        if off is not None:
            how = "the proxy's dead-man switch (its expiry)" if off["by"] == "expiry" else "a PUT"
            return f"fault off {off['at'] - killed_at:.1f} s after the kill, by {how}"
        time.sleep(0.5)
    return f"fault still on {watch_s:g} s after the kill: nothing left reverts it"


def kill_ours(sa, api, fault_api: str, watch_s: float) -> str:
    """SIGKILL every Airflow process 3 s after the guard turned the fault on; what is left."""
    import signal

    from resilience import airflow_local

    started = time.time()
    airflow_local.trigger(api, "chaos_campaign", {**REAL_CONF, "scenario_options": {
        "s3-5xx": {"error_rate": HARMLESS_RATE, "status": 503}}})
    deadline = time.monotonic() + 300
    while (on := ctk.on_and_off(ctk.fault_record(fault_api), started)[0]) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("chaos_campaign never turned the fault on")
        time.sleep(0.2)
    time.sleep(max(0.0, on + 3 - time.time()))
    for pid in airflow_local.processes(sa):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left_behind(fault_api, on, time.time(), watch_s)


def kill_ctk(chaos: str, lab: dict, spec: dict, watch_s: float) -> str:
    """SIGKILL Chaos Toolkit's process 3 s after it turned the fault on; what is left."""
    with tempfile.TemporaryDirectory(prefix="resilience-bench-ctk-") as workdir:
        killed = ctk.run_round(chaos, Path(workdir), {**reference_spec(spec, lab), "error_rate": HARMLESS_RATE},
                               kill_after_on_s=3)
    what = left_behind(lab["s3"]["fault_api"], killed["on"], killed["killed_at"], watch_s)
    from resilience.lab import control

    control.set_s3_fault(lab, 0.0)  # the bench cleans up what Chaos Toolkit left
    return what


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="in-process rounds (the guard's own floor)")
    parser.add_argument("--real-rounds", type=int, default=7, help="chaos_campaign runs under airflow standalone")
    parser.add_argument("--ctk-rounds", type=int, default=7, help="Chaos Toolkit runs (0: skip)")
    parser.add_argument("--left-behind-s", type=float, default=60,
                        help="how long to watch the proxy after each SIGKILL (0: skip the kill comparison)")
    parser.add_argument("--airflow-port", type=int,
                        default=int(os.environ.get("RESILIENCE_AIRFLOW_PORT") or 28080))
    parser.add_argument("--lab-dir")
    parser.add_argument("--port-base", type=int, default=23320)
    args = parser.parse_args()
    chaos, ctk_note = ctk.chaos_binary() if args.ctk_rounds > 0 else (None, "skipped (--ctk-rounds 0)")
    print(f"Chaos Toolkit: {ctk_note}", file=sys.stderr)
    load = sa = None
    rounds: list[dict] = []
    real: list[dict] = []
    reference: list[dict] = []
    kills: dict[str, str] = {}
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
        spec["fault_api"] = lab["s3"]["fault_api"]
        platform, ledger = get_platform(config.environment("lab")), ledger_for(config.control_db_conn_id)
        try:
            # Airflow idles during the other rounds too: every row sees the same background load
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
            if chaos is not None:
                reference = ctk_rounds(chaos, args.ctk_rounds, spec, lab, load)
            if sa is not None:
                with airflow_local.client(sa) as api:
                    airflow_local.wait_parsed(api, ["chaos_campaign"])
                    for n in range(1, args.real_rounds + 1):
                        steady_baseline(spec)
                        no_alert_firing(spec)
                        result = real_round(api, ledger, load, lab["s3"]["fault_api"])
                        real.append(result)
                        gap = "n/a" if result["onset"] is None else f"{result['reverted_at'] - result['onset']:.2f} s"
                        print(f"  real round {n}: reverted by {result['status']} ({result['reason']}), planned->"
                              f"applied {result['injected_at'] - result['planned_at']:.1f} s, onset->reverted "
                              f"{gap}, run {result['run_state']}", file=sys.stderr)
                    if args.left_behind_s > 0:
                        steady_baseline(spec)
                        no_alert_firing(spec)
                        kills["resilience (all of Airflow SIGKILLed)"] = kill_ours(sa, api, lab["s3"]["fault_api"],
                                                                                   args.left_behind_s)
            if chaos is not None and args.left_behind_s > 0:
                steady_baseline(spec)
                kills["Chaos Toolkit (its process SIGKILLed)"] = kill_ctk(chaos, lab, spec, args.left_behind_s)
        finally:
            if load is not None:
                load.stop()
            if sa is not None:
                airflow_local.down(sa)
    latencies = [r["reverted_at"] - r["onset"] for r in rounds if r["onset"]]
    real_latencies = [r["reverted_at"] - r["onset"] for r in real if r["onset"]]
    ctk_latencies = [r["off"] - r["onset"] for r in reference if r["onset"]]
    detections = [r["detected_at"] - r["onset"] for r in rounds if r["onset"]]
    recoveries = [r["recovery_s"] for r in rounds if r["recovery_s"] is not None]

    print(f"guard poll {spec['poll_interval_s']:g} s, rate window {spec['window']}, lab scrape 1 s, "
          f"s3-5xx at rate 1.0 with {UPLOAD_RPS} uploads/s, load average {os.getloadavg()[0]:.1f}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("breach onset (first 5xx a client sees) -> fault off (the S3 proxy's own record):")
    print(line("  resilience: chaos_campaign under airflow standalone", real_latencies))
    print(line("  Chaos Toolkit 1.21: 1 s safeguard, rollback always", ctk_latencies))
    print(line("  resilience: the guard's trigger in-process (floor)", latencies))
    summary = []
    if real_latencies and ctk_latencies:
        summary.append(SummaryRow("guard: breach onset -> fault off, median s (chaos_campaign, airflow standalone)",
                                  statistics.median(real_latencies), statistics.median(ctk_latencies),
                                  "Chaos Toolkit 1.21, 1 s safeguard"))
    if latencies and ctk_latencies:
        summary.append(SummaryRow("guard floor: breach onset -> fault off, median s (trigger in-process)",
                                  statistics.median(latencies), statistics.median(ctk_latencies),
                                  "Chaos Toolkit 1.21, 1 s safeguard"))
    print(line("resilience: ledger row planned -> fault applied", [r["injected_at"] - r["planned_at"] for r in real]))
    print(f"resilience real: reverted by {sorted({r['status'] for r in real})}, runs "
          f"{sorted({r['run_state'] for r in real})}")
    print(f"Chaos Toolkit: {sorted({str(r['status']) for r in reference})}, safeguard "
          f"{sorted({str(r['triggered_by']) for r in reference})}")
    print(line("in-process: breach onset -> breach detected", detections))
    print(line("in-process: revert -> SLOs green (recovery)", recoveries))
    for who, what in kills.items():
        print(f"SIGKILLed 3 s into the fault: {who}: {what}")
    if summary:
        record_summary("abort_latency", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
