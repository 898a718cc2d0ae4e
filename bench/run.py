#!/usr/bin/env python3
"""The side-by-side benchmark of issue #7: coffre against nginx (GET ceiling) and its peers.

One command starts every server on 127.0.0.1, measures the machine's raw limits, runs the
scenario matrix with s3load.py (servers interleaved inside each repetition, rotated between
repetitions), appends one JSON line per measurement to bench/results/<date>.jsonl and rewrites
the generated part of docs/benchmarks.md.

    .venv/bin/python bench/run.py                      # default matrix, 3 repetitions (~15 min)
    .venv/bin/python bench/run.py --rgw --big-list --multipart --mixed
    .venv/bin/python bench/run.py --summarize bench/results/2026-11-24.jsonl   # table only
    .venv/bin/python bench/run.py --profile 4KiB:16:put,get   # py-spy profile of coffre

Nothing here runs at import time (pytest's testpaths is tests/, and benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DOC = PROJECT / "docs" / "benchmarks.md"
# The root operator's keys (admin API only since tenancy: refused on S3) and the bench tenant's name.
ACCESS_KEY, SECRET_KEY = "BENCHROOTKEY00000001", "bench-secret-key-that-is-long-enough-0"
TENANT = "bench"
MiB, GiB = 1 << 20, 1 << 30


def client_python() -> str:
    venv = PROJECT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ----------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    endpoint: str = ""
    access: str = "bench"
    secret: str = "benchsecret"  # noqa: S105 - the peers' bench identity, loopback only
    pids: list[int] = field(default_factory=list)
    plain: bool = False  # nginx: static files, GET only

    def start(self, root: Path) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Coffre(Server):
    """coffre serve on a fresh data directory; the load generator acts as the tenant "bench"'s root.

    ``python``: another interpreter (a venv with an older coffre, for side-by-side revisions).
    """

    proc: subprocess.Popen[bytes] | None = None
    python: str = ""
    variant: str = ""  # parts bench/variant.py switches off ("audit,metering"); "" = coffre as shipped
    # COFFRE_WORKERS (docs/workers.md); 0 leaves the environment's (unset: one process).
    workers: int = 0

    def start(self, root: Path) -> None:
        data = root / f"{self.name}-data"
        shutil.rmtree(data, ignore_errors=True)  # a fresh data dir every run
        port, admin_port = free_port(), free_port()
        env = dict(os.environ, COFFRE_ROOT_ACCESS_KEY=ACCESS_KEY, COFFRE_ROOT_SECRET_KEY=SECRET_KEY,
                   COFFRE_DATA_DIR=str(data), COFFRE_ADDRESS=f"127.0.0.1:{port}",
                   COFFRE_LOG_LEVEL="WARNING",
                   # Its own admin listener: another coffre may hold the default 9001.
                   COFFRE_ADMIN_ADDRESS=f"127.0.0.1:{admin_port}")
        if self.workers:
            env["COFFRE_WORKERS"] = str(self.workers)
        log_path = root / f"{self.name}.log"
        log = open(log_path, "ab")  # lives as long as the server
        offset = log.tell()
        launcher = [str(HERE / "variant.py"), self.variant] if self.variant else ["-m", "coffre"]
        self.proc = subprocess.Popen([self.python or client_python(), *launcher, "serve"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{port}"
        # The primary's pid: the CPU figures sum its process tree (s3load.proc_tree), so secondary
        # workers (its children, restarted ones too) are counted without being listed here.
        self.pids = [self.proc.pid]
        wait_port(port, self.proc)
        wait_port(admin_port, self.proc)
        if self.workers > 1:
            # The primary serves before its secondaries do; it prints "coffre listening" once
            # every worker serves, so the load starts on all of them.
            wait_log(log_path, offset, b"coffre listening", self.proc)
        self.access, self.secret = tenant_keys(f"http://127.0.0.1:{admin_port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ScriptPeer(Server):
    """A peer started by one of bench/peers/*.sh (install|setup|start|stop|pids)."""

    script: str = ""
    port: int = 0
    setup_cmds: tuple[str, ...] = ()
    pidfile_cmd: str = "pids"

    def sh(self, root: Path, *cmd: str, capture: bool = False) -> str:
        env = dict(os.environ, BENCH_ROOT=str(root))
        r = subprocess.run(["bash", str(HERE / "peers" / self.script), *cmd], env=env, check=True,
                           stdout=subprocess.PIPE if capture else None, text=True)
        return r.stdout or ""

    def start(self, root: Path) -> None:
        for c in self.setup_cmds:
            self.sh(root, c)
        self.sh(root, "start")
        self.pids = [int(p) for p in self.sh(root, self.pidfile_cmd, capture=True).split()]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._root = root

    def stop(self) -> None:
        self.sh(self._root, "stop")


class Nginx(ScriptPeer):
    script, port, setup_cmds, pidfile_cmd = "nginx.sh", 18086, (), "pid"

    def start(self, root: Path) -> None:
        if not os.path.exists("/usr/sbin/nginx"):
            self.sh(root, "install")  # Debian nginx-light
        super().start(root)
        self.plain = True

    def md5(self, size: str) -> str:
        return self.sh(self._root, "md5", size, capture=True).strip()


class SeaweedFS(ScriptPeer):
    script, port, setup_cmds = "seaweedfs.sh", 18095, ("install", "setup")


class RGW(ScriptPeer):
    script, port, setup_cmds = "ceph.sh", 18087, ("install", "setup")  # apt packages, then a fresh cluster


def tenant_keys(admin: str) -> tuple[str, str]:
    """Root keys of the tenant "bench", made through the admin API (a key added if it exists).

    A coffre from before tenancy has no /tenants (404): its operator keys still work on S3.
    """
    from coffre.cli.admin import AdminClient, ApiError

    c = AdminClient(admin, ACCESS_KEY, SECRET_KEY)
    try:
        doc = c.call("POST", "/tenants", {"name": TENANT})
    except ApiError as e:
        if e.status == 404:
            return ACCESS_KEY, SECRET_KEY
        if e.code != "EntityAlreadyExists":
            raise
        doc = c.call("POST", f"/tenants/{TENANT}/keys", {})
    return doc["access_key_id"], doc["secret_access_key"]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start in time")


def wait_log(path: Path, offset: int, text: bytes, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with open(path, "rb") as fh:
            fh.seek(offset)
            if text in fh.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not print {text!r} in time")


# ----------------------------------------------------------------------------------------------
# scenarios
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    size: str = ""
    conc: int = 1
    ops: str = "put,get"
    extra: tuple[str, ...] = ()
    kind: str = "objects"  # objects | list | mix


def scenarios(a: argparse.Namespace) -> list[Scenario]:
    out = [Scenario("4KiB c16", "4KiB", 16),
           Scenario("1MiB c1", "1MiB", 1), Scenario("1MiB c8", "1MiB", 8),
           Scenario("64MiB c1", "64MiB", 1), Scenario("64MiB c8", "64MiB", 8),
           Scenario("LIST 10k", kind="list", ops="list", conc=16,
                    extra=("--list-keys", "10000", "--list-rounds", "3"))]
    if a.mixed:
        out.append(Scenario("mix 64KiB c16", "64KiB", 16, ops="mix", kind="mix"))
    return out


def s3load(a: argparse.Namespace, srv: Server, sc: Scenario, rep: int, args: list[str],
           out: Path) -> dict | None:
    procs = "2" if sc.conc >= 8 else "1"
    cmd = [client_python(), str(HERE / "s3load.py"), "--endpoint", srv.endpoint,
           "-c", str(sc.conc), "-P", procs, "-d", str(a.duration), "--label", f"{srv.name}|{sc.name}",
           "--body-pool-mib", "128"]
    for p in srv.pids:
        cmd += ["--server-pid", str(p)]
    if not srv.plain:
        cmd += [f"--access-key={srv.access}", f"--secret-key={srv.secret}"]  # a secret may start with "-"
    cmd += args
    l0, t0 = loadavg(), time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        res = json.loads(line)
    except ValueError:
        res = {"error": r.stderr[-2000:]}
    res.update(kind="s3load", server=srv.name, scenario=sc.name, rep=rep, rc=r.returncode,
               started=datetime.datetime.fromtimestamp(t0, datetime.UTC).isoformat(timespec="seconds"),
               elapsed_s=round(time.time() - t0, 1), loadavg_start=l0, loadavg_end=loadavg())
    write(out, res)
    ph = res.get("phases", {})
    brief = " ".join(f"{k}={v.get('ops_s')}ops/s,{v.get('mib_s')}MiB/s,cpu={v.get('server_cpu_s')}"
                     for k, v in ph.items() if k in ("put", "get", "list", "mix"))
    print(f"  rep{rep} {srv.name:10s} {sc.name:14s} rc={r.returncode} {brief}", flush=True)
    if r.returncode != 0:
        print("    " + (r.stderr.strip().splitlines() or ["?"])[-1], flush=True)
    return res


def run_scenario(a: argparse.Namespace, srv: Server, sc: Scenario, rep: int, out: Path,
                 nginx_md5: dict[str, str]) -> None:
    if srv.plain:
        if sc.kind != "objects":
            return
        args = ["--plain-get", f"/obj-{sc.size}", "--expect-md5", nginx_md5[sc.size], "--ops", "get",
                "--size", sc.size]
        s3load(a, srv, sc, rep, args, out)
        return
    if sc.kind == "list":
        # the keys are written once per server (first repetition) and listed in every one;
        # the bucket is removed after the last repetition
        args = ["--ops", "list", "--bucket", f"bench-list-{srv.name}", "--run-id", "L10k", *sc.extra]
        if rep > 0:
            args.append("--list-no-prefill")
        if rep < a.reps - 1:
            args.append("--keep")
        s3load(a, srv, sc, rep, args, out)
        return
    args = ["--size", sc.size, "--ops", sc.ops, *sc.extra]
    s3load(a, srv, sc, rep, args, out)


def write(out: Path, rec: dict) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


# ----------------------------------------------------------------------------------------------
# raw limits of the machine, in the same run
# ----------------------------------------------------------------------------------------------
def limits(root: Path, out: Path) -> None:
    r = subprocess.run([client_python(), str(HERE / "limits.py")], stdout=subprocess.PIPE, text=True,
                       check=True)
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    rec.update(kind="limits", loadavg=loadavg())
    d = root / "disk"
    d.mkdir(parents=True, exist_ok=True)
    buf = os.urandom(MiB)
    best_w, best_s = 0.0, 0.0
    for _ in range(2):
        t = time.perf_counter()
        fd = os.open(d / "f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for _ in range(512):
            os.write(fd, buf)
        os.fsync(fd)
        os.close(fd)
        best_w = max(best_w, 512 / (time.perf_counter() - t))
        os.unlink(d / "f")
        # what a small PUT pays at least: one 4 KiB write and one fsync
        fd = os.open(d / "s", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        t = time.perf_counter()
        for _ in range(500):
            os.write(fd, buf[:4096])
            os.fsync(fd)
        best_s = max(best_s, 500 / (time.perf_counter() - t))
        os.close(fd)
        os.unlink(d / "s")
    rec["fsync_write_512MiB_mib_s"] = round(best_w, 1)
    rec["fsync_4KiB_per_s"] = round(best_s, 1)
    write(out, rec)
    print(f"limits: {rec}", flush=True)


class LoadSampler(threading.Thread):
    def __init__(self, out: Path, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.out, self.every, self.stop_ev = out, every, threading.Event()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            with open("/proc/loadavg") as f:
                la = f.read().split()
            write(self.out, {"kind": "load", "t": round(time.time(), 1), "load1": float(la[0]),
                             "load5": float(la[1]), "running": la[3]})
            self.stop_ev.wait(self.every)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per timed phase")
    p.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "coffre-bench"), help="scratch: data dirs, peers, logs")
    p.add_argument("--out", help="JSON lines (default bench/results/<UTC date>.jsonl)")
    p.add_argument("--no-seaweedfs", action="store_true")
    p.add_argument("--no-nginx", action="store_true")
    p.add_argument("--rgw", action="store_true", help="also Ceph RGW (its setup takes ~10 minutes)")
    p.add_argument("--mixed", action="store_true", help="also a mixed workload (64 KiB, c16)")
    p.add_argument("--big-list", action="store_true", help="also LIST in a 1,000,000-key bucket")
    p.add_argument("--multipart", action="store_true", help="also a 5 GiB multipart upload+download")
    p.add_argument("--also-coffre", action="append", default=[], metavar="NAME=PYTHON",
                   help="another coffre, run by that interpreter (e.g. an older revision's venv)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PARTS",
                   help="this build again with parts switched off by bench/variant.py (e.g. "
                        "no-audit=audit,metering): measures what those parts cost")
    p.add_argument("--coffre-workers", type=int, default=0, metavar="N",
                   help="COFFRE_WORKERS for the main coffre (default: the environment's, else 1)")
    p.add_argument("--also-coffre-workers", action="append", default=[], metavar="NAME=N",
                   help="another coffre of this build with N workers (e.g. w2=2 beside the main one)")
    p.add_argument("--only", help="comma-separated scenario names to keep (e.g. '4KiB c16')")
    p.add_argument("--summarize", metavar="JSONL", help="only rewrite docs/benchmarks.md from a file")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--profile", metavar="SIZE:CONC:OPS",
                   help="py-spy profile of coffre under one load instead of the matrix")
    p.add_argument("--gil", action="store_true",
                   help="with --profile: sample only the thread holding the GIL (Python CPU, not waits)")
    a = p.parse_args(argv)

    if a.summarize:
        from summary import render_into_doc  # bench/summary.py
        render_into_doc(Path(a.summarize), DOC)
        return 0
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    if a.profile:
        from profile_coffre import profile  # bench/profile_coffre.py
        return profile(a, root)

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    out = Path(a.out) if a.out else HERE / "results" / f"{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    main_coffre = Coffre("coffre")
    main_coffre.workers = a.coffre_workers
    servers: list[Server] = [main_coffre]
    for spec in a.also_coffre:
        name, _, python = spec.partition("=")
        extra = Coffre(name)
        extra.python = python
        servers.append(extra)
    for spec in a.variant:
        name, _, parts = spec.partition("=")
        variant = Coffre(name)
        variant.variant = parts
        servers.append(variant)
    for spec in a.also_coffre_workers:
        name, _, n = spec.partition("=")
        if not name or not n.isdigit() or int(n) < 1:
            p.error(f"--also-coffre-workers {spec!r}: NAME=N, N >= 1")
        extra = Coffre(name)
        extra.workers = int(n)
        servers.append(extra)
    if not a.no_nginx:
        servers.append(Nginx("nginx"))
    if not a.no_seaweedfs:
        servers.append(SeaweedFS("seaweedfs"))
    if a.rgw:
        servers.append(RGW("rgw"))
    scs = scenarios(a)
    if a.only:
        keep = {s.strip() for s in a.only.split(",")}
        scs = [s for s in scs if s.name in keep]

    write(out, {"kind": "run", "t": time.time(), "reps": a.reps, "duration": a.duration,
                "servers": [s.name for s in servers], "scenarios": [s.name for s in scs],
                "nproc": os.cpu_count(), "loadavg": loadavg(), "python": sys.version.split()[0],
                "git": subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                                      stdout=subprocess.PIPE, text=True).stdout.strip()})
    sampler = LoadSampler(out)
    sampler.start()
    # SIGTERM stops the servers we started, like Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    started: list[Server] = []
    try:
        for s in servers:
            print(f"starting {s.name}", flush=True)
            s.start(root)
            started.append(s)
        nginx_md5 = {}
        for s in servers:
            if isinstance(s, Nginx):
                nginx_md5 = {z: s.md5(z) for z in ("4KiB", "1MiB", "64MiB", "64KiB")
                             if (root / "nginx" / "www" / f"obj-{z}").exists()}
        limits(root, out)
        for rep in range(a.reps):
            order = servers[rep % len(servers):] + servers[:rep % len(servers)]
            for sc in scs:
                for s in order:
                    run_scenario(a, s, sc, rep, out, nginx_md5)
        if a.big_list:
            # --keep: deleting a million objects one DeleteObjects page at a time takes longer
            # than filling them (25 min for coffre), and s3load prints its results only after
            # its cleanup; the scratch data directories go with the servers anyway.
            big = Scenario("LIST 1M", kind="list", ops="list", conc=16,
                           extra=("--list-keys", "1000000", "--list-rounds", "3", "--keep"))
            for s in servers:
                if not s.plain:
                    args = ["--ops", "list", "--bucket", f"bench-biglist-{s.name}", *big.extra]
                    s3load(a, s, big, 0, args, out)
        if a.multipart:
            from multipart import run_multipart  # bench/multipart.py
            for s in servers:
                if not s.plain:
                    write(out, run_multipart(s.endpoint, s.access, s.secret, s.pids, s.name,
                                             size=5 * GiB))
    finally:
        sampler.stop_ev.set()
        for s in reversed(started):
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                print(f"stopping {s.name}: {e}", file=sys.stderr)
    print(f"results: {out}", flush=True)
    if not a.no_doc:
        from summary import render_into_doc
        render_into_doc(out, DOC)
        print(f"table: {DOC}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
