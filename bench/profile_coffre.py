"""py-spy profile of coffre under one s3load phase (bench/run.py --profile SIZE:CONC:OP[,OP...]).

For each OP (put, get) a fresh coffre is started, s3load drives it, and py-spy samples the
server only while that phase runs (s3load announces its phases on stderr). The collapsed stacks
are kept next to the results (bench/results/profile-<size>-c<conc>-<op>.txt) and summarised as
the functions with the most samples, self and inclusive, in % of the active samples.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def summarise(raw: Path, top: int = 25) -> dict:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in stack.split(";")]
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    pct = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)
    return {"samples": total,
            "self": [(f, pct(c)) for f, c in self_c.most_common(top)],
            "inclusive": [(f, pct(c)) for f, c in incl.most_common(top * 2)]}


def profile(a: argparse.Namespace, root: Path) -> int:
    from run import Coffre, client_python  # bench/run.py

    size, conc, ops = a.profile.split(":")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    for op in ops.split(","):
        srv = Coffre("coffre")
        srv.start(root)
        try:
            raw = results / f"profile-{size}-c{conc}-{op}{'-gil' if a.gil else ''}.txt"
            procs = "2" if int(conc) >= 8 else "1"
            cmd = [client_python(), str(HERE / "s3load.py"), "--endpoint", srv.endpoint,
                   f"--access-key={srv.access}", f"--secret-key={srv.secret}", "--size", size, "-c", conc,
                   "-P", procs, "-d", str(a.duration), "--ops", op, "--server-pid", str(srv.pids[0]),
                   "--body-pool-mib", "128", "--prefill-objects", "64" if "MiB" in size else "1000"]
            if op == "list":  # enough 1,000-key pages to fill the sampling window
                cmd += ["--list-keys", "10000", "--list-rounds", str(int(a.duration) * 5)]
            lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            spy: list[subprocess.Popen[bytes]] = []

            def watch(lg: subprocess.Popen[str] = lg, raw: Path = raw, op: str = op,
                      srv: Coffre = srv, spy: list[subprocess.Popen[bytes]] = spy) -> None:
                assert lg.stderr is not None
                for line in lg.stderr:
                    if line.strip() == f"s3load: phase {op} start" and not spy:
                        # sample a little less than the phase so that no idle tail is counted
                        spy.append(subprocess.Popen(
                            [str(Path(client_python()).parent / "py-spy"), "record", "--nonblocking",
                             "-r", "200", "-f", "raw", "-o", str(raw), "-d", str(max(1, int(a.duration) - 1)),
                             "--pid", str(srv.pids[0]), *(["--gil"] if a.gil else [])],
                            stdout=subprocess.DEVNULL, stderr=open(root / f"{raw.name}.log", "w")))  # noqa: SIM115

            t = threading.Thread(target=watch, daemon=True)
            t.start()
            assert lg.stdout is not None
            out = lg.stdout.read()  # not communicate(): it would read stderr too, under the watcher
            lg.wait(3600)
            t.join(5)
            for s in spy:
                s.wait(60)
            res = json.loads(out.strip().splitlines()[-1])
            ph = res["phases"][op]
            summary = summarise(raw) if raw.exists() else {}
            rec = {"kind": "profile", "gil_only": a.gil, "size": size, "conc": int(conc), "op": op, "ops_s": ph["ops_s"],
                   "mib_s": ph["mib_s"], "server_cpu_util": ph.get("server_cpu_util"),
                   "cpu_ms_op": round(1000 * ph["server_cpu_s"] / ph["ops"], 3) if ph["ops"] else None,
                   **summary}
            with open(results / "profiles.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"== {size} c{conc} {op}: {ph['ops_s']} ops/s, {ph['mib_s']} MiB/s, "
                  f"server {ph.get('server_cpu_util')} cores, {rec['cpu_ms_op']} CPU ms/op, "
                  f"{summary.get('samples')} samples -> {raw}")
            for title in ("self", "inclusive"):
                print(f"  -- {title}")
                for fn, p in summary.get(title, [])[:30]:
                    print(f"  {p:5.1f}%  {fn}")
        finally:
            srv.stop()
    return 0
