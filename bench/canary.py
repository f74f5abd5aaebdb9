"""Benchmark the failback canary: bad step -> all traffic back on DR, and the total ramp time.

A lab of its own with both regions up (the DR region runs against the lab's database: the
canary only moves traffic), Route53 on moto, the load generator resolving through the weights.
The ramp is ``CanaryRampTrigger`` exactly as the triggerer runs it (poll 1 s, rate window 5 s,
scrape 1 s, threshold 2).

1. Rollback rounds: the primary runs a broken release (every ``/api`` request answers 500),
   traffic starts on DR, and each round ramps ``[50, 100]``. Measured per round:
   - detection: the weight change to 50 % (the bad step) -> the rollback's UPSERT to 0/100;
   - drained: the bad step -> the last request the primary's load balancer counted (users
     all on DR; bounded by the record's 1 s TTL and the generator's re-resolution).
2. One healthy ramp over the default plan 10/25/50/75/100 with a given interval: total time
   against the baseline of ``steps x interval`` (the time the analysis must take anyway).

Usage: ``python bench/canary.py [--rounds 5] [--interval 10] [--lab-dir DIR --port-base N]``.
Traffic goes only to 127.0.0.1 and stops with the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict

from benchlib import isolated_airflow_home, lab_arguments, own_lab, quiet_stdout

isolated_airflow_home()


def lb_requests(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("http_requests_total{"))


async def ramp(spec: dict, plan: list[int], interval_s: float) -> dict:
    from resilience.triggers import CanaryRampTrigger

    trigger = CanaryRampTrigger(**{**spec, "plan": plan, "interval_s": interval_s})
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("the trigger ended without an event")


def last_increase(url: str, since: float, quiet_s: float = 2.0, limit_s: float = 20.0) -> float:
    """Poll the LB's request counter; return when it last grew (once it has been still for ``quiet_s``)."""
    last_value, last_change = lb_requests(url), since
    while time.time() - last_change < quiet_s and time.time() - since < limit_s:
        time.sleep(0.1)
        value = lb_requests(url)
        if value != last_value:
            last_value, last_change = value, time.time()
    return last_change


def spec_for(lab: dict) -> dict:
    from resilience.config import load_config
    from resilience.dns import Route53Weights

    dr = load_config().environment("lab").dr
    metrics = dr.metrics
    record = Route53Weights.lookup(dr.aws_conn_id, dr.zone, dr.record).record
    from resilience.canary import FailbackPolicy
    from resilience.dr.failback import window_seconds

    return {"aws_conn_id": dr.aws_conn_id, "record": record.to_dict(), "warmup_s": window_seconds(metrics.window)
            + 2 * metrics.scrape_interval_s, "threshold": 2, "prometheus_conn_id": metrics.prometheus_conn_id,
            "primary_queries": {m: metrics.query(m, "primary") for m in ("error_rate_pct", "p95_ms")},
            "dr_queries": {m: metrics.query(m, "dr") for m in ("error_rate_pct", "p95_ms")},
            "policy": asdict(FailbackPolicy()), "poll_interval_s": metrics.poll_interval_s,
            "query_timeout_s": metrics.query_timeout_s}


def set_weights(spec: dict, primary: int) -> None:
    from resilience.dns import Route53Weights, WeightedRecord

    Route53Weights(spec["aws_conn_id"], WeightedRecord.from_dict(spec["record"])).set_weights(primary, 100 - primary)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=10.0, help="analysis interval of the healthy ramp (s)")
    lab_arguments(parser, 22320)
    args = parser.parse_args()
    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab, quiet_stdout():
        from resilience.lab import control
        from resilience.lab.state import load_lab_state

        state = load_lab_state()
        control.start_dr_region(state, lab["app_db"]["read_write_dsn"])
        state = load_lab_state()
        primary_url = state["regions"]["primary"]["url"]
        spec = spec_for(lab)
        control.deploy_release(state, "primary", "bench-broken", fail_rate=1.0)
        rounds = []
        for index in range(args.rounds):
            set_weights(spec, 0)
            time.sleep(8)  # DR serves alone; the primary's error rate leaves the rate window
            event = asyncio.run(ramp(spec, [50, 100], 60))
            bad_step = next(c["at"] for c in event["changes"] if c["after"]["primary"] == 50)
            rollback = event["changes"][-1]
            assert event["status"] == "rolled_back" and rollback["after"] == {"primary": 0, "dr": 100}, event
            drained = last_increase(primary_url, rollback["at"])
            rounds.append({"detect_s": rollback["at"] - bad_step, "drained_s": drained - bad_step})
            print(f"round {index + 1}: rollback {rounds[-1]['detect_s']:.2f} s, traffic drained "
                  f"{rounds[-1]['drained_s']:.2f} s after the bad step", file=sys.stderr)
        control.rollback_release(load_lab_state(), "primary")
        set_weights(spec, 0)
        time.sleep(8)
        plan = [10, 25, 50, 75, 100]
        started = time.time()
        healthy = asyncio.run(ramp(spec, plan, args.interval))
        total = time.time() - started
        control.stop_dr_region(load_lab_state())
    detect = [r["detect_s"] for r in rounds]
    drained = [r["drained_s"] for r in rounds]
    baseline = len(plan) * args.interval
    print(f"bad step -> weights 0/100 (rollback): median {statistics.median(detect):.2f} s, "
          f"min {min(detect):.2f} s, max {max(detect):.2f} s over {len(detect)} rounds")
    print(f"bad step -> all traffic on DR (primary LB quiet): median {statistics.median(drained):.2f} s, "
          f"min {min(drained):.2f} s, max {max(drained):.2f} s")
    print(f"healthy ramp {plan} at {args.interval:g} s per step: {healthy['status']} in {total:.1f} s; "
          f"baseline {baseline:.0f} s (steps x interval): ratio {total / baseline:.2f}, "
          f"{healthy['failed_checks']} failed check(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
