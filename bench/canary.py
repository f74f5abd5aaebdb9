"""Benchmark the failback canary against Flagger's analysis-interval rule on the same metric stream.

A lab of its own with both regions up (the DR region runs against the lab's database: the
canary only moves traffic), Route53 on moto, the load generator (20 req/s) resolving through the
weights. Ours is ``CanaryRampTrigger`` exactly as the triggerer runs it: it reads both regions
every poll (1 s; rate window 5 s, scrape 1 s), each reading is a check of the error rate and each
interval's end a check of every metric (p95 too), no data during a step's warm-up (window + 2 scrapes
= 7 s) is not counted, 2 failed checks roll back. The reference is
Flagger's rule (analysis ``interval``, ``threshold``): ONE check at the end of each interval of a
step, a failed check holds the step, ``threshold`` = 2 failed checks roll back. Both use the same
interval (default 10 s; Flagger's typical is 1 m), the same PromQL, the same check
(``failback_ranges`` + ``canary_gate``) and the same readings: Flagger's check at an instant
takes the last reading the stream had by then (at most one poll old). Only the schedule differs.

1. Bad-step rounds (``--rounds``): the primary runs a broken release (every ``/api`` request
   answers 500), traffic starts on DR, the live trigger ramps ``[50, 100]``. Measured: the bad
   step (weights to 50/50) -> the rollback's UPSERT to 0/100, and -> the last request the
   primary's load balancer counted (users all on DR). Ours stops the stream within seconds, so
   the reference needs a stream that goes on: the same round then holds the bad step for two
   intervals with nobody rolling back and records the same readings every poll; Flagger's rule
   on that stream gives the rollback instant (its 2nd failed check), and ours replayed on it
   shows the stream matches what the live trigger saw.
2. Healthy ramps (``--healthy-ramps``, plan ``--healthy-plan``): a cold but healthy primary.
   Before each ramp the primary gets a broken release and is rolled back to the good one
   (``deploy_release`` + ``rollback_release``: every replica a fresh process, none has served
   ``/api`` yet; the lab has no latency or warm-up knob), weights 0/100. The live trigger's own
   per-poll readings (its event's ``samples``) are the stream Flagger's rule is computed on.
   A rollback of either is a false rollback. When ours rolls back, the rest of the plan is
   recorded on schedule from the step it left (held for one interval each), so Flagger's rule
   still sees a whole ramp; a step the trigger advanced while Flagger would have held ends
   Flagger's check there too (the trigger holds only while its last check failed).

Usage: ``python bench/canary.py [--rounds 5] [--interval 10] [--healthy-ramps 10]
[--healthy-plan 25,50,100] [--lab-dir DIR --port-base N]``. Traffic goes only to 127.0.0.1 and
stops with the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict
from typing import Any

from benchlib import SummaryRow, isolated_airflow_home, lab_arguments, own_lab, quiet_stdout, record_summary

isolated_airflow_home()

THRESHOLD = 2  # failed checks before a rollback, ours and Flagger's
SETTLE_S = 8.0  # weights 0/100 this long before a ramp: the primary's last requests leave the 5 s rate window

Segment = tuple[float, float, list[dict[str, Any]]]  # one step of a ramp: start, end, the readings meanwhile


def lb_requests(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("http_requests_total{"))


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
    from resilience.canary import FailbackPolicy
    from resilience.config import load_config
    from resilience.dns import Route53Weights
    from resilience.dr.failback import window_seconds

    dr = load_config().environment("lab").dr
    metrics = dr.metrics
    record = Route53Weights.lookup(dr.aws_conn_id, dr.zone, dr.record).record
    return {"aws_conn_id": dr.aws_conn_id, "record": record.to_dict(), "warmup_s": window_seconds(metrics.window)
            + 2 * metrics.scrape_interval_s, "threshold": THRESHOLD, "prometheus_conn_id": metrics.prometheus_conn_id,
            "primary_queries": {m: metrics.query(m, "primary") for m in ("error_rate_pct", "p95_ms")},
            "dr_queries": {m: metrics.query(m, "dr") for m in ("error_rate_pct", "p95_ms")},
            "policy": asdict(FailbackPolicy()), "poll_interval_s": metrics.poll_interval_s,
            "query_timeout_s": metrics.query_timeout_s}


def set_weights(spec: dict, primary: int) -> None:
    from resilience.dns import Route53Weights, WeightedRecord

    Route53Weights(spec["aws_conn_id"], WeightedRecord.from_dict(spec["record"])).set_weights(primary, 100 - primary)


def settle(spec: dict) -> None:
    set_weights(spec, 0)
    time.sleep(SETTLE_S)


# -- the two rules on a stream of readings ---------------------------------------------------------

def gate(spec: dict, sample: dict | None, failed: int, counted: frozenset[str] | None = None) -> Any:
    """The check both rules make on one reading (none at all: no values, a failed check); ``counted`` as
    ``canary_gate``'s."""
    from resilience.canary import FailbackPolicy, canary_gate, failback_ranges

    sample = sample or {"primary": {}, "dr": {}}
    return canary_gate(failback_ranges(sample["dr"], FailbackPolicy(**spec["policy"])), sample["primary"], failed,
                       THRESHOLD, counted)


