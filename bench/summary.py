"""Turn the JSON lines of bench/run.py into the markdown tables of docs/benchmarks.md.

Medians with [min–max] over the repetitions; ratios are computed inside each repetition (the
servers of one repetition shared the same minutes of the machine) and then summarised.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

BEGIN, END = "<!-- results:begin (bench/run.py writes this part) -->", "<!-- results:end -->"
MiB, GiB = 1 << 20, 1 << 30
PHASES = {"put": "PUT", "get": "GET", "list": "LIST", "mix": "MIX"}
PEERS_EXCLUDED = {"coffre", "nginx"}


def load(path: Path) -> list[dict]:
    """The records of the LAST run in ``path``: a day's file collects every run of that day,
    and medians must never mix runs of different code."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    starts = [i for i, r in enumerate(records) if r.get("kind") == "run"]
    return records[starts[-1]:] if starts else records


def fmt(v: float | None, nd: int = 1) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{nd}f}"


def mmm(vals: Iterable[float | None], nd: int = 1) -> str:
    xs = [v for v in vals if v is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return fmt(xs[0], nd)
    return f"{fmt(statistics.median(xs), nd)} [{fmt(min(xs), nd)}–{fmt(max(xs), nd)}]"


def med(vals: Iterable[float | None]) -> float | None:
    xs = [v for v in vals if v is not None]
    return statistics.median(xs) if xs else None


class Cell:
    """One (server, scenario, phase) measurement of one repetition."""

    def __init__(self, rec: dict, phase: str) -> None:
        ph = rec["phases"][phase]
        self.rep = rec["rep"]
        self.ops_s = ph.get("ops_s")
        self.mib_s = ph.get("mib_s")
        self.p50 = ph.get("lat_ms", {}).get("p50")
        self.p99 = ph.get("lat_ms", {}).get("p99")
        self.errors = ph.get("errors", 0)
        cpu = ph.get("server_cpu_s")
        ops = ph.get("ops") or 0
        nbytes = (ph.get("mib_s") or 0) * (ph.get("wall_s") or 0) * MiB
        self.cpu_ms_op = cpu * 1000 / ops if cpu is not None and ops else None
        self.cpu_s_gib = cpu / (nbytes / GiB) if cpu is not None and nbytes >= MiB else None
        self.rss = ph.get("server_rss_max_mib")
        self.srv_util = ph.get("server_cpu_util")
        self.cli_util = ph.get("client_cpu_util")
        self.load = (rec.get("loadavg_start", 0) + rec.get("loadavg_end", 0)) / 2


def cells(records: list[dict]) -> dict[tuple[str, str, str], list[Cell]]:
    out: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for r in records:
        if r.get("kind") != "s3load" or "phases" not in r:
            continue
        for ph in r["phases"]:
            if ph in PHASES or ph.startswith("mix."):
                out[(r["server"], r["scenario"], ph)].append(Cell(r, ph))
    return out


def label(scenario: str, phase: str) -> str:
    if scenario.startswith("LIST"):
        return scenario + " (ms/page = p50)"
    if phase.startswith("mix."):
        return f"{scenario} {phase}"
    if phase == "mix":
        return f"{scenario} (all)"
    return f"{PHASES.get(phase, phase)} {scenario}"


def ratios(cs: dict[tuple[str, str, str], list[Cell]], server: str, scenario: str, phase: str,
           ref: Callable[[str], bool], metric: str) -> list[float]:
    """server/ref per repetition, ref = the best of the servers selected by `ref`."""
    mine = {c.rep: getattr(c, metric) for c in cs.get((server, scenario, phase), [])}
    out = []
    for rep, v in mine.items():
        refs = [getattr(c, metric) for (s, sc, ph), lst in cs.items() for c in lst
                if sc == scenario and ph == phase and ref(s) and c.rep == rep and getattr(c, metric)]
        if v and refs:
            out.append(v / max(refs))
    return out


def render(records: list[dict]) -> str:
    cs = cells(records)
    run = next((r for r in records if r.get("kind") == "run"), {})
    lim = next((r for r in records if r.get("kind") == "limits"), {})
    loads = [r["load1"] for r in records if r.get("kind") == "load"]
    servers = [s for s in run.get("servers", []) if any(k[0] == s for k in cs)]
    order = [(sc, ph) for sc in run.get("scenarios", []) for ph in ("put", "get", "list", "mix")
             if any(k[1] == sc and k[2] == ph for k in cs)]
    order += sorted({(k[1], k[2]) for k in cs} - set(order))
    # Other coffre builds or configurations of the run (--also-coffre, --variant, worker counts)
    # are no peers: a peer is another product a user could pick.
    peers = [s for s in servers if s not in PEERS_EXCLUDED and not s.startswith("coffre")]
    L: list[str] = []
    first = min((r["started"] for r in records if r.get("started")), default="?")
    last = max((r["started"] for r in records if r.get("started")), default="?")
    L.append(f"Run of {first} → {last} UTC, git `{run.get('git', '?')}`, {run.get('reps')} repetitions "
             f"× {run.get('duration')} s per phase, {run.get('nproc')} cores, Python {run.get('python')}. "
             f"Servers: {', '.join(servers)}.")
    if loads:
        L.append(f"**Machine load (1-min load average, sampled every 10 s, {len(loads)} samples): "
                 f"min {min(loads):.1f}, median {statistics.median(loads):.1f}, max {max(loads):.1f}** "
                 "— our client and server account for about 2 of it; the rest is other work on this "
                 "shared machine. Absolute figures are lower bounds; the ratios within a repetition "
                 "and the server CPU per unit of work are the figures that count.")
    errs = sum(c.errors for lst in cs.values() for c in lst)
    bad = [r for r in records if r.get("kind") == "s3load" and r.get("rc")]
    vf = sum(r.get("verify_failed", 0) or 0 for r in records if r.get("kind") == "s3load")
    L.append(f"Errors: {errs}; verification failures: {vf}; invocations with a non-zero exit: {len(bad)}.")
    L.append("")
    L.append("### Throughput and latency (median [min–max] of the repetitions)")
    L.append("")
    L.append("| scenario | server | ops/s | MiB/s | p50 ms | p99 ms |")
    L.append("|---|---|---|---|---|---|")
    for sc, ph in order:
        for s in servers:
            lst = cs.get((s, sc, ph))
            if not lst:
                continue
            L.append(f"| {label(sc, ph)} | {s} | {mmm(c.ops_s for c in lst)} | "
                     f"{mmm((c.mib_s for c in lst), 1) if not sc.startswith('LIST') else '—'} | "
                     f"{mmm((c.p50 for c in lst), 2)} | {mmm((c.p99 for c in lst), 2)} |")
    L.append("")
    L.append("### Server cost: CPU per unit of work, cores busy, memory, load")
    L.append("")
    L.append("CPU is user+system time of the server's whole process tree during the phase, divided by "
             "the operations (ms/op) or the bytes (s/GiB) completed. Cores: server / client, of 2.")
    L.append("")
    L.append("(LIST: CPU ms per 1,000-key page.)")
    L.append("")
    L.append("| scenario | server | CPU ms/op | CPU s/GiB | cores srv / cli | peak RSS MiB | load avg |")
    L.append("|---|---|---|---|---|---|---|")
    for sc, ph in order:
        for s in servers:
            lst = cs.get((s, sc, ph))
            if not lst or ph.startswith("mix."):  # CPU is measured per phase, not per operation kind
                continue
            gib = mmm((c.cpu_s_gib for c in lst), 2) if not sc.startswith(("4KiB", "LIST")) else "—"
            L.append(f"| {label(sc, ph)} | {s} | {mmm((c.cpu_ms_op for c in lst), 2)} | {gib} | "
                     f"{fmt(med(c.srv_util for c in lst), 2)} / {fmt(med(c.cli_util for c in lst), 2)} | "
                     f"{fmt(max((c.rss or 0) for c in lst), 0)} | {fmt(med(c.load for c in lst), 1)} |")
    L.append("")
    L.append("### Ratios inside each repetition (median [min–max])")
    L.append("")
    L.append("Throughput of a server divided by nginx's (GET; nginx serves the same bytes from disk "
             "with sendfile) and by the fastest peer's in the same repetition (peers: "
             f"{', '.join(peers) or 'none'}). Above 1 = faster.")
    L.append("")
    L.append("| scenario | server | ÷ nginx | ÷ fastest peer |")
    L.append("|---|---|---|---|")
    for sc, ph in order:
        for s in servers:
            if s == "nginx" or not cs.get((s, sc, ph)) or ph.startswith("mix."):
                continue
            metric = "ops_s"
            rn = ratios(cs, s, sc, ph, lambda x: x == "nginx", metric) if ph == "get" else []
            rp = ratios(cs, s, sc, ph, lambda x, me=s: x in peers and x != me, metric)
            if not rn and not rp:
                continue
            L.append(f"| {label(sc, ph)} | {s} | {mmm(rn, 2)} | {mmm(rp, 2)} |")
    maxrss = {s: max((c.rss or 0) for (sv, _, _), lst in cs.items() if sv == s for c in lst)
              for s in servers}
    L.append("")
    L.append("Peak RSS over the whole matrix (MiB, server process tree): "
             + ", ".join(f"{s} {v:.0f}" for s, v in maxrss.items()) + ".")
    mp = [r for r in records if r.get("kind") == "multipart"]
    if mp:
        L.append("")
        L.append("### 5 GiB through multipart")
        L.append("")
        L.append("| server | upload MiB/s | download MiB/s | server CPU s/GiB up / down | peak RSS MiB | ok |")
        L.append("|---|---|---|---|---|---|")
        for r in mp:
            L.append(f"| {r['server']} | {fmt(r.get('up_mib_s'))} | {fmt(r.get('down_mib_s'))} | "
                     f"{fmt(r.get('up_cpu_s_gib'), 2)} / {fmt(r.get('down_cpu_s_gib'), 2)} | "
                     f"{fmt(r.get('rss_max_mib'), 0)} | {r.get('ok')} |")
    if lim:
        L.append("")
        L.append("### Raw limits in the same run (one core, 1 MiB buffers, best of 3)")
        L.append("")
        L.append("| reference | MiB/s | CPU s/GiB |")
        L.append("|---|---|---|")
        for k in ("md5", "sha256", "crc32_zlib", "crc64nvme_awscrt", "crc32c_awscrt", "aes256gcm_encrypt",
                  "aes256gcm_decrypt"):
            if lim.get(k):
                L.append(f"| {k} | {lim[k]:.0f} | {1024 / lim[k]:.2f} |")
        if lim.get("fsync_write_512MiB_mib_s"):
            L.append(f"| write 512 MiB + fsync | {lim['fsync_write_512MiB_mib_s']:.0f} | — |")
        if lim.get("fsync_4KiB_per_s"):
            L.append(f"| 4 KiB write + fsync, one after the other | {lim['fsync_4KiB_per_s']:.0f} /s "
                     f"({1000 / lim['fsync_4KiB_per_s']:.2f} ms each) | — |")
    L.append("")
    L += targets(cs, peers, lim, maxrss.get("coffre"), mp)
    return "\n".join(L) + "\n"


def targets(cs: dict[tuple[str, str, str], list[Cell]], peers: list[str], lim: dict,
            rss: float | None, mp: list[dict]) -> list[str]:
    def m(sc: str, ph: str, attr: str) -> float | None:
        return med(getattr(c, attr) for c in cs.get(("coffre", sc, ph), []))

    def rpeer(sc: str, ph: str) -> float | None:
        return med(ratios(cs, "coffre", sc, ph, lambda x: x in peers, "ops_s"))

    def rngx(sc: str, ph: str) -> float | None:
        return med(ratios(cs, "coffre", sc, ph, lambda x: x == "nginx", "ops_s"))

    rows: list[tuple[str, float | None, str, Callable[[float], bool]]] = []
    for ph, cpu in (("get", 0.3), ("put", 0.6)):
        rows.append((f"4 KiB {ph.upper()} c16 ÷ fastest peer", rpeer("4KiB c16", ph), "≥ 1.2", lambda v: v >= 1.2))
        rows.append((f"4 KiB {ph.upper()} CPU ms/op", m("4KiB c16", ph, "cpu_ms_op"), f"≤ {cpu}",
                     lambda v, c=cpu: v <= c))
        rows.append((f"4 KiB {ph.upper()} p99 ms", m("4KiB c16", ph, "p99"), "≤ 20", lambda v: v <= 20))
    for sc in ("1MiB c1", "1MiB c8", "64MiB c1", "64MiB c8"):
        rows.append((f"GET {sc} ÷ nginx", rngx(sc, "get"), "≥ 0.8", lambda v: v >= 0.8))
        rows.append((f"GET {sc} CPU s/GiB", m(sc, "get", "cpu_s_gib"), "≤ 1.0", lambda v: v <= 1.0))
    bound = None
    if lim.get("md5") and lim.get("aes256gcm_encrypt"):
        # what every PUT must compute: md5 (ETag), AES-256-GCM, and CRC64NVME (S3's default
        # checksum, which coffre stores for every object as S3 does) when measured
        crc = 1024 / lim["crc64nvme_awscrt"] if lim.get("crc64nvme_awscrt") else 0.0
        bound = 1.3 * (1024 / lim["md5"] + 1024 / lim["aes256gcm_encrypt"] + crc)
    for sc in ("64MiB c1", "64MiB c8"):
        rows.append((f"PUT {sc} ÷ fastest peer", rpeer(sc, "put"), "≥ 1.5", lambda v: v >= 1.5))
        if bound:
            rows.append((f"PUT {sc} CPU s/GiB (1.3 × (md5 + AES-GCM + CRC64NVME if measured), this run)", m(sc, "put", "cpu_s_gib"),
                         f"≤ {bound:.2f}", lambda v, b=bound: v <= b))
    rows.append(("LIST 1,000-key page at 10,000 keys, p50 ms", m("LIST 10k", "list", "p50"), "≤ 5",
                 lambda v: v <= 5))
    if cs.get(("coffre", "LIST 1M", "list")):
        rows.append(("LIST 1,000-key page at 1,000,000 keys, p50 ms", m("LIST 1M", "list", "p50"), "≤ 10",
                     lambda v: v <= 10))
    rows.append(("peak RSS MiB, whole matrix", rss, "≤ 200", lambda v: v <= 200))
    for r in mp:
        if r.get("server") == "coffre":
            rows.append(("5 GiB multipart: peak RSS MiB", r.get("rss_max_mib"), "≤ 200", lambda v: v <= 200))
    out = ["### Targets of issue #7 (coffre, medians of this run)", "",
           "| target | measured | bar | met |", "|---|---|---|---|"]
    for name, v, bar, ok in rows:
        out.append(f"| {name} | {fmt(v, 2)} | {bar} | {'—' if v is None else ('yes' if ok(v) else '**no**')} |")
    # The same build with 2 workers beside the main one (run.py --also-coffre-workers coffre-w2=2).
    if any(k[0] == "coffre-w2" for k in cs):
        for ph in ("get", "put"):
            v = med(ratios(cs, "coffre-w2", "4KiB c16", ph, lambda x: x == "coffre", "ops_s"))
            out.append(f"| 2 worker processes ÷ 1, 4 KiB {ph.upper()} c16 ops/s | {fmt(v, 2)} | ≥ 1.7 "
                       f"| {'—' if v is None else ('yes' if v >= 1.7 else '**no**')} |")
    else:
        out.append("| 2 worker processes ≥ 1.7× one on small objects | — | ≥ 1.7 | not in this run "
                   "(`--also-coffre-workers coffre-w2=2`) |")
    return out


def render_into_doc(jsonl: Path, doc: Path) -> None:
    body = render(load(jsonl))
    block = f"{BEGIN}\n\nRaw data: `bench/results/{jsonl.name}`.\n\n{body}\n{END}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text + "\n" + block + "\n"
    doc.write_text(text)
