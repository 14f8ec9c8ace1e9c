#!/usr/bin/env python3
"""bench_compare: memcached vs corecached (or A/A), side by side, on loopback.

For each selected workload, starts a fresh server A, runs the load generator
(corecached-bench) against it, stops it, then the same for server B, and repeats for
--rounds rounds (A B A B ...), so machine drift hits both alike. Both servers always get
the same number of threads on the same CPUs. Two configurations (--config):

  pinned  both servers -t 1 pinned to CPU 0 (taskset), the client pinned to CPU 1
  shared  both servers -t 2, nothing pinned: servers and client share every core

`--config both` (the default) runs `pinned` then `shared`. Prints one markdown table per
configuration (medians over rounds, B/A ratio with its min-max over rounds, latency,
server CPU us/op from /proc, load average at start and end) and writes them with the raw
JSON to bench/results/.

TLS rows (`tls-50c`, `tls-50c-p16`; not in the default set) run the text rows over TLS:
both servers get `-Z -o ssl_chain_cert=,ssl_key=` with a CA and server certificate made
for the run, the generator `--tls --tls-ca`; with their plaintext rows in the same run, a
second table gives each server's TLS cost per op (TLS row µs/op minus plaintext row µs/op).
`--interleave` runs round 1 of every workload, then round 2, ..., so such rows see the
same drift.

Replication (`--replication async`, `async,sync`, or `sync`): A is corecached without
replication, and each mode is one more side (B, then C) running the same corecached
with `--partner` to a partner corecached started for that run (loopback, its own client
and replication ports, `--replication-listen` only, a secret file made for the run;
`-t` and `-m` as the server's; on --partner-cpu, default the client's CPU). Side A gets
an idle partner process on the same CPU, so every side has the same processes. After
each replicated run it waits until the partner acknowledged every record, then checks
that the partner holds as many items as the server (a run where nothing replicated
fails), and records the sender's `stats replication` (records, backlog bytes per record,
sync waits and timeouts) and the partner's CPU; a table then gives each mode's ops/s
against A, latencies, and the backlog a 5 s outage needs at the row's set rate.

Every process it starts is stopped by PID on any exit (normal, error, Ctrl-C, SIGTERM).
Exit status: 0 if every run succeeded, 1 if any run failed, 2 on bad usage/setup.

Examples:
  scripts/bench_compare.py                              # memcached (A) vs corecached (B), both configs
  scripts/bench_compare.py --a memcached --b memcached  # A/A noise check
  scripts/bench_compare.py --config shared --a corecached --a-threads 1   # corecached -t 1 vs -t 2
  scripts/bench_compare.py --workloads text-50c,bin-50c-p16 --rounds 5 --duration 4
  scripts/bench_compare.py --config pinned --interleave --rounds 5 --duration 4 \
      --workloads text-50c,tls-50c,text-50c-p16,tls-50c-p16   # TLS cost, docs/BENCHMARKS.md
  scripts/bench_compare.py --config pinned --replication async,sync --interleave \
      --workloads text-50c,bin-50c,text-50c-p16,bin-50c-p16 --rounds 3 --duration 4
  scripts/bench_compare.py --list
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import servers  # scripts/servers.py: how every server here is started and stopped

REPO = servers.REPO

# Standard workloads. `args` go to corecached-bench; `mem` overrides the server's -m;
# `warmup` overrides --warmup; kind "fill" is the memory-efficiency run.
BASE = ["--keys", "100000", "--value-size", "100", "--populate"]
WORKLOADS = [
    dict(name="text-50c", desc="text, 50 conns, 1:10 set:get, 100 B",
         args=["-P", "text", "-c", "50", "--ratio", "1:10"] + BASE),
    dict(name="bin-50c", desc="binary, 50 conns, 1:10 set:get, 100 B",
         args=["-P", "binary", "-c", "50", "--ratio", "1:10"] + BASE),
    dict(name="text-50c-p16", desc="text, 50 conns, pipeline 16, 1:10",
         args=["-P", "text", "-c", "50", "--pipeline", "16", "--ratio", "1:10"] + BASE),
    dict(name="bin-50c-p16", desc="binary, 50 conns, pipeline 16, 1:10",
         args=["-P", "binary", "-c", "50", "--pipeline", "16", "--ratio", "1:10"] + BASE),
    dict(name="text-1c", desc="text, 1 conn, no pipeline, 1:10",
         args=["-P", "text", "-c", "1", "--ratio", "1:10"] + BASE),
    dict(name="bin-1c", desc="binary, 1 conn, no pipeline, 1:10",
         args=["-P", "binary", "-c", "1", "--ratio", "1:10"] + BASE),
    dict(name="text-4k", desc="text, 50 conns, 4 KiB values, 1:1",
         args=["-P", "text", "-c", "50", "--ratio", "1:1", "--keys", "100000",
               "--value-size", "4096", "--populate"]),
    dict(name="bin-4k", desc="binary, 50 conns, 4 KiB values, 1:1",
         args=["-P", "binary", "-c", "50", "--ratio", "1:1", "--keys", "100000",
               "--value-size", "4096", "--populate"]),
    dict(name="text-100k", desc="text, 50 conns, 100 KiB values, 1:1 (buffer growth)",
         args=["-P", "text", "-c", "50", "--ratio", "1:1", "--keys", "2000",
               "--value-size", "102400", "--populate"]),
    dict(name="meta-50c-p16", desc="meta mg/ms, 50 conns, pipeline 16, 1:10",
         args=["-P", "meta", "-c", "50", "--pipeline", "16", "--ratio", "1:10"] + BASE),
    dict(name="zipf-hit", desc="Zipf 0.99 gets + set on miss, 1M keys, -m 64 (hit ratio)",
         mem=64, warmup=3,
         args=["-P", "binary", "-c", "50", "--pipeline", "16", "--ratio", "0:1",
               "--set-on-miss", "--key-pattern", "zipf", "--zipf-s", "0.99",
               "--keys", "1000000", "--value-size", "100"]),
    dict(name="mem-fill", desc="fill unique 30 B keys + 100 B values until eviction, -m 64",
         mem=64, kind="fill",
         # memcached at -m 64 sometimes answers "SERVER_ERROR out of memory
         # storing object" while its slab classes fill (a server's answer, not
         # a broken run): count such replies instead of failing the row.
         args=["-P", "text", "-c", "50", "--pipeline", "16", "--fill",
               "--key-prefix", "corecached-bench:mem:", "--key-pad", "9",
               "--value-size", "100", "--allow-errors"]),
]
# TLS rows: the text rows over TLS (`tls` = its plaintext row). Both servers get
# `-Z -o ssl_chain_cert=,ssl_key=` with a CA and server certificate (EC P-256) made
# for the run; the generator verifies the server against that CA (rustls, ring).
TLS_WORKLOADS = [
    dict(name="tls-50c", desc="text-50c over TLS", tls="text-50c",
         args=["-P", "text", "-c", "50", "--ratio", "1:10"] + BASE),
    dict(name="tls-50c-p16", desc="text-50c-p16 over TLS", tls="text-50c-p16",
         args=["-P", "text", "-c", "50", "--pipeline", "16", "--ratio", "1:10"] + BASE),
]
EXTRA_WORKLOADS = TLS_WORKLOADS + [
    dict(name="text-mget10", desc="text, 50 conns, 10-key multiget, 1:10",
         args=["-P", "text", "-c", "50", "--multiget", "10", "--ratio", "1:10"] + BASE),
    dict(name="bin-mget10", desc="binary, 50 conns, 10-key multiget (GETQ+NOOP), 1:10",
         args=["-P", "binary", "-c", "50", "--multiget", "10", "--ratio", "1:10"] + BASE),
]
ALL = {w["name"]: w for w in WORKLOADS + EXTRA_WORKLOADS}

# Machine configurations: equal threads on equal cores for both servers.
CONFIGS = {
    "pinned": dict(server_cpu="0", client_cpu="1", threads=1,
                   desc="both servers -t 1 pinned to CPU 0, client pinned to CPU 1"),
    "shared": dict(server_cpu="", client_cpu="", threads=2,
                   desc="both servers -t 2 unpinned, client unpinned (all cores shared)"),
}

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def parse_server(spec):
    """`memcached`, `corecached`, a path, or KIND=PATH -> (kind, binary)."""
    if "=" in spec:
        kind, path = spec.split("=", 1)
    elif spec == "memcached":
        kind, path = "memcached", shutil.which("memcached") or "memcached"
    elif spec == "corecached":
        kind = "corecached"
        path = os.environ.get("CORECACHED_BIN", os.path.join(REPO, "target/release/corecached"))
    else:
        base = os.path.basename(spec)
        kind = "memcached" if ("memcached" in base and "corecached" not in base) else "corecached"
        path = spec
    if kind not in ("memcached", "corecached"):
        raise SystemExit(f"bench_compare: unknown server kind {kind!r} (memcached|corecached)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        hint = " (build it with `cargo build --release`)" if kind == "corecached" else \
            " (install it: apt-get install memcached)"
        log(f"bench_compare: server binary not found or not executable: {path}{hint}")
        sys.exit(2)
    return kind, os.path.abspath(path)


def server_flags(mem, threads, extra):
    """Flags both servers get (servers.py adds `-U 0 -l 127.0.0.1 -p PORT`)."""
    return ["-m", str(mem), "-t", str(threads), "-c", "4096"] + list(extra)


def tls_pki(args):
    """The run's CA and server certificate (made on first use, in a temp dir removed at
    exit)."""
    if getattr(args, "pki", None) is None:
        if shutil.which("openssl") is None:
            raise RuntimeError("TLS rows need the openssl command (apt-get install openssl)")
        d = tempfile.mkdtemp(prefix="bench-compare-tls-")
        atexit.register(shutil.rmtree, d, True)
        args.pki = servers.make_tls_pki(d)
    return args.pki


REPL_MODES = ("async", "sync")
REPL_WAIT_S = 60.0  # bound on waiting for a partner to stream / to acknowledge everything


def make_secret(directory):
    """A replication secret file (64 hex digits, mode 600) in `directory`."""
    path = os.path.join(directory, "repl.secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def cpu_ticks(pid):
    """utime + stime of `pid` in seconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def repl_streams(st):
    """`stats replication` (a dict) -> one dict per stream."""
    n = int(st.get("streams", 0) or 0)
    keys = ("state", "next_seq", "acked_seq", "lag_records", "backlog_bytes",
            "backlog_capacity", "backlog_first_seq")
    return [{k: st.get(f"stream{i}:{k}") for k in keys} for i in range(n)]


