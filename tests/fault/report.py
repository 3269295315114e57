"""Print the fault-injection table from the JSON lines the scenarios wrote.

``python tests/fault/report.py [/tmp/clusterq-fault-report.jsonl]``: one row per scenario, summed over
its runs, recovery time as median and max over the runs.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

from fault_support import REPORT_PATH


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else str(REPORT_PATH)
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(path) as fh:
        for line in fh:
            entry = json.loads(line)
            rows[entry["scenario"]].append(entry)
    print("| scenario | runs | enqueued | executed | failed | duplicates | lost | recovery s (median / max) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, entries in rows.items():
        total = {k: sum(e[k] for e in entries) for k in ("enqueued", "executed", "failed", "duplicates", "lost")}
        times = [e["recovery_s"] for e in entries if e["recovery_s"] is not None]
        recovery = f"{statistics.median(times):.2f} / {max(times):.2f}" if times else "n/a"
        print(f"| {name} | {len(entries)} | {total['enqueued']} | {total['executed']} | {total['failed']} | "
              f"{total['duplicates']} | {total['lost']} | {recovery} |")


if __name__ == "__main__":
    main()
