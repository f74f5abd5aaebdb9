"""Benchmark PostgreSQL failover on the lab's Patroni cluster, as the postgres-failover scenario does it.

A lab of its own (writer at ~10 commits/s, load generator at 20 requests/s through the load balancer).
For each replication mode (Patroni ``synchronous_mode`` on, then off, switched with ``PATCH /config``)
and each variant (planned ``switchover``; ``crash``: the leader's Patroni and postmaster SIGKILLed,
Patroni promotes after its TTL), ``--rounds`` rounds of the scenario's own plan -> inject -> revert,
measuring per round:

- failover: the change began -> a writable leader other than the old one (Patroni ``/primary`` 200);
- error rate back: the change began -> the app's error rate at the load balancer (the guard's own
  PromQL, 5 s window) back within 1 point of the round's baseline, once the new leader took writes;
- acknowledged writes lost: commits the writer was told succeeded (its journal, from 30 s before the
  change) that the database no longer has after the revert.

The runbook's target (failover < 30 s) is printed next to each median as a ratio.
Usage: ``python bench/failover.py [--rounds 10] [--modes switchover,crash] [--replication sync,async]
[--lab-dir DIR --port-base N --keep-lab]``. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import SummaryRow, isolated_airflow_home, lab_arguments, own_lab, quiet_stdout, record_summary

isolated_airflow_home()

TARGET_S = 30.0
ERROR_RATE_MARGIN_PCT = 1.0  # runbook SLO: error rate < baseline + 1 point


@dataclass
class Series:
    failover_s: list[float] = field(default_factory=list)
    errors_back_s: list[float] = field(default_factory=list)
    peak_error_pct: list[float] = field(default_factory=list)
    acknowledged: int = 0
    lost: int = 0


def error_rate(hook, query: str) -> float:
    from resilience.prometheus import single_value

    value = single_value(hook.query(query))
    return 0.0 if value is None or value != value else value  # no traffic or NaN: no errors seen


def errors_back(hook, query: str, baseline: float, started: float, writable_at: float,
                limit_s: float = 120) -> tuple[float, float]:
    """(seconds from ``started`` until the error rate is back within the margin after ``writable_at``, peak)."""
    peak = 0.0
    while time.time() - started < limit_s:
        now, rate = time.time(), error_rate(hook, query)
        peak = max(peak, rate)
        if now >= writable_at and rate <= baseline + ERROR_RATE_MARGIN_PCT:
            return now - started, peak
        time.sleep(0.25)
    return float("nan"), peak


def one_round(platform, hook, query: str, mode: str) -> tuple[float, float, float, dict]:
    from resilience.faults.postgres_failover import PostgresFailover
    from resilience.ha_database import heal, wait_new_leader

    fault = PostgresFailover()
    heal(platform.database_cluster(), platform.start_database_nodes, platform.database_replicas_expected(),
         sync_standby=platform.database_cluster().synchronous_mode())
    baseline = error_rate(hook, query)
    plan = fault.plan(platform, {"mode": mode})
    info = fault.inject(platform, plan)
    started = float(info["changed_at"])
    timing = wait_new_leader(platform.database_cluster(), plan["old_leader"], started, timeout_s=90)
    back_s, peak = errors_back(hook, query, baseline, started, started + timing.writable_after_s)
    observed = fault.revert(platform, plan, info)
    return timing.writable_after_s, back_s, peak, observed["acknowledged_writes"]


def set_replication(platform, synchronous: bool) -> None:
    client = platform.database_cluster()
    client.set_synchronous_mode(synchronous)
    deadline = time.monotonic() + 30
    while client.synchronous_mode() != synchronous or any(m.is_sync_standby for m in client.topology().members) \
            != synchronous:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Patroni did not switch synchronous_mode to {synchronous}")
        time.sleep(0.5)


def stats(values: list[float]) -> str:
    real = [v for v in values if v == v]
    if not real:
        return "-"
    return f"{statistics.median(real):.2f} ({min(real):.2f}-{max(real):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--modes", default="switchover,crash")
    parser.add_argument("--replication", default="sync,async")
    lab_arguments(parser, 26920)
    args = parser.parse_args()
    results: dict[tuple[str, str], Series] = {}
    with quiet_stdout(), own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        from resilience.config import load_config
        from resilience.platforms.local import LocalPlatform
        from resilience.prometheus import PrometheusHook, render

        env = load_config().environment("lab")
        platform = LocalPlatform(env, Path(lab["lab_dir"]))
        slo = env.slo_source()
        hook = PrometheusHook(slo.prometheus_conn_id, timeout_s=2)
        query = render(slo.queries["error_rate_pct"], slo.window)
        for replication in args.replication.split(","):
            set_replication(platform, replication == "sync")
            for mode in args.modes.split(","):
                series = results.setdefault((mode, replication), Series())
                for i in range(1, args.rounds + 1):
                    failover_s, back_s, peak, writes = one_round(platform, hook, query, mode)
                    series.failover_s.append(failover_s)
                    series.errors_back_s.append(back_s)
                    series.peak_error_pct.append(peak)
                    series.acknowledged += writes["acknowledged"]
                    series.lost += writes["lost"]
                    print(f"[{mode} {replication} {i}/{args.rounds}] failover {failover_s:.2f} s, error rate back "
                          f"{back_s:.2f} s (peak {peak:.1f} %), acknowledged writes lost {writes['lost']} of "
                          f"{writes['acknowledged']}", file=sys.stderr, flush=True)
        set_replication(platform, True)  # the lab's default
    print(f"PostgreSQL failover on the lab's Patroni cluster ({args.rounds} rounds each; median (min-max); "
          f"runbook target {TARGET_S:g} s)\n")
    print("| variant | replication | failover s | vs target | error rate back under SLO s | peak error rate % "
          "| acknowledged writes lost |")
    print("|---|---|---|---|---|---|---|")
    for (mode, replication), s in results.items():
        ratio = statistics.median(s.failover_s) / TARGET_S
        print(f"| {mode} | {'synchronous' if replication == 'sync' else 'asynchronous'} | {stats(s.failover_s)} "
              f"| {ratio:.2f}x | {stats(s.errors_back_s)} | {stats(s.peak_error_pct)} | {s.lost} of {s.acknowledged} |")
    record_summary("failover", [
        SummaryRow(f"postgres failover ({mode}, {replication}), median s", statistics.median(s.failover_s), TARGET_S,
                   "runbook target") for (mode, replication), s in results.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