def repl_caught_up(st):
    """Every stream streaming and nothing unacknowledged."""
    ss = repl_streams(st)
    return bool(ss) and all(s["state"] == "streaming" and s["lag_records"] == "0" for s in ss)


def wait_repl(port, what, pred, limit=REPL_WAIT_S):
    """Polls `stats replication` of 127.0.0.1:`port` until `pred` holds; returns it."""
    deadline = time.monotonic() + limit
    while True:
        st = servers.stats(port, "replication")
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise RuntimeError(f"replication: {what} not reached in {limit:.0f} s: "
                               f"{ {k: v for k, v in st.items() if 'state' in k or 'lag' in k} }")
        time.sleep(0.02)


def backlog_per_record(st):
    """Bytes a record takes in the sender's backlog ring: bytes held over records held,
    summed over streams (None if the rings are empty)."""
    held = used = 0
    for s in repl_streams(st):
        held += int(s["next_seq"]) - int(s["backlog_first_seq"])
        used += int(s["backlog_bytes"])
    return used / held if held else None


def start_partner(side, mem, args, logdir, tag, secret):
    """The partner of one run: corecached listening for replication on a fresh loopback
    port (no --partner of its own: it sends nothing). Returns (Server, replication port)."""
    last = None
    for _ in range(3):  # the free replication port may be taken before it binds it
        rport = servers.free_port()
        flags = server_flags(mem, side["threads"], [
            "--replication-listen", f"127.0.0.1:{rport}", "--replication-secret", secret]
            + args.partner_args)
        p = servers.Server("corecached", flags, binary=args.partner_bin,
                           wrapper=["taskset", "-c", args.partner_cpu] if args.partner_cpu else [],
                           log=os.path.join(logdir, f"{tag}.partner.log"))
        try:
            p.start()
            return p, rport
        except servers.StartError as e:
            last = e
            p.stop()
    raise RuntimeError(f"partner did not start: {last}")


