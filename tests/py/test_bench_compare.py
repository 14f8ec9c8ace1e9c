"""The table maths of scripts/bench_compare.py, on inputs checkable by hand.

Three rounds per side; A's ops/s 100, 400, 200 and B's 150, 240, 600 give
medians 200 and 240 (B/A 1.20; the means would differ), and per-round B/A
ratios 1.5, 0.6, 3.0 (min-max 0.60-3.00). Latencies come in µs and are shown in ms; server µs/op
(the load generator's CPU ticks of the server over the ops it completed) is a
median per side and B/A of those medians.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import bench_compare as bc  # noqa: E402  (scripts/bench_compare.py)


def run(ops, p50_us, srv_us_per_op, hit=None, srv_util=0.5, cli_util=0.25):
    return {
        "ops_per_sec": ops,
        "latency_us": {"p50": p50_us, "p99": 2 * p50_us, "p999": 4 * p50_us},
        "server": {"cpu_us_per_op": srv_us_per_op, "cpu_util": srv_util},
        "client": {"cpu_us_per_op": 1.0, "cpu_util": cli_util},
        "hit_ratio": hit,
    }


W = dict(name="w", desc="a workload")
A = [run(100, 1000, 10.0), run(400, 5000, 50.0), run(200, 2000, 20.0)]
B = [run(150, 500, 5.0, hit=0.5), run(240, 900, 40.0, hit=0.75), run(600, 600, 10.0, hit=0.8)]


def test_median_skips_missing_values():
    assert bc.med([3, 1, 2]) == 2
    assert bc.med([4, 1, 3, 2]) == 2.5  # even count: mean of the middle two
    assert bc.med([None, 4, 2]) == 3
    assert bc.med([None, None]) is None
    assert bc.med([]) is None


def test_summary_medians_ratio_and_min_max_over_rounds():
    s = bc.summarize(W, A, B)
    assert s["a"]["ops_per_sec"] == 200
    assert s["b"]["ops_per_sec"] == 240
    assert s["ratio"] == pytest.approx(1.2)  # ratio of the medians
    assert s["ratio_min"] == pytest.approx(0.6)  # round 2: 240 / 400
    assert s["ratio_max"] == pytest.approx(3.0)  # round 3: 600 / 200
    assert s["a"]["ops_per_sec_all"] == [100, 400, 200]
    assert (s["a_rounds"], s["b_rounds"]) == (3, 3)


def test_latency_in_ms_and_server_us_per_op():
    s = bc.summarize(W, A, B)
    assert s["a"]["p50_ms"] == pytest.approx(2.0)  # median of 1000, 5000, 2000 µs
    assert s["a"]["p99_ms"] == pytest.approx(4.0)
    assert s["b"]["p999_ms"] == pytest.approx(2.4)  # 4 x median(500, 900, 600) µs
    assert s["a"]["server_us_per_op"] == 20.0
    assert s["b"]["server_us_per_op"] == 10.0
    assert s["cpu_ratio"] == pytest.approx(0.5)
    assert s["b"]["hit_ratio"] == 0.75
    assert s["a"]["hit_ratio"] is None


def test_missing_server_cpu_gives_no_cpu_ratio():
    a = [run(100, 1000, None), run(100, 1000, None)]
    s = bc.summarize(W, a, B[:2])
    assert s["a"]["server_us_per_op"] is None
    assert s["cpu_ratio"] is None
    assert s["ratio_min"] == pytest.approx(1.5) and s["ratio_max"] == pytest.approx(2.4)


def test_rounds_pair_up_to_the_shorter_side():
    # a failed B run leaves 2 B rounds: only rounds 1 and 2 make ratios
    s = bc.summarize(W, A, B[:2])
    assert s["b"]["ops_per_sec"] == 195  # median of 150, 240
    assert s["ratio_min"] == pytest.approx(0.6) and s["ratio_max"] == pytest.approx(1.5)


def test_fill_rows_compare_items_held():
    def fill(items, rss):
        return {"ops_per_sec": 1.0, "fill": {"items": items, "rss_bytes": rss,
                                             "rss_bytes_per_item": rss / items,
                                             "limit_bytes_per_item": 1.0,
                                             "payload_bytes_per_item": 130}}
    mib = 1048576
    s = bc.summarize(dict(W, kind="fill"), [fill(1000, 64 * mib), fill(2000, 66 * mib)],
                     [fill(3000, 60 * mib), fill(1000, 62 * mib)])
    assert s["a"]["items"] == 1500 and s["b"]["items"] == 2000
    assert s["ratio"] == pytest.approx(2000 / 1500)
    assert s["ratio_min"] == pytest.approx(0.5) and s["ratio_max"] == pytest.approx(3.0)
    assert s["a"]["rss_mib"] == pytest.approx(65.0)
    assert "cpu_ratio" not in s


def test_markdown_row():
    s = bc.summarize(W, A, B)
    meta = dict(title="t", a_label="A", b_label="B", date="d", host="h", cpu="c", ncpu=2,
                kernel="k", config="pinned", server_cpu="0", client_cpu="1", memory=64,
                client_threads=1, rounds=3, duration=1.0, warmup=0.0, command="x",
                elapsed_min=1.0, load_start=(0.5, 0, 0), load_end=(1.0, 0, 0))
    md = bc.markdown([s], meta, [])
    row = next(line for line in md.splitlines() if line.startswith("| w |"))
    assert row == ("| w | 200 | 240 | 1.20 (0.60–3.00) | 2.00 / 4.00 / 8.00 | 0.60 / 1.20 / 2.40 "
                   "| 20.00 | 10.00 | 0.50 | 50% / 25% | 50% / 25% | – / 75.0 |")


def test_formatting_and_cpu_lists():
    assert bc.fmt_int(1234567.4) == "1,234,567"
    assert bc.fmt_int(None) == "–"
    assert bc.fmt(1.005, 1) == "1.0"
    assert bc.fmt(None) == "–"
    assert bc.cpu_count("0") == 1
    assert bc.cpu_count("0-3,6") == 5
    assert bc.cpu_count("") == 0
    assert bc.cpu_count(None) == 0


def tls_run(ops, srv_us_per_op, suite="TLS13_AES_256_GCM_SHA384"):
    r = run(ops, 1000, srv_us_per_op)
    r["config"] = {"tls": {"version": "TLSv1_3", "cipher_suite": suite}}
    return r


# TLS row of W (whose plaintext medians are A 200 ops/s 20 µs/op, B 240 ops/s 10 µs/op):
# A 100 ops/s at 30 µs/op (median of 25, 30, 35), B 120 ops/s at 13 µs/op.
TW = dict(name="tw", desc="w over TLS", tls="w")
TA = [tls_run(100, 35.0), tls_run(100, 25.0), tls_run(100, 30.0)]
TB = [tls_run(120, 12.0), tls_run(120, 14.0), tls_run(120, 13.0, suite="TLS13_AES_128_GCM_SHA256")]


def test_tls_cost_is_the_difference_of_the_medians_and_b_over_a():
    plain, tls = bc.summarize(W, A, B), bc.summarize(TW, TA, TB)
    assert tls["plain"] == "w"
    (c,) = bc.tls_costs([plain, tls])
    assert (c["name"], c["plain"]) == ("tw", "w")
    assert c["a"]["plain_us"] == 20.0 and c["a"]["tls_us"] == 30.0
    assert c["a"]["cost_us"] == pytest.approx(10.0)
    assert c["b"]["cost_us"] == pytest.approx(3.0)  # 13 - 10
    assert c["cost_ratio"] == pytest.approx(0.3)
    # by round: A 35-10, 25-50, 30-20 = 25, -25, 10; B 12-5, 14-40, 13-10 = 7, -26, 3;
    # round 2's A cost is negative (no ratio): B/A 7/25 and 3/10
    assert c["cost_ratio_min"] == pytest.approx(0.28)
    assert c["cost_ratio_max"] == pytest.approx(0.3)
    assert c["a"]["ops_ratio"] == pytest.approx(0.5)  # 100 / 200
    assert c["b"]["ops_ratio"] == pytest.approx(0.5)  # 120 / 240
    assert c["a"]["negotiated"] == ["TLSv1_3 TLS13_AES_256_GCM_SHA384"]
    assert c["b"]["negotiated"] == ["TLSv1_3 TLS13_AES_128_GCM_SHA256",
                                    "TLSv1_3 TLS13_AES_256_GCM_SHA384"]


def test_tls_cost_needs_the_plaintext_row_and_a_positive_a_cost():
    tls = bc.summarize(TW, TA, TB)
    assert bc.tls_costs([tls]) == []  # plaintext row not run
    assert bc.tls_costs([bc.summarize(W, A, B)]) == []  # no TLS row
    cheap = [tls_run(100, 20.0)] * 3  # A's TLS row costs nothing more: no ratio
    (c,) = bc.tls_costs([bc.summarize(W, A, B), bc.summarize(TW, cheap, TB)])
    assert c["a"]["cost_us"] == 0.0 and c["cost_ratio"] is None


def test_tls_markdown_row():
    meta = dict(title="t", a_label="A", b_label="B", date="d", host="h", cpu="c", ncpu=2,
                kernel="k", config="pinned", server_cpu="0", client_cpu="1", memory=64,
                client_threads=1, rounds=3, duration=1.0, warmup=0.0, command="x",
                elapsed_min=1.0, load_start=(0.5, 0, 0), load_end=(1.0, 0, 0))
    md = bc.markdown([bc.summarize(W, A, B), bc.summarize(TW, TA, TB)], meta, [])
    row = next(line for line in md.splitlines() if line.startswith("| tw (w) |"))
    assert row == ("| tw (w) | 20.00 → 30.00 | 10.00 | 10.00 → 13.00 | 3.00 | 0.30 (0.28–0.30) "
                   "| 0.50 / 0.50 | TLSv1_3 TLS13_AES_256_GCM_SHA384 / "
                   "TLSv1_3 TLS13_AES_128_GCM_SHA256, TLSv1_3 TLS13_AES_256_GCM_SHA384 |")


def test_tls_workloads_are_their_plaintext_rows_over_tls():
    for w in bc.TLS_WORKLOADS:
        assert bc.ALL[w["tls"]]["args"] == w["args"], w["name"]


# --replication: a real run (corecached built; about 10 s).

def test_backlog_bytes_per_record_is_bytes_held_over_records_held():
    st = {"streams": "2",
          "stream0:next_seq": "101", "stream0:backlog_first_seq": "1",
          "stream0:backlog_bytes": "16000",
          "stream1:next_seq": "501", "stream1:backlog_first_seq": "401",
          "stream1:backlog_bytes": "17000"}
    assert bc.backlog_per_record(st) == pytest.approx(165.0)  # 33000 B / 200 records
    assert bc.backlog_per_record({"streams": "0"}) is None


def test_bad_replication_modes_are_usage_errors():
    import subprocess
    for bad in ("both", "async,async", "sync,x"):
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(bc.__file__),
                                                         "bench_compare.py"),
                            "--replication", bad, "--workloads", "text-50c"],
                           capture_output=True, timeout=60)
        assert r.returncode == 2, (bad, r.stderr)


def test_replication_run_gives_b_a_partner_that_holds_every_item(tmp_path):
    """A (no replication, an idle partner beside it), B async and C sync, each with a
    partner of its own: after the run the partner of B and of C holds the 100,000
    populated items and applied every record the server sent; A's server has no
    --partner, B's names its partner's replication port; sync mode waited."""
    import json
    import subprocess
    script = os.path.join(os.path.dirname(bc.__file__), "bench_compare.py")
    r = subprocess.run([sys.executable, script, "--config", "pinned", "--replication",
                        "async,sync", "--workloads", "text-50c", "--rounds", "1",
                        "--duration", "0.5", "--warmup", "0.2", "--memory", "64",
                        "--out-dir", str(tmp_path)], capture_output=True, timeout=240)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    (js,) = [p for p in tmp_path.iterdir() if p.name.endswith(".json")]
    runs = json.loads(js.read_text())["pinned"]["runs"]["text-50c"]

    def flag(argv, name):
        return argv[argv.index(name) + 1] if name in argv else None

    (a,), (b,), (c,) = runs["A"], runs["B"], runs["C"]
    assert flag(a["server_cmd"], "--partner") is None and "replication" not in a
    assert flag(a["partner_cmd"], "--replication-listen")  # the idle partner ran
    for x, mode in ((b, "async"), (c, "sync")):
        assert flag(x["server_cmd"], "--partner") == flag(x["partner_cmd"],
                                                          "--replication-listen")
        assert flag(x["server_cmd"], "--replication-mode") == mode
        rp = x["replication"]
        assert rp["mode"] == mode
        assert rp["items"] == 100000 and rp["partner_items"] == 100000, rp
        assert rp["records_sent"] >= 100000 + x["sets"], rp  # populate + the run's sets
        assert rp["partner_records_applied"] == rp["records_sent"], rp
        assert 100 + 38 < rp["bytes_per_record"] < 200, rp  # a 100-byte value + framing
    assert c["replication"]["sync_waits"] > 0 and b["replication"]["sync_waits"] == 0
    md = r.stdout.decode()
    assert "#### Replication, pinned" in md
    assert "| text-50c |" in md.split("#### Replication, pinned")[1]
