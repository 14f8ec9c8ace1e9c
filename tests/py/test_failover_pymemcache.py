"""A real client failing over between two replicated corecached hosts.

Two hosts paired on 127.0.0.1 in sync mode (docs/REPLICATION.md). Several
pymemcache clients write to host A (replies awaited: pymemcache's default
`noreply` would make nothing "acknowledged"); A is killed with SIGKILL (by
PID) under that load; every write a client saw acknowledged is on B, value
and CAS, and a `cas` with a token from `gets` on A succeeds on B. Then A is
restarted with the same flags and port: it rejoins warm, i.e. the first
request it answers already sees every key written to B while it was down.
"""
import os
import signal
import threading
import time

import pytest
from pymemcache.client.base import Client

import servers

pytestmark = pytest.mark.skipif(
    servers.server_kind() != "corecached",
    reason="peer replication is corecached's own (memcached has none)",
)


def client(port, timeout=10):
    return Client(("127.0.0.1", port), connect_timeout=5, timeout=timeout,
                  default_noreply=False)


def repl_stats(port):
    c = client(port)
    try:
        return {k.decode(): v for k, v in c.stats("replication").items()}
    finally:
        c.close()


def streaming(port):
    st = repl_stats(port)
    n = int(st["streams"])
    return all(st[f"stream{i}:state"] == b"streaming" for i in range(n))


def wait_until(secs, what, f):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if f():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {secs}s waiting for {what}")


@pytest.fixture
def pair(tmp_path):
    """Start hosts A and B; yields (start_a, a, b); stops what is left."""
    secret = tmp_path / "repl.secret"
    secret.write_text("failover test secret\n")
    ra, rb = servers.free_port(), servers.free_port()

    def args(listen, partner):
        return ["-t", "2",
                "--replication-listen", f"127.0.0.1:{listen}",
                "--partner", f"127.0.0.1:{partner}",
                "--replication-mode", "sync",
                "--replication-timeout", "5000",
                "--replication-secret", str(secret),
                "--replication-rejoin-wait", "5"]

    started = []

    def start(listen, partner, port=None):
        s = servers.Server("corecached", args(listen, partner), port=port)
        started.append(s)
        return s.start()

    a = start(ra, rb)
    b = start(rb, ra)
    try:
        wait_until(15, "both links streaming", lambda: streaming(a.port) and streaming(b.port))
        yield (lambda: start(ra, rb, port=a.port)), a, b
    finally:
        for s in started:
            s.stop(grace=0)


def test_a_client_fails_over_to_the_partner_and_the_host_rejoins_warm(pair):
    start_a, a, b = pair
    # --- write load on A from several clients; kill -9 A under it
    acked = {}  # key -> value, once the client saw STORED
    tokens = {}  # key -> CAS from gets on A
    lock = threading.Lock()
    stop = threading.Event()
    killed = threading.Event()
    errors = []

    def writer(w):
        c = client(a.port)
        i = 0
        try:
            while not stop.is_set():
                k, v = f"w{w}:{i}", f"value-{w}-{i}".encode()
                assert c.set(k, v) is True
                with lock:
                    acked[k] = v
                if i % 5 == 0:
                    got = c.gets(k)
                    with lock:
                        tokens[k] = got
                i += 1
        except Exception as e:  # noqa: BLE001 - A died (expected), or a real failure
            if not killed.is_set():
                errors.append(f"writer {w} failed while A was up: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    st = repl_stats(a.port)
    assert st["sync_timeouts"] == 0 and st["sync_async_now"] == 0, st
    killed.set()
    os.kill(a.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert not errors, errors
    assert len(acked) > 100, f"only {len(acked)} writes before the kill"
    print(f"{len(acked)} acknowledged writes, {len(tokens)} CAS tokens")

    # --- the same data on B: every acknowledged write, value and CAS
    cb = client(b.port)
    keys = sorted(acked)
    got = {}
    for i in range(0, len(keys), 200):
        got.update(cb.get_many(keys[i:i + 200]))
    missing = [k for k in keys if got.get(k) != acked[k]]
    assert not missing, f"{len(missing)} acknowledged writes not on B, e.g. {missing[:5]}"
    for k, (v, cas) in tokens.items():
        assert cb.gets(k) == (v, cas), k
    # a client that read a CAS token on A uses it on B
    k, (v, cas) = sorted(tokens.items())[0]
    assert cb.cas(k, b"updated on B", cas) is True
    assert cb.get(k) == b"updated on B"
    acked[k] = b"updated on B"
    assert cb.cas(keys[1], b"x", b"1") is False  # a wrong token still fails

    # --- writes to B while A is down
    down = {f"down:{i}": f"while-A-was-down-{i}".encode() for i in range(2000)}
    for kk, vv in down.items():
        assert cb.set(kk, vv) is True
    full_before = int(repl_stats(b.port)["full_syncs"])

    # --- A comes back with the same flags and port: warm before it serves
    a2 = start_a()
    assert a2.port == a.port
    ca = client(a2.port, timeout=30)
    last = f"down:{len(down) - 1}"
    assert ca.get(last) == down[last], "the first reply of the rejoined A must be warm"
    st = repl_stats(a2.port)
    assert st["warm"] == 1, st
    every = {**acked, **down}
    names = sorted(every)
    on_a = {}
    for i in range(0, len(names), 200):
        on_a.update(ca.get_many(names[i:i + 200]))
    missing = [kk for kk in names if on_a.get(kk) != every[kk]]
    assert not missing, f"{len(missing)} keys not on the rejoined A, e.g. {missing[:5]}"
    # B filled A (a new run of A: full sync of every stream) and lost nothing
    assert int(repl_stats(b.port)["full_syncs"]) > full_before
    on_b = {}
    for i in range(0, len(names), 200):
        on_b.update(cb.get_many(names[i:i + 200]))
    assert on_b == on_a
    ca.close()
    cb.close()
