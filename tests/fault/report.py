"""Print the fault-injection table from the JSON lines the scenarios wrote.

``python tests/fault/report.py [/tmp/clusterq-fault-report.jsonl]``: one row per scenario, summed over
its runs: enqueued (acknowledged), executed, failed (with a reason), duplicates with their causes, lost
(and how many of those Redis dropped inside a failover window), recovery time as median and max over
the runs (the longest stall of processing or enqueueing after the fault, or the time until the affected
jobs ran again).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter, defaultdict

from fault_support import REPORT_PATH

SHORT_CAUSES = {
    "lease expired or crash (attempts > 1)": "lease expiry/crash",
    "failover window (writes dropped by Redis)": "writes dropped in failover",
}


def duplicates_cell(entries: list[dict]) -> str:
    total = sum(e["duplicates"] for e in entries)
    causes: Counter[str] = Counter()
    for entry in entries:
        causes.update(entry.get("duplicate_causes") or {})
        unexplained = len(entry.get("unexplained_duplicates") or [])
        if unexplained:
            causes["UNEXPLAINED"] += unexplained
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{SHORT_CAUSES.get(c, c)}: {n}' for c, n in causes.most_common())})"


def lost_cell(entries: list[dict]) -> str:
    total = sum(e["lost"] for e in entries)
    in_window = sum(e.get("lost_in_failover_window", 0) for e in entries)
    if not total:
        return "0"
    return f"{total} ({in_window} in failover window)" if in_window else str(total)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(REPORT_PATH)
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(path) as fh:
        for line in fh:
            entry = json.loads(line)
            rows[entry["scenario"]].append(entry)
    print("| scenario | runs | enqueued | executed | failed | duplicates (cause) | lost | recovery s (median / max) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, entries in rows.items():
        total = {k: sum(e[k] for e in entries) for k in ("enqueued", "executed", "failed")}
        times = [e["recovery_s"] for e in entries if e["recovery_s"] is not None]
        recovery = f"{statistics.median(times):.2f} / {max(times):.2f}" if times else "n/a"
        print(f"| {name} | {len(entries)} | {total['enqueued']} | {total['executed']} | {total['failed']} | "
              f"{duplicates_cell(entries)} | {lost_cell(entries)} | {recovery} |")


if __name__ == "__main__":
    main()
