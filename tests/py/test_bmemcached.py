"""python-binary-memcached (PyPI: python-binary-memcached) against corecached.

A realistic client session over the binary protocol, with and without SASL.
The fixtures start target/release/corecached (build it first: `cargo build
--release`; or $CORECACHED_BIN) through conftest.py / scripts/servers.py.

Run: python -m pytest tests/py/test_bmemcached.py
(needs `pip install python-binary-memcached pytest`, e.g. in a venv).
The same session() passes against memcached 1.6.18.
"""

import socket
import time
import uuid

import pytest

import bmemcached  # fails loudly when missing: pip install python-binary-memcached
from bmemcached.exceptions import MemcachedException

USER, PASSWORD = "app", "s3cret-pw"


# These sessions pin corecached's behaviour (SASL flags are corecached's), so
# they start corecached whatever CORECACHED_TEST_SERVER says.
@pytest.fixture
def server(start_server):
    return start_server(kind="corecached")


@pytest.fixture
def pwdb(tmp_path):
    p = tmp_path / "pwdb"
    p.write_text(f"{USER}:{PASSWORD}\nother:pw:comment\n")
    return str(p)


@pytest.fixture
def sasl_server(pwdb, start_server):
    return start_server(["-t", "2", "-S", "--sasl-pwdb", pwdb], kind="corecached")


def session(client):
    """What an application does with a cache: the same checks for every server."""
    k = lambda name: f"{name}-{uuid.uuid4().hex[:8]}"  # noqa: E731

    # strings, bytes, ints, pickled objects
    key = k("user")
    assert client.set(key, "alice", 60)
    assert client.get(key) == "alice"
    assert client.set(k("b"), b"\x00\xffbytes")
    assert client.set(k("n"), 42)
    obj = {"id": 7, "tags": ["a", "b"], "nested": {"x": 1.5}}
    okey = k("obj")
    assert client.set(okey, obj)
    assert client.get(okey) == obj
    assert client.get(k("missing")) is None
    assert client.get(k("missing"), default="dflt") == "dflt"

    # large value (compressed by the client above its threshold, or not)
    big = "x" * 500_000
    bkey = k("big")
    assert client.set(bkey, big)
    assert client.get(bkey) == big

    # add / replace
    assert client.add(key, "bob") is False
    nkey = k("new")
    assert client.add(nkey, "first")
    assert client.replace(nkey, "second")
    assert client.replace(k("nope"), "x") is False
    assert client.get(nkey) == "second"

    # multi
    many = {k(f"m{i}"): f"v{i}" for i in range(50)}
    assert client.set_multi(many, 60) == []  # the keys that failed
    got = client.get_multi(list(many) + [k("absent")])
    assert got == many

    # cas
    value, cas = client.gets(nkey)
    assert value == "second" and cas
    assert client.cas(nkey, "third", cas)
    assert client.cas(nkey, "fourth", cas) is False  # stale CAS
    assert client.get(nkey) == "third"

    # counters: default value when missing, then increments
    ckey = k("counter")
    assert client.incr(ckey, 1, default=10) == 10
    assert client.incr(ckey, 5) == 15
    assert client.decr(ckey, 20) == 0
    assert client.decr(k("dc"), 1, default=3) == 3

    # delete
    assert client.delete(nkey)
    assert client.delete(nkey)  # this client reports a missing key as deleted too
    assert client.get(nkey) is None
    assert client.delete_multi(list(many)[:10])
    assert client.get(list(many)[0]) is None

    # expiry
    ekey = k("exp")
    assert client.set(ekey, "soon", 1)
    time.sleep(2.1)
    assert client.get(ekey) is None

    # stats: one dict per server, memcached's names
    stats = client.stats()
    (srv_stats,) = stats.values()
    for name in (b"pid", b"cmd_get", b"get_hits", b"curr_items", b"auth_cmds", b"auth_errors"):
        assert name.decode() in srv_stats or name in srv_stats, name
    settings = list(client.stats("settings").values())[0]
    assert settings["item_size_max"] == b"1048576"

    # flush
    assert client.flush_all(0)
    assert client.get(key) is None
    return srv_stats, settings


def test_session_without_sasl(server):
    client = bmemcached.Client([server.addr])
    try:
        srv_stats, settings = session(client)
        assert settings["auth_enabled_sasl"] == b"no"
        assert srv_stats["auth_cmds"] == b"0"
    finally:
        client.disconnect_all()


def test_credentials_ignored_without_sasl(server):
    # The client probes with List Mechs; 0x81 means "no auth needed".
    client = bmemcached.Client([server.addr], USER, PASSWORD)
    try:
        assert client.set("k", "v")
        assert client.get("k") == "v"
    finally:
        client.disconnect_all()


def test_session_with_sasl(sasl_server):
    client = bmemcached.Client([sasl_server.addr], USER, PASSWORD)
    try:
        srv_stats, settings = session(client)
        assert settings["auth_enabled_sasl"] == b"yes"
        assert int(srv_stats["auth_cmds"]) >= 1
        assert srv_stats["auth_errors"] == b"0"
    finally:
        client.disconnect_all()


def test_sasl_bad_password(sasl_server):
    client = bmemcached.Client([sasl_server.addr], USER, "wrong")
    with pytest.raises(MemcachedException):
        client.set("k", "v")
    client.disconnect_all()
    good = bmemcached.Client([sasl_server.addr], USER, PASSWORD)
    try:
        stats = list(good.stats().values())[0]
        assert int(stats["auth_errors"]) >= 1
    finally:
        good.disconnect_all()


def test_sasl_unauthenticated_refused(sasl_server):
    # No credentials: the server answers Auth failure and drops the
    # connection; the client sees no value and no success.
    client = bmemcached.Client([sasl_server.addr])
    try:
        try:
            ok = client.set("k", "v")
        except MemcachedException:
            ok = False
        assert not ok
        try:
            got = client.get("k")
        except MemcachedException:
            got = None
        assert got is None
    finally:
        client.disconnect_all()


def test_sasl_ascii_refused(sasl_server):
    with socket.create_connection(("127.0.0.1", sasl_server.port), timeout=5) as s:
        s.sendall(b"version\r\n")
        assert s.recv(100) == b""  # closed, no reply


def test_sasl_pwdb_from_environment(pwdb, start_server):
    s = start_server(["-t", "2", "-S"], kind="corecached", env={"MEMCACHED_SASL_PWDB": pwdb})
    client = bmemcached.Client([s.addr], "other", "pw")
    assert client.set("k", "v")
    assert client.get("k") == "v"
    client.disconnect_all()
