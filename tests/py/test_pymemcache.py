"""A realistic pymemcache session against the server under test."""
import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

MIB = 1024 * 1024


@pytest.fixture
def client(server):
    c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=10)
    try:
        yield c
    finally:
        c.close()


def test_set_many_get_many(client):
    data = {f"user:{i}": f"profile-{i}".encode() * (i % 7 + 1) for i in range(300)}
    assert client.set_many(data) == []
    got = client.get_many(list(data) + ["missing:1", "missing:2"])
    assert got == data
    assert client.get_many(["missing:3"]) == {}


def test_noreply_default_on_stores(client):
    # pymemcache sends noreply by default: set returns True without waiting
    assert client.default_noreply is True
    for i in range(100):
        assert client.set(f"k{i}", b"v%d" % i) is True
    # noreply failures are invisible too, and the stream stays in sync
    assert client.add("k1", b"other") is True
    assert client.replace("absent", b"x") is True
    assert client.get("k1") == b"v1"
    assert client.get("absent") is None
    assert client.get("k99") == b"v99"


def test_add_replace_append_prepend_with_replies(client):
    assert client.add("a", b"1", noreply=False) is True
    assert client.add("a", b"2", noreply=False) is False
    assert client.replace("a", b"3", noreply=False) is True
    assert client.replace("nope", b"3", noreply=False) is False
    assert client.append("a", b"4", noreply=False) is True
    assert client.prepend("a", b"0", noreply=False) is True
    assert client.append("nope", b"4", noreply=False) is False
    assert client.get("a") == b"034"


def test_cas_via_gets(client):
    client.set("c", b"v1", noreply=False)
    value, cas = client.gets("c")
    assert value == b"v1"
    assert client.cas("c", b"v2", cas, noreply=False) is True
    assert client.cas("c", b"v3", cas, noreply=False) is False  # EXISTS
    assert client.get("c") == b"v2"
    assert client.cas("absent", b"x", cas, noreply=False) is None  # NOT_FOUND
    _, cas2 = client.gets("c")
    assert cas2 != cas
    many = client.gets_many(["c", "absent"])
    assert many == {"c": (b"v2", cas2)}


def test_incr_decr(client):
    client.set("n", b"10", noreply=False)
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0
    assert client.incr("n", 2**64 - 1) == 2**64 - 1
    assert client.incr("n", 1) == 0
    assert client.incr("absent", 1) is None
    assert client.decr("absent", 1) is None
    client.set("s", b"abc", noreply=False)
    with pytest.raises(Exception):
        client.incr("s", 1)


def test_touch_and_expiry(client):
    client.set("t", b"x", expire=100, noreply=False)
    assert client.touch("t", 1000, noreply=False) is True
    assert client.touch("absent", 1000, noreply=False) is False
    # pymemcache 4 has no gat(); raw_command strips the END token
    assert client.raw_command("gat 1000 t", "END\r\n") == b"VALUE t 0 1\r\nx\r\n"
    client.set("gone", b"x", expire=-1, noreply=False)
    assert client.get("gone") is None


def test_delete_many(client):
    client.set_many({f"d{i}": b"x" for i in range(50)})
    assert client.delete("d0", noreply=False) is True
    assert client.delete("d0", noreply=False) is False
    assert client.delete_many([f"d{i}" for i in range(50)]) is True
    assert client.get_many([f"d{i}" for i in range(50)]) == {}


def test_large_values_near_the_limit(client):
    big = bytes(range(256)) * ((MIB - 1024) // 256)
    assert client.set("big", big, noreply=False) is True
    assert client.get("big") == big
    too_big = b"x" * (MIB + 1)
    with pytest.raises(MemcacheServerError):
        client.set("big2", too_big, noreply=False)
    # the refused block was swallowed: the connection is in sync
    assert client.get("big") == big
    # with noreply the error is silent and the stream still in sync
    assert client.set("big3", too_big) is True
    assert client.get("big3") is None
    assert client.get("big") == big


def test_binary_values(client):
    vals = {
        "zeros": b"\x00" * 1000,
        "all": bytes(range(256)) * 4,
        "crlf": b"\r\nEND\r\nVALUE x 0 1\r\n",
        "high": bytes([0xFF, 0xFE, 0x80, 0x7F]) * 100,
    }
    for k, v in vals.items():
        assert client.set(k, v, noreply=False) is True
    assert client.get_many(list(vals)) == vals


def test_flags_round_trip(client):
    client.set("f", b"x", flags=123456, noreply=False)
    assert client.raw_command("get f", "END\r\n") == b"VALUE f 123456 1\r\nx\r\n"


def test_flush_all_version_stats(client):
    client.set_many({"a": b"1", "b": b"2"})
    assert client.flush_all(noreply=False) is True
    assert client.get_many(["a", "b"]) == {}
    assert client.version()
    st = client.stats()
    assert st[b"cmd_flush"] == 1
    assert b"curr_items" in st
    settings = client.stats("settings")
    assert b"maxbytes" in settings
