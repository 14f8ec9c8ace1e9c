"""python-binary-memcached session over the binary protocol.

Binary support lands later in corecached: these run only with
CORECACHED_TEST_BINARY=1 (an explicit switch, never an absent tool); against
memcached they pass today.
"""
import os

import bmemcached
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("CORECACHED_TEST_BINARY") != "1",
    reason="binary protocol tests are switched off (set CORECACHED_TEST_BINARY=1)",
)


@pytest.fixture
def bclient(server):
    c = bmemcached.Client([f"127.0.0.1:{server.port}"], socket_timeout=5)
    try:
        yield c
    finally:
        c.disconnect_all()


def test_binary_session(bclient):
    c = bclient
    assert c.set("k", b"v1")
    assert c.get("k") == b"v1"
    assert c.add("k", b"v2") is False
    assert c.replace("k", b"v3")
    assert c.get("k") == b"v3"
    assert c.set_multi({"a": b"1", "b": b"2"}) in (True, [])
    assert c.get_multi(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
    assert c.delete("a")
    assert c.get("a") is None
    c.set("n", 10)
    assert c.incr("n", 5) == 15
    assert c.decr("n", 100) == 0
    value, cas = c.gets("k")
    assert value == b"v3"
    assert c.cas("k", b"v4", cas)
    assert not c.cas("k", b"v5", cas)
    assert c.get("k") == b"v4"
    big = os.urandom(500_000)
    assert c.set("big", big)
    assert c.get("big") == big
    assert c.flush_all()
    assert c.get("k") is None
    st = c.stats()
    assert st
