"""Where a coffre's CPU goes, coarsely: user vs kernel time and context switches per operation.

    .venv/bin/python bench/cpusplit.py 4KiB:16:put 64MiB:8:put ...

A fresh coffre per load; s3load drives it for --duration seconds. py-spy sees only Python
frames; this tells how much of the CPU is the kernel's (fsync, file creation, socket copies)
and how many thread switches each request costs (executor hops).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    out = {"user_s": int(fields[11]) / CLK, "sys_s": int(fields[12]) / CLK, "vol_cs": 0.0, "invol_cs": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        out["vol_cs"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        out["invol_cs"] += int(line.split()[1])
        except OSError:
            pass
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("loads", nargs="+", help="SIZE:CONC:OP")
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "coffre-bench"))
    a = p.parse_args()
    from run import Coffre, client_python

    for spec in a.loads:
        size, conc, op = spec.split(":")
        srv = Coffre("coffre")
        srv.start(Path(a.root))
        try:
            pid = srv.pids[0]
            cmd = [client_python(), str(HERE / "s3load.py"), "--endpoint", srv.endpoint, f"--access-key={srv.access}",
                   f"--secret-key={srv.secret}", "--size", size, "-c", conc,
                   "-P", "2" if int(conc) >= 8 else "1", "-d", str(a.duration), "--ops", op,
                   "--body-pool-mib", "128", "--prefill-objects", "64" if "MiB" in size else "1000"]
            lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert lg.stderr is not None and lg.stdout is not None
            before = after = None
            for line in lg.stderr:  # s3load announces each phase; sample around the timed one
                if line.strip() == f"s3load: phase {op} start":
                    before = sample(pid)
                elif line.strip() == f"s3load: phase {op} end":
                    after = sample(pid)
            out = lg.stdout.read()
            lg.wait()
            res = json.loads(out.strip().splitlines()[-1])
            ph = res["phases"][op]
            assert before is not None and after is not None
            n = ph["ops"]
            d = {k: after[k] - before[k] for k in before}
            rec = {"kind": "cpusplit", "size": size, "conc": int(conc), "op": op, "ops": n,
                   "ops_s": ph["ops_s"], "mib_s": ph["mib_s"],
                   "user_ms_op": round(1000 * d["user_s"] / n, 3), "sys_ms_op": round(1000 * d["sys_s"] / n, 3),
                   "ctx_switches_op": round((d["vol_cs"] + d["invol_cs"]) / n, 1)}
            print(json.dumps(rec), flush=True)
            with open(HERE / "results" / "cpusplit.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