def start_server(side, mem, args, logdir, tag, tls=None, repl=()):
    """Starts one side's server (with `tls`, a pki dict: TLS only); returns
    (servers.Server, version string)."""
    extra = list(side["extra"]) + (servers.tls_server_args(tls) if tls else []) + list(repl)
    srv = servers.Server(side["kind"], server_flags(mem, side["threads"], extra),
                         binary=side["bin"],
                         wrapper=["taskset", "-c", args.server_cpu] if args.server_cpu else [],
                         log=os.path.join(logdir, f"{tag}.server.log"))
    try:
        srv.start()
        v = servers.ask(srv.port, b"version\r\n", timeout=5.0, tls_ca=tls and tls["ca"])
    except (servers.StartError, OSError) as e:
        srv.stop()
        raise RuntimeError(f"server did not start: {e}")
    if not v.startswith("VERSION "):
        srv.stop()
        raise RuntimeError(f"server answered `version` with {v!r}: {' '.join(srv.argv)}")
    return srv, v[len("VERSION "):]


def run_one(w, side, args, logdir, tag):
    """One server start + one generator run. Returns the generator's JSON (with extras)."""
    mem = w.get("mem") or args.memory
    pki = tls_pki(args) if w.get("tls") else None
    mode = side.get("replication")
    partner, srv, tmp = None, None, None
    try:
        repl = []
        if mode or side.get("idle_partner"):
            tmp = tempfile.mkdtemp(prefix="bench-compare-repl-")
            secret = make_secret(tmp)
            partner, rport = start_partner(side, mem, args, logdir, tag, secret)
            if mode:
                repl = ["--partner", f"127.0.0.1:{rport}", "--replication-mode", mode,
                        "--replication-secret", secret]
        srv, version = start_server(side, mem, args, logdir, tag, tls=pki, repl=repl)
        if mode:
            wait_repl(srv.port, "every stream streaming",
                      lambda st: st.get("mode") == mode and bool(repl_streams(st)) and all(
                          x["state"] == "streaming" for x in repl_streams(st)))
        res = run_bench(w, srv, partner, args, logdir, tag, pki)
        res["server_version"] = version
        res["server_cmd"] = srv.argv
        if partner is not None:
            res["partner_cmd"] = partner.argv
        if mode:
            res["replication"] = replication_result(srv, partner, mode, res)
        return res
    finally:
        if srv is not None:
            srv.stop()
        if partner is not None:
            partner.stop()
        if tmp is not None:
            shutil.rmtree(tmp, True)


def replication_result(srv, partner, mode, res):
    """After a replicated run: waits until the partner acknowledged everything, then
    checks it holds what the server holds, and reads the counters."""
    st = wait_repl(srv.port, "every record acknowledged", repl_caught_up)
    s_st = servers.stats(srv.port)
    items, evictions = int(s_st.get("curr_items", 0)), int(s_st.get("evictions", 0))
    p_st_all = servers.stats(partner.port)
    p_items = int(p_st_all.get("curr_items", 0))
    p_evictions = int(p_st_all.get("evictions", 0))
    p_st = servers.stats(partner.port, "replication")
    r = dict(
        mode=mode, items=items, partner_items=p_items, evictions=evictions,
        partner_evictions=p_evictions,
        records_sent=int(st.get("records_sent", 0)),
        partner_records_applied=int(p_st.get("records_applied", 0)),
        bytes_per_record=backlog_per_record(st),
        backlog_capacity=sum(int(x["backlog_capacity"]) for x in repl_streams(st)),
        streams=len(repl_streams(st)),
        sync_waits=int(st.get("sync_waits", 0)), sync_timeouts=int(st.get("sync_timeouts", 0)),
        sync_degraded=int(st.get("sync_degraded", 0)),
        sets_per_sec=(res["sets"] / res["elapsed_s"]) if res.get("elapsed_s") else None,
        partner_cpu_util=res.get("partner_cpu_util"),
    )
    # Evictions stay local (each side evicts on its own), so the counts must match only
    # where neither evicted.
    same = p_items == items or (evictions or p_evictions)
    if items == 0 or p_items == 0 or not same or \
            r["partner_records_applied"] < r["records_sent"]:
        raise RuntimeError(f"replication check failed: server holds {items} items, partner "
                           f"{p_items}; {r['records_sent']} records sent, "
                           f"{r['partner_records_applied']} applied")
    return r