def reading_at(samples: list[dict], instant: float) -> dict | None:
    """The last reading taken by ``instant``: what a check then would have read."""
    return next((s for s in reversed(samples) if s["at"] <= instant), None)


def flagger_rollback(spec: dict, segments: list[Segment], interval_s: float) -> tuple[float | None, int]:
    """Flagger's rule on recorded steps: a check at the end of each interval of a step while the step lasts,
    a failed one holds it, ``THRESHOLD`` failed ones roll back. (rollback instant or None, failed checks)."""
    failed = 0
    for start, end, samples in segments:
        instant = start + interval_s
        while instant <= end:
            decision = gate(spec, reading_at(samples, instant), failed)
            failed = decision.failed_checks
            if decision.action == "rollback":
                return instant, failed
            if decision.action == "advance":
                break
            instant += interval_s
    return None, failed


def per_poll_rollback(spec: dict, start: float, samples: list[dict], interval_s: float) -> float | None:
    """Ours replayed on recorded readings of one step: every reading a check of the error rate, every metric
    at each interval's end, no data during the warm-up not counted (``CanaryRampTrigger.run``'s loop
    without the weights)."""
    from resilience.canary import PER_POLL_METRICS, only_no_data

    failed, full_check_at = 0, interval_s
    for sample in samples:
        full = sample["at"] - start >= full_check_at
        decision = gate(spec, sample, failed, None if full else PER_POLL_METRICS)
        if sample["at"] - start < spec["warmup_s"] and decision.action != "advance" and only_no_data(decision):
            continue
        if full:
            full_check_at += interval_s
        failed = decision.failed_checks
        if decision.action == "rollback":
            return sample["at"]
    return None


def trigger_segments(event: dict) -> list[Segment]:
    """The live ramp's steps with the readings the trigger took during each."""
    changes = event["changes"]
    ends = [c["at"] for c in changes[1:]] + [event["ended"]]
    return [(c["at"], end, [s for s in event["samples"] if c["at"] <= s["at"] < end])
            for c, end in zip(changes, ends, strict=True) if c["reason"].startswith("canary step")]


# -- ramps ----------------------------------------------------------------------------------------

async def ramp(spec: dict, plan: list[int], interval_s: float) -> dict:
    from resilience.triggers import CanaryRampTrigger

    trigger = CanaryRampTrigger(**{**spec, "plan": plan, "interval_s": interval_s})
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("the trigger ended without an event")


