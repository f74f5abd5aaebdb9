"""``make bench``'s closing table: every benchmark's summary rows (ours / reference / ratio), with when
each was measured and on what machine.

Each benchmark keeps its rows in ``.bench/<bench>.json`` (``benchlib.record_summary``;
``$RESILIENCE_BENCH_SUMMARY_DIR`` overrides the folder). Usage: ``python bench/summary.py``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from benchlib import SUMMARY_HEADER, SummaryRow, summary_dir

ORDER = ["abort_latency", "drill", "orchestration", "canary", "failover", "archive_lag"]


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.machine())
    return f"{os.cpu_count()} cores ({model}), {memory_gib:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main() -> int:
    files = sorted(summary_dir().glob("*.json"),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))
    if not files:
        print(f"no benchmark summaries in {summary_dir()}: run the benchmarks first", file=sys.stderr)
        return 1
    results = [json.loads(p.read_text()) for p in files]
    print(f"## Summary\n\nMachine: {machine()}.\n")
    print(SUMMARY_HEADER)
    for result in results:
        for row in result["rows"]:
            print(SummaryRow(**row).markdown(result["bench"]))
    print()
    for result in results:
        print(f"- {result['bench']}: measured {result['at']}, load average {result['load']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
