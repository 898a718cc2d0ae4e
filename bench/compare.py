#!/usr/bin/env python3
"""Two servers of one run.py results file, side by side: ratios inside each repetition.

    .venv/bin/python bench/compare.py bench/results/X.jsonl coffre without-audit-metering

For every scenario and phase both servers ran: the median [min–max] over the repetitions of
each server's ops/s and server CPU per operation (ms) or per GiB (s), and of the ratio A/B
computed inside each repetition (the servers ran back to back there, on the same machine
minutes). Also the machine's load average while the file was written. Markdown on stdout.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
from collections import defaultdict
from pathlib import Path

GiB = 1 << 30


def spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def split(reps: list[dict[str, float]]) -> str:
    if not any(r["user_ms_op"] or r["sys_ms_op"] for r in reps):
        return "—"
    return (f"{statistics.median(r['user_ms_op'] for r in reps):.2f} + "
            f"{statistics.median(r['sys_ms_op'] for r in reps):.2f}")


def load(path: Path) -> tuple[dict[tuple[str, str, str], list[dict[str, float]]], list[float]]:
    """(server, scenario, phase) -> one dict per repetition in file order; and load averages."""
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    loads: list[float] = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "load":
            loads.append(float(rec["load1"]))
        if rec.get("tool") != "s3load":
            continue
        server, _, scenario = str(rec["label"]).partition("|")
        for phase, p in rec.get("phases", {}).items():
            if not p.get("ops") or p.get("server_cpu_s") is None:
                continue
            per_op = p["server_cpu_s"] / p["ops"]
            gib = p["ops"] * rec["size"] / GiB
            runs[(server, scenario, phase)].append({
                "ops_s": p["ops_s"], "cpu_ms_op": per_op * 1000,
                "cpu_s_gib": p["server_cpu_s"] / gib if gib else 0.0,
                # user and kernel CPU per operation, when s3load recorded them
                "user_ms_op": p.get("server_user_s", 0.0) / p["ops"] * 1000,
                "sys_ms_op": p.get("server_sys_s", 0.0) / p["ops"] * 1000,
            })
    return runs, loads


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, a, b = Path(argv[0]), argv[1], argv[2]
    runs, loads = load(path)
    if loads:
        print(f"Load average (1 min, every 10 s, {len(loads)} samples): min {min(loads):.1f}, "
              f"median {statistics.median(loads):.1f}, max {max(loads):.1f}\n")
    print(f"| scenario | phase | {a} ops/s | {b} ops/s | {a}/{b} ops/s | {a} CPU ms/op | {b} CPU ms/op "
          f"| {a}/{b} CPU | {a} user+kernel ms/op | {b} user+kernel ms/op |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (server, scenario, phase), mine in sorted(runs.items()):
        if server != a or (b, scenario, phase) not in runs:
            continue
        other = runs[(b, scenario, phase)]
        n = min(len(mine), len(other))
        ratio_ops = [mine[i]["ops_s"] / other[i]["ops_s"] for i in range(n)]
        ratio_cpu = [mine[i]["cpu_ms_op"] / other[i]["cpu_ms_op"] for i in range(n)]
        print(f"| {scenario} | {phase.upper()} | {spread([m['ops_s'] for m in mine], 0)} "
              f"| {spread([o['ops_s'] for o in other], 0)} | **{spread(ratio_ops)}** "
              f"| {spread([m['cpu_ms_op'] for m in mine])} | {spread([o['cpu_ms_op'] for o in other])} "
              f"| **{spread(ratio_cpu)}** | {split(mine)} | {split(other)} |")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `compare.py ... | head` ends quietly
    sys.exit(main(sys.argv[1:]))