async def record_step(spec: dict, weight: int, duration_s: float) -> Segment:
    """Set the weights and read both regions every poll for ``duration_s``, as the trigger does, deciding nothing."""
    import aiohttp

    from resilience.prometheus import PrometheusAsyncHook, read_values_async

    await asyncio.to_thread(set_weights, spec, weight)
    start, samples = time.time(), []
    hook = PrometheusAsyncHook(spec["prometheus_conn_id"])
    async with aiohttp.ClientSession() as session:
        while time.time() - start < duration_s:
            await asyncio.sleep(spec["poll_interval_s"])
            primary, dr = await asyncio.gather(
                read_values_async(hook, session, spec["primary_queries"], spec["query_timeout_s"]),
                read_values_async(hook, session, spec["dr_queries"], spec["query_timeout_s"]))
            samples.append({"at": time.time(), "weight": weight, "primary": primary[0], "dr": dr[0]})
    return start, time.time(), samples


def bad_step_round(spec: dict, interval_s: float, primary_url: str) -> dict:
    settle(spec)
    event = asyncio.run(ramp(spec, [50, 100], interval_s))
    bad_step = next(c["at"] for c in event["changes"] if c["after"]["primary"] == 50)
    rollback = event["changes"][-1]
    assert event["status"] == "rolled_back" and rollback["after"] == {"primary": 0, "dr": 100}, event
    drained = last_increase(primary_url, rollback["at"])
    settle(spec)
    start, end, samples = asyncio.run(record_step(spec, 50, 2 * interval_s + spec["poll_interval_s"]))
    set_weights(spec, 0)
    flagger_at, _ = flagger_rollback(spec, [(start, end, samples)], interval_s)
    replayed_at = per_poll_rollback(spec, start, samples, interval_s)
    return {"ours_s": rollback["at"] - bad_step, "drained_s": drained - bad_step,
            "flagger_s": (flagger_at or end) - start, "flagger_rolled_back": flagger_at is not None,
            "ours_replayed_s": (replayed_at or end) - start}  # the hold's length when a rule never rolled back


def cold_primary(spec: dict) -> float:
    """Weights 0/100, a broken release on the primary and the rollback to the good one; the time it took."""
    from resilience.lab import control
    from resilience.lab.state import load_lab_state

    set_weights(spec, 0)
    started = time.time()
    control.deploy_release(load_lab_state(), "primary", "bench-broken", fail_rate=1.0)
    control.rollback_release(load_lab_state(), "primary")
    took = time.time() - started
    time.sleep(max(0.0, SETTLE_S - took))
    return took


def healthy_round(spec: dict, plan: list[int], interval_s: float) -> dict:
    cold_s = cold_primary(spec)
    event = asyncio.run(ramp(spec, plan, interval_s))
    segments = trigger_segments(event)
    if event["status"] == "rolled_back":  # the rest of the plan on schedule, for Flagger's rule
        rest = plan[plan.index(event["step"]):]
        segments += [asyncio.run(record_step(spec, w, interval_s + spec["poll_interval_s"])) for w in rest]
    flagger_at, flagger_failed = flagger_rollback(spec, segments, interval_s)
    return {"cold_s": cold_s, "ours": event["status"], "ours_failed": event["failed_checks"],
            "reason": event.get("reason", ""), "total_s": event["ended"] - event["started"],
            "flagger_rolled_back": flagger_at is not None, "flagger_failed": flagger_failed}


def print_healthy(index: int, r: dict) -> None:
    print(f"healthy ramp {index}: primary cold in {r['cold_s']:.1f} s; ours {r['ours']} in {r['total_s']:.1f} s "
          f"({r['ours_failed']} failed check(s){': ' + r['reason'] if r['reason'] else ''}); Flagger rule "
          f"{'rolled back' if r['flagger_rolled_back'] else 'completed'} ({r['flagger_failed']} failed check(s))",
          file=sys.stderr)