def run_bench(w, srv, partner, args, logdir, tag, pki):
    """One generator run against a started server. Returns the generator's JSON."""
    port = srv.port
    warmup = w.get("warmup", args.warmup)
    duration = args.fill_limit if w.get("kind") == "fill" else args.duration
    jpath = os.path.join(logdir, f"{tag}.json")
    cmd = [args.bench_bin, "-p", str(port), "-t", str(args.client_threads),
           "--server-pid", str(srv.pid), "--json", jpath, "-q",
           "-d", str(duration), "-w", str(warmup)] + w["args"] + args.bench_args
    if pki:
        cmd += ["--tls", "--tls-ca", pki["ca"]]
    if args.client_cpu:
        cmd = ["taskset", "-c", args.client_cpu] + cmd
    errf = open(os.path.join(logdir, f"{tag}.bench.log"), "wb")
    p_cpu0, t0 = (cpu_ticks(partner.pid) if partner else None), time.monotonic()
    g = servers.spawn(cmd, stdout=errf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    errf.close()
    try:
        rc = g.wait(timeout=warmup + duration + 180)
    except subprocess.TimeoutExpired:
        servers.stop_process(g)
        raise RuntimeError("load generator timed out")
    servers.forget(g)
    p_cpu1, t1 = (cpu_ticks(partner.pid) if partner else None), time.monotonic()
    alive = srv.alive() and (partner is None or partner.alive())
    res = None
    if os.path.exists(jpath):
        with open(jpath) as f:
            res = json.load(f)
    if rc != 0 or res is None or not alive:
        with open(os.path.join(logdir, f"{tag}.bench.log"), errors="replace") as f:
            out = f.read()[-1500:]
        why = "server or partner died during the run; " if not alive else ""
        raise RuntimeError(f"{why}corecached-bench exit {rc}: {' '.join(cmd)}\n{out}")
    if p_cpu0 is not None and p_cpu1 is not None and t1 > t0:
        res["partner_cpu_util"] = (p_cpu1 - p_cpu0) / (t1 - t0)
    return res


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt(v, nd=2):
    return "–" if v is None else f"{v:.{nd}f}"


def lat_ms(runs, q):
    return med([r["latency_us"][q] / 1000.0 for r in runs])


def summarize(w, a_runs, b_runs):
    s = dict(name=w["name"], desc=w["desc"], kind=w.get("kind", "run"),
             a_rounds=len(a_runs), b_rounds=len(b_runs))
    if s["kind"] == "fill":
        for side, runs in (("a", a_runs), ("b", b_runs)):
            s[side] = dict(
                items=med([r["fill"]["items"] for r in runs]),
                rss_mib=med([r["fill"]["rss_bytes"] / 1048576.0 for r in runs
                             if r["fill"].get("rss_bytes")]),
                rss_per_item=med([r["fill"]["rss_bytes_per_item"] for r in runs]),
                limit_per_item=med([r["fill"]["limit_bytes_per_item"] for r in runs]),
                payload=med([r["fill"]["payload_bytes_per_item"] for r in runs]),
                ops_per_sec=med([r["ops_per_sec"] for r in runs]),
            )
        pairs = [(a["fill"]["items"], b["fill"]["items"]) for a, b in zip(a_runs, b_runs)]
    else:
        for side, runs in (("a", a_runs), ("b", b_runs)):
            s[side] = dict(
                ops_per_sec=med([r["ops_per_sec"] for r in runs]),
                ops_per_sec_all=[r["ops_per_sec"] for r in runs],
                p50_ms=lat_ms(runs, "p50"), p99_ms=lat_ms(runs, "p99"),
                p999_ms=lat_ms(runs, "p999"),
                server_us_per_op=med([r["server"]["cpu_us_per_op"] for r in runs]),
                server_us_per_op_all=[r["server"]["cpu_us_per_op"] for r in runs],
                server_util=med([r["server"]["cpu_util"] for r in runs]),
                client_util=med([r["client"]["cpu_util"] for r in runs]),
                client_us_per_op=med([r["client"]["cpu_us_per_op"] for r in runs]),
                hit_ratio=med([r["hit_ratio"] for r in runs]),
            )
        pairs = [(a["ops_per_sec"], b["ops_per_sec"]) for a, b in zip(a_runs, b_runs)]
    ratios = [b / a for a, b in pairs if a]
    main_key = "items" if s["kind"] == "fill" else "ops_per_sec"
    a_m, b_m = s.get("a", {}).get(main_key), s.get("b", {}).get(main_key)
    s["ratio"] = (b_m / a_m) if (a_m and b_m) else None
    s["ratio_min"] = min(ratios) if ratios else None
    s["ratio_max"] = max(ratios) if ratios else None
    if s["kind"] != "fill":
        au, bu = s["a"]["server_us_per_op"], s["b"]["server_us_per_op"]
        s["cpu_ratio"] = (bu / au) if (au and bu) else None
    if s["kind"] != "fill" and any(r.get("replication") for r in b_runs):
        reps = [r["replication"] for r in b_runs if r.get("replication")]
        s["b"]["replication"] = dict(
            mode=reps[0]["mode"],
            sets_per_sec=med([x["sets_per_sec"] for x in reps]),
            bytes_per_record=med([x["bytes_per_record"] for x in reps]),
            backlog_capacity=reps[0]["backlog_capacity"], streams=reps[0]["streams"],
            partner_cpu_util=med([x.get("partner_cpu_util") for x in reps]),
            sync_waits=sum(x["sync_waits"] for x in reps),
            sync_timeouts=sum(x["sync_timeouts"] for x in reps),
            sync_degraded=sum(x["sync_degraded"] for x in reps),
            partner_items=[x["partner_items"] for x in reps], items=[x["items"] for x in reps],
        )
        rp = s["b"]["replication"]
        rp["outage_5s_bytes"] = (rp["sets_per_sec"] * 5 * rp["bytes_per_record"]
                                 if rp["sets_per_sec"] and rp["bytes_per_record"] else None)
    if s["kind"] != "fill":
        s["a"]["sets_per_sec"] = med([r["sets"] / r["elapsed_s"] for r in a_runs
                                      if r.get("sets") is not None and r.get("elapsed_s")])
        s["a"]["partner_cpu_util"] = med([r.get("partner_cpu_util") for r in a_runs])
    if w.get("tls"):
        s["plain"] = w["tls"]
        for side, runs in (("a", a_runs), ("b", b_runs)):
            s[side]["tls"] = sorted({f"{t['version']} {t['cipher_suite']}" for t in
                                     (r.get("config", {}).get("tls") for r in runs) if t})
    return s


def tls_costs(summaries):
    """For each TLS row whose plaintext row ran too: what TLS adds per op on each side
    (server µs/op of the TLS row minus that of the plaintext row, medians over rounds),
    B's cost over A's, and each side's TLS/plaintext ops/s. Also per round (the TLS
    row's round r against the plaintext row's round r; with --interleave they ran
    minutes apart at most): the min-max of B's cost over A's, the noise of the ratio."""
    by_name = {s["name"]: s for s in summaries}
    out = []
    for s in summaries:
        p = by_name.get(s.get("plain"))
        if p is None:
            continue
        c = dict(name=s["name"], plain=p["name"])
        for side in ("a", "b"):
            t_us, p_us = s[side]["server_us_per_op"], p[side]["server_us_per_op"]
            t_ops, p_ops = s[side]["ops_per_sec"], p[side]["ops_per_sec"]
            c[side] = dict(
                plain_us=p_us, tls_us=t_us,
                cost_us=(t_us - p_us) if (t_us is not None and p_us is not None) else None,
                ops_ratio=(t_ops / p_ops) if (t_ops and p_ops) else None,
                negotiated=s[side].get("tls", []))
        ca, cb = c["a"]["cost_us"], c["b"]["cost_us"]
        c["cost_ratio"] = (cb / ca) if (ca is not None and cb is not None and ca > 0) else None
        per = []
        for side in ("a", "b"):
            per.append([t - q if (t is not None and q is not None) else None for t, q in
                        zip(s[side].get("server_us_per_op_all", []),
                            p[side].get("server_us_per_op_all", []))])
        ratios = [b / a for a, b in zip(*per) if a is not None and b is not None and a > 0]
        c["cost_ratio_min"] = min(ratios) if ratios else None
        c["cost_ratio_max"] = max(ratios) if ratios else None
        out.append(c)
    return out


def markdown(summaries, meta, failures):
    a, b = meta["a_label"], meta["b_label"]
    out = []
    out.append(f"### {meta['title']}\n")
    out.append(f"- A = {a}; B = {b}")
    out.append(f"- {meta['date']} on `{meta['host']}`: {meta['cpu']}, {meta['ncpu']} CPUs, "
               f"kernel {meta['kernel']}")
    out.append(f"- configuration `{meta['config']}`: servers on CPU {meta['server_cpu']} "
               f"(`-m {meta['memory']}` unless the row says), client on CPU {meta['client_cpu']} "
               f"({meta['client_threads']} client thread(s)); {meta['rounds']} rounds A B A B..., "
               f"{meta['duration']} s measured after {meta['warmup']} s warm-up per run"
               f"{'; workloads interleaved within each round' if meta.get('interleave') else ''}; "
               f"medians over rounds")
    out.append(f"- command: `{meta['command']}`; total {meta['elapsed_min']:.1f} min; "
               f"load average {meta['load_start'][0]:.2f} at start, {meta['load_end'][0]:.2f} at end")
    runs = [s for s in summaries if s["kind"] != "fill"]
    if runs:
        out.append("")
        out.append("| workload | A ops/s | B ops/s | B/A (min–max) | A p50 / p99 / p99.9 ms "
                   "| B p50 / p99 / p99.9 ms | A srv µs/op | B srv µs/op | B/A µs/op "
                   "| A CPU srv/cli | B CPU srv/cli | hit % A / B |")
        out.append("|---|---:|---:|---|---|---|---:|---:|---:|---|---|---|")
        for s in runs:
            sa, sb = s["a"], s["b"]
            lat = lambda x: f"{fmt(x['p50_ms'])} / {fmt(x['p99_ms'])} / {fmt(x['p999_ms'])}"
            cpu = lambda x: (f"{fmt(x['server_util'] and x['server_util'] * 100, 0)}% / "
                             f"{fmt(x['client_util'] and x['client_util'] * 100, 0)}%")
            hit = lambda x: "–" if x["hit_ratio"] is None else f"{x['hit_ratio'] * 100:.1f}"
            out.append(
                f"| {s['name']} | {fmt_int(sa['ops_per_sec'])} | {fmt_int(sb['ops_per_sec'])} "
                f"| {fmt(s['ratio'])} ({fmt(s['ratio_min'])}–{fmt(s['ratio_max'])}) "
                f"| {lat(sa)} | {lat(sb)} | {fmt(sa['server_us_per_op'])} "
                f"| {fmt(sb['server_us_per_op'])} | {fmt(s['cpu_ratio'])} "
                f"| {cpu(sa)} | {cpu(sb)} | {hit(sa)} / {hit(sb)} |")
    costs = tls_costs(summaries)
    if costs:
        out.append("")
        out.append("TLS cost per op: a TLS row's server µs/op minus its plaintext row's (medians "
                   "over rounds; both rows in this table's configuration). TLS rows: both servers "
                   "`-Z -o ssl_chain_cert=,ssl_key=` with an EC P-256 server certificate from a "
                   "CA made for the run; the client is corecached-bench --tls (rustls 0.23, ring), "
                   "handshakes before the warm-up.")
        out.append("")
        out.append("| TLS row (plaintext row) | A srv µs/op plain → TLS | A TLS cost µs/op "
                   "| B srv µs/op plain → TLS | B TLS cost µs/op | B/A TLS cost (min–max by round) "
                   "| ops/s TLS/plain A / B | negotiated A / B |")
        out.append("|---|---|---:|---|---:|---:|---|---|")
        for c in costs:
            ca, cb = c["a"], c["b"]
            neg = lambda x: ", ".join(x["negotiated"]) or "–"
            out.append(
                f"| {c['name']} ({c['plain']}) | {fmt(ca['plain_us'])} → {fmt(ca['tls_us'])} "
                f"| {fmt(ca['cost_us'])} | {fmt(cb['plain_us'])} → {fmt(cb['tls_us'])} "
                f"| {fmt(cb['cost_us'])} | {fmt(c['cost_ratio'])} "
                f"({fmt(c['cost_ratio_min'])}–{fmt(c['cost_ratio_max'])}) "
                f"| {fmt(ca['ops_ratio'])} / {fmt(cb['ops_ratio'])} | {neg(ca)} / {neg(cb)} |")
    fills = [s for s in summaries if s["kind"] == "fill"]
    if fills:
        out.append("")
        out.append("| memory run | A items held | B items held | B/A (min–max) | A RSS MiB "
                   "| B RSS MiB | A RSS B/item | B RSS B/item | key+value B/item |")
        out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        for s in fills:
            sa, sb = s["a"], s["b"]
            out.append(
                f"| {s['name']} | {fmt_int(sa['items'])} | {fmt_int(sb['items'])} "
                f"| {fmt(s['ratio'])} ({fmt(s['ratio_min'])}–{fmt(s['ratio_max'])}) "
                f"| {fmt(sa['rss_mib'], 1)} | {fmt(sb['rss_mib'], 1)} "
                f"| {fmt(sa['rss_per_item'], 1)} | {fmt(sb['rss_per_item'], 1)} "
                f"| {fmt(sa['payload'], 0)} |")
    out.append("")
    out.append("Workloads: " + "; ".join(f"`{s['name']}` = {s['desc']}" for s in summaries) + ".")
    if failures:
        out.append("")
        out.append("**FAILED runs:** " + "; ".join(failures))
    return "\n".join(out) + "\n"


def mib(b):
    return "–" if b is None else f"{b / 1048576:.1f}"


def replication_markdown(by_mode, meta):
    """One table over the replication modes: each mode's ops/s against A (no replication),
    latencies, server CPU, the partner's CPU, and the backlog a 5 s outage needs."""
    modes = list(by_mode)
    names = [s["name"] for s in by_mode[modes[0]]
             if s["kind"] != "fill" and all(
                 x["name"] != s["name"] or "replication" in x["b"] for x in
                 sum(by_mode.values(), []))]
    row = {m: {s["name"]: s for s in by_mode[m]} for m in modes}
    out = [f"#### Replication, {meta['config']}: corecached without replication (A) vs "
           + ", ".join(f"with {m} replication" for m in modes) + "\n"]
    out.append(f"- partners on CPU {meta.get('partner_cpu')}; servers on CPU {meta['server_cpu']}, "
               f"client on CPU {meta['client_cpu']}; load average {meta['load_start'][0]:.2f} "
               f"at start, {meta['load_end'][0]:.2f} at end; medians over {meta['rounds']} rounds")
    out.append("- partner CPU: the partner process's CPU time over the generator's whole run "
               "(populate, warm-up, measured), as a share of one core; backlog for a 5 s outage "
               "= the row's set rate with replication x 5 s x bytes per record in the sender's "
               "backlog ring (`stats replication`: backlog_bytes / (next_seq - "
               "backlog_first_seq), after the run)")
    out.append("")
    hdr = "| workload | A ops/s |"
    sep = "|---|---:|"
    for m in modes:
        hdr += f" {m} ops/s | {m}/A (min–max) |"
        sep += "---:|---|"
    hdr += " p50 / p99 ms A | " + " | ".join(f"p50 / p99 ms {m}" for m in modes) + " |"
    sep += "---|" + "---|" * len(modes)
    hdr += " srv µs/op A / " + " / ".join(modes) + " | partner CPU " + " / ".join(modes) + " |"
    sep += "---|---|"
    hdr += (f" sets/s ({modes[0]}) | B/record | backlog for 5 s MiB (of "
            f"{mib(row[modes[0]][names[0]]['b']['replication']['backlog_capacity'] if names else None)}) "
            "| sync waits / timeouts |")
    sep += "---:|---:|---:|---|"
    out += [hdr, sep]
    for n in names:
        a = row[modes[0]][n]["a"]
        line = f"| {n} | {fmt_int(a['ops_per_sec'])} |"
        for m in modes:
            s = row[m].get(n)
            if s is None:
                line += " – | – |"
                continue
            line += (f" {fmt_int(s['b']['ops_per_sec'])} | {fmt(s['ratio'])} "
                     f"({fmt(s['ratio_min'])}–{fmt(s['ratio_max'])}) |")
        lat = lambda x: f"{fmt(x['p50_ms'])} / {fmt(x['p99_ms'])}"
        line += f" {lat(a)} |" + "".join(
            f" {lat(row[m][n]['b']) if n in row[m] else '–'} |" for m in modes)
        line += (f" {fmt(a['server_us_per_op'])} / "
                 + " / ".join(fmt(row[m][n]["b"]["server_us_per_op"]) if n in row[m] else "–"
                              for m in modes) + " |")
        pc = lambda x: "–" if x is None else f"{x * 100:.0f}%"
        line += " " + " / ".join(pc(row[m][n]["b"]["replication"]["partner_cpu_util"])
                                 if n in row[m] else "–" for m in modes) + " |"
        r0 = row[modes[0]][n]["b"]["replication"]
        line += (f" {fmt_int(r0['sets_per_sec'])} | {fmt(r0['bytes_per_record'], 1)} "
                 f"| {mib(r0['outage_5s_bytes'])} |")
        sy = [row[m][n]["b"]["replication"] for m in modes if m == "sync" and n in row[m]]
        line += (f" {fmt_int(sy[0]['sync_waits'])} / {sy[0]['sync_timeouts']} |" if sy else " – |")
        out.append(line)
    return "\n".join(out) + "\n"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Workloads: " + ", ".join(ALL) + " (default: all but "
        + ", ".join(w["name"] for w in EXTRA_WORKLOADS) + ")",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default=None,
                    help="server A: memcached | corecached | PATH | KIND=PATH (default memcached; "
                    "corecached with --replication)")
    ap.add_argument("--b", default="corecached",
                    help="server B (default corecached = ${CORECACHED_BIN:-target/release/corecached})")
    ap.add_argument("--workloads", default=",".join(w["name"] for w in WORKLOADS),
                    help="comma-separated workload names (see --list)")
    ap.add_argument("--list", action="store_true", help="list workloads and exit")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of A B per workload (default 3)")
    ap.add_argument("--duration", type=float, default=6.0,
                    help="measured seconds per run (default 6)")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="warm-up seconds per run, excluded (default 1; zipf-hit uses 3)")
    ap.add_argument("--fill-limit", type=float, default=60.0,
                    help="time limit in s for the memory fill runs (default 60)")
    ap.add_argument("--config", choices=["pinned", "shared", "both"], default="both",
                    help="pinned: -t 1 both, servers on CPU 0, client on CPU 1; shared: -t 2 "
                    "both, nothing pinned; both (default): pinned then shared")
    ap.add_argument("--server-cpu", help="taskset CPU list for servers (overrides the config; '' = no pinning)")
    ap.add_argument("--client-cpu", help="taskset CPU list for the client (overrides the config; '' = no pinning)")
    ap.add_argument("--server-threads", type=int, help="-t for both servers (overrides the config)")
    ap.add_argument("--a-threads", type=int, help="override -t for A")
    ap.add_argument("--b-threads", type=int, help="override -t for B")
    ap.add_argument("--client-threads", type=int,
                    help="generator threads (default: number of CPUs in --client-cpu, 1 if unpinned)")
    ap.add_argument("--memory", type=int, default=1024, help="-m MiB for both servers (default 1024)")
    ap.add_argument("--a-args", default="", help="extra server args for A (space-separated)")
    ap.add_argument("--b-args", default="", help="extra server args for B (space-separated)")
    ap.add_argument("--bench-bin", default=os.path.join(REPO, "target/release/corecached-bench"),
                    help="load generator binary (built with cargo if missing)")
    ap.add_argument("--bench-args", default="", help="extra args for every generator run")
    ap.add_argument("--out-dir", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    ap.add_argument("--interleave", action="store_true",
                    help="run round 1 of every workload, then round 2, ... (instead of all rounds "
                    "of one workload, then the next): rows compared with each other, like a TLS "
                    "row and its plaintext row, then see the same drift")
    ap.add_argument("--replication", default="",
                    help="MODES: async, sync or async,sync. A = corecached without replication "
                    "(with an idle partner process); each mode one more side (B, C) with "
                    "--partner to a partner corecached started for its run")
    ap.add_argument("--partner-cpu", help="taskset CPU list for the partner processes "
                    "(default: the client's, see docs/BENCHMARKS.md 'Replication'; '' = none)")
    ap.add_argument("--partner-args", default="", help="extra args for the partner processes")
    ap.add_argument("--no-idle-partner", action="store_true",
                    help="with --replication: no idle partner process beside A")
    args = ap.parse_args()

    if args.list:
        for w in WORKLOADS + EXTRA_WORKLOADS:
            extra = "" if w in WORKLOADS else "  (not in the default set)"
            print(f"{w['name']:14} {w['desc']}{extra}\n{'':14} corecached-bench {' '.join(w['args'])}")
        return 0

    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    bad = [n for n in names if n not in ALL]
    if bad or not names or args.rounds < 1:
        log(f"bench_compare: unknown workload(s) {bad}; known: {', '.join(ALL)}" if bad
            else "bench_compare: need at least one workload and one round")
        return 2
    if shutil.which("taskset") is None:
        log("bench_compare: taskset not found (apt-get install util-linux)")
        return 2

    modes = [m.strip() for m in args.replication.split(",") if m.strip()]
    if any(m not in REPL_MODES for m in modes) or len(set(modes)) != len(modes):
        log(f"bench_compare: --replication takes async, sync or async,sync (got {args.replication!r})")
        return 2
    args.replication = modes
    a_kind, a_bin = parse_server(args.a or ("corecached" if modes else "memcached"))
    b_kind, b_bin = parse_server(args.b)
    if modes and b_kind != "corecached":
        log("bench_compare: --replication needs B = corecached")
        return 2
    args.partner_bin = b_bin
    args.partner_args = args.partner_args.split()
    if not os.path.exists(args.bench_bin):
        log("bench_compare: building corecached-bench (cargo build --release -p corecached-bench)")
        r = subprocess.run(["cargo", "build", "--release", "-p", "corecached-bench"], cwd=REPO)
        if r.returncode != 0 or not os.path.exists(args.bench_bin):
            log("bench_compare: could not build corecached-bench")
            return 2
    args.bench_args = args.bench_args.split()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out_dir, exist_ok=True)
    selected = [ALL[n] for n in names]
    configs = ["pinned", "shared"] if args.config == "both" else [args.config]
    est = 0.0
    for w in selected:
        per = 12.0 if w.get("kind") == "fill" else w.get("warmup", args.warmup) + args.duration + 2.0
        est += per * (1 + max(1, len(modes))) * args.rounds * len(configs)
    log(f"bench_compare: {len(selected)} workload(s) x {args.rounds} rounds x "
        f"{'A/' + '/'.join(modes) if modes else 'A/B'} x "
        f"{len(configs)} config(s); estimated {est / 60:.1f} min")
    mds, dumps, failed = [], {}, False
    for c in configs:
        md, dump = run_config(c, args, (a_kind, a_bin), (b_kind, b_bin), selected, stamp)
        mds.append(md)
        dumps[c] = dump
        failed = failed or bool(dump["failures"])
    md = "\n".join(mds)
    with open(os.path.join(args.out_dir, f"compare-{stamp}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out_dir, f"compare-{stamp}.json"), "w") as f:
        json.dump(dumps, f, indent=1)
    print(md)
    log(f"bench_compare: wrote {os.path.join(args.out_dir, f'compare-{stamp}.md')} and .json")
    return 1 if failed else 0


def cpu_count(cpus):
    n = 0
    for part in (cpus or "").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            n += int(hi) - int(lo) + 1
        elif part.strip():
            n += 1
    return n


def run_config(config, base_args, a, b, selected, stamp):
    """Runs every selected workload in one machine configuration; returns (markdown, dump)."""
    args = argparse.Namespace(**vars(base_args))
    preset = CONFIGS[config]
    if args.server_cpu is None:
        args.server_cpu = preset["server_cpu"]
    if args.client_cpu is None:
        args.client_cpu = preset["client_cpu"]
    if args.server_threads is None:
        args.server_threads = preset["threads"]
    if args.client_threads is None:
        args.client_threads = max(1, cpu_count(args.client_cpu))
    if args.partner_cpu is None:
        args.partner_cpu = args.client_cpu
    modes = args.replication
    sides = {
        "A": dict(kind=a[0], bin=a[1], threads=args.a_threads or args.server_threads,
                  extra=args.a_args.split(), idle_partner=bool(modes) and not args.no_idle_partner),
    }
    for label, mode in zip("BC", modes or [None]):
        sides[label] = dict(kind=b[0], bin=b[1], threads=args.b_threads or args.server_threads,
                            extra=args.b_args.split(), replication=mode)
    logdir = os.path.join(args.out_dir, f"compare-{stamp}-{config}")
    os.makedirs(logdir, exist_ok=True)
    log(f"bench_compare: config {config} ({preset['desc']}); logs in {logdir}")

    t_start = time.time()
    load_start = os.getloadavg()
    results = {w["name"]: {label: [] for label in sides} for w in selected}
    failures = []
    versions = {}
    if args.interleave:  # round 1 of every workload, then round 2, ...
        order = [(w, r) for r in range(args.rounds) for w in selected]
    else:  # every round of a workload, then the next workload
        order = [(w, r) for w in selected for r in range(args.rounds)]
    for w, r in order:
        for label in sides:
            tag = f"{w['name']}-r{r + 1}-{label}"
            try:
                res = run_one(w, sides[label], args, logdir, tag)
            except RuntimeError as e:
                failures.append(f"{tag}: {str(e).splitlines()[0]}")
                log(f"  {tag}: FAILED: {e}")
                if args.fail_fast:
                    raise SystemExit(1)
                continue
            versions[label] = res["server_version"]
            results[w["name"]][label].append(res)
            if w.get("kind") == "fill":
                f = res["fill"]
                log(f"  {tag}: {f['items']} items, "
                    f"{(f.get('rss_bytes_per_item') or 0):.1f} B RSS/item")
            else:
                rp = res.get("replication")
                log(f"  {tag}: {res['ops_per_sec']:,.0f} ops/s, p99 "
                    f"{res['latency_us']['p99'] / 1000:.2f} ms, server "
                    f"{res['server']['cpu_us_per_op'] or 0:.2f} us/op"
                    + (f"; {rp['mode']}: partner holds {rp['partner_items']}/{rp['items']} "
                       f"items, {rp['records_sent']} records, "
                       f"{rp['bytes_per_record'] or 0:.1f} B/record, "
                       f"{rp['sync_timeouts']} sync timeouts" if rp else ""))

    by_side = {}  # side label (B, C) -> summaries of A vs it
    for x in list(sides)[1:]:
        by_side[x] = []
        for w in selected:
            a_runs, x_runs = results[w["name"]]["A"], results[w["name"]][x]
            if a_runs and x_runs:
                by_side[x].append(summarize(w, a_runs, x_runs))

    elapsed = time.time() - t_start

    def label(s):
        d = sides[s]
        extra = d["extra"] + (["--partner", "P", "--replication-mode", d["replication"],
                               "--replication-secret", "F"] if d.get("replication") else [])
        note = ("; an idle partner corecached beside it" if d.get("idle_partner") else
                "; partner P: a corecached -t {t} -m M --replication-listen P "
                "--replication-secret F on CPU {c}".format(t=d["threads"], c=args.partner_cpu or "any")
                if d.get("replication") else "")
        return (f"{d['kind']} {versions.get(s, '?')} (`{d['bin']}`, -t {d['threads']}"
                f"{' ' + ' '.join(extra) if extra else ''}){note}")

    def side_name(s):
        d = sides[s]
        r = f" replication {d['replication']}" if d.get("replication") else ""
        return f"{d['kind']} -t {d['threads']}{r} ({s})"

    meta = dict(
        config=config, date=stamp, host=platform.node(),
        cpu=cpu_model(), ncpu=os.cpu_count(), kernel=platform.release(),
        server_cpu=args.server_cpu or "any", client_cpu=args.client_cpu or "any",
        server_threads=args.server_threads, client_threads=args.client_threads,
        memory=args.memory, rounds=args.rounds, duration=args.duration, warmup=args.warmup,
        interleave=args.interleave,
        command="scripts/bench_compare.py " + " ".join(sys.argv[1:]),
        elapsed_min=elapsed / 60.0, load_start=load_start, load_end=os.getloadavg(),
        partner_cpu=(args.partner_cpu or "any") if modes else None,
    )
    mds, metas = [], {}
    for x, summaries in by_side.items():
        m = dict(meta, title=(f"bench_compare {stamp}, {config}: {side_name('A')} vs "
                              f"{side_name(x)}"),
                 a_label=label("A"), b_label=label(x))
        metas[x] = m
        # Only the last table lists the failures (they are the whole run's).
        mds.append(markdown(summaries, m, failures if x == list(by_side)[-1] else []))
    if modes:
        mds.append(replication_markdown({sides[x]["replication"]: by_side[x] for x in by_side},
                                        meta))
    md = "\n".join(mds)
    log(f"bench_compare: config {config} done in {elapsed / 60:.1f} min")
    summaries = by_side[list(by_side)[0]]
    return md, dict(meta=metas[list(by_side)[0]], summaries=summaries, failures=failures,
                    by_side={x: dict(meta=metas[x], summaries=by_side[x]) for x in by_side},
                    runs={k: v for k, v in results.items()})

if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        code = main()
    finally:
        servers.stop_all()
    sys.exit(code)