def summary_rows(bad: list[dict], healthy: list[dict], interval_s: float, plan: list[int]) -> list[SummaryRow]:
    flagger = f"Flagger rule (interval {interval_s:g} s, threshold {THRESHOLD}), same stream"
    completed = [r["total_s"] for r in healthy if r["ours"] == "completed"]
    rows = [SummaryRow("bad step -> weights 0/100 (rollback), median s", statistics.median(r["ours_s"] for r in bad),
                       statistics.median(r["flagger_s"] for r in bad), flagger),
            SummaryRow("bad step -> rollback decision on the recorded hold stream (no UPSERT), median s",
                       statistics.median(r["ours_replayed_s"] for r in bad),
                       statistics.median(r["flagger_s"] for r in bad), flagger),
            SummaryRow(f"false rollbacks in {len(healthy)} healthy ramps on a cold primary (count)",
                       sum(r["ours"] == "rolled_back" for r in healthy),
                       sum(r["flagger_rolled_back"] for r in healthy), flagger)]
    if completed:
        rows.append(SummaryRow(f"healthy ramp {plan} at {interval_s:g} s, median s", statistics.median(completed),
                               len(plan) * interval_s, "steps x interval"))
    return rows


def print_figures(bad: list[dict], healthy: list[dict], interval_s: float, plan: list[int]) -> None:
    def spread(values: list[float]) -> str:
        return (f"median {statistics.median(values):.2f} s, min {min(values):.2f} s, max {max(values):.2f} s "
                f"over {len(values)}")

    print(f"bad step -> weights 0/100: ours (live) {spread([r['ours_s'] for r in bad])}; Flagger rule "
          f"{spread([r['flagger_s'] for r in bad])} ({sum(r['flagger_rolled_back'] for r in bad)} rolled back "
          f"within the hold)")
    print(f"  ours replayed on the hold streams (the decision, before the rollback's Route53 calls): "
          f"{spread([r['ours_replayed_s'] for r in bad])}")
    print(f"bad step -> all traffic on DR (primary LB quiet), ours: {spread([r['drained_s'] for r in bad])}")
    print(f"healthy ramps {plan} at {interval_s:g} s on a cold primary: ours rolled back "
          f"{sum(r['ours'] == 'rolled_back' for r in healthy)} / {len(healthy)} "
          f"(failed checks {[r['ours_failed'] for r in healthy]}), Flagger rule "
          f"{sum(r['flagger_rolled_back'] for r in healthy)} / {len(healthy)} "
          f"(failed checks {[r['flagger_failed'] for r in healthy]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="bad-step rounds")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="analysis interval of every ramp, ours and Flagger's (s; > the 7 s warm-up)")
    parser.add_argument("--healthy-ramps", type=int, default=10)
    parser.add_argument("--healthy-plan", default="25,50,100", help="the healthy ramps' steps (primary %%)")
    lab_arguments(parser, 22320)
    args = parser.parse_args()
    plan = [int(w) for w in args.healthy_plan.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab, quiet_stdout():
        from resilience.lab import control
        from resilience.lab.state import load_lab_state

        state = load_lab_state()
        control.start_dr_region(state, lab["app_db"]["read_write_dsn"])
        primary_url = load_lab_state()["regions"]["primary"]["url"]
        spec = spec_for(lab)
        control.deploy_release(load_lab_state(), "primary", "bench-broken", fail_rate=1.0)
        bad = []
        for index in range(args.rounds):
            bad.append(bad_step_round(spec, args.interval, primary_url))
            print(f"round {index + 1}: ours {bad[-1]['ours_s']:.2f} s (replayed {bad[-1]['ours_replayed_s']:.2f} s), "
                  f"drained {bad[-1]['drained_s']:.2f} s; Flagger rule {bad[-1]['flagger_s']:.2f} s", file=sys.stderr)
        healthy = []
        for index in range(args.healthy_ramps):
            healthy.append(healthy_round(spec, plan, args.interval))
            print_healthy(index + 1, healthy[-1])
        control.stop_dr_region(load_lab_state())
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
    print_figures(bad, healthy, args.interval, plan)
    record_summary("canary", summary_rows(bad, healthy, args.interval, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
