"""Shared fixtures for the Python black-box suites.

Servers are started by scripts/servers.py, the one Python launcher (the same
rules as tests/it/common.rs: free loopback port, ready when it accepts a
connection within a timeout, stopped by PID). The server under test is
corecached (target/release/corecached, or the path in CORECACHED_BIN); with
CORECACHED_TEST_SERVER=memcached the real memcached is started instead, which
is how these suites are validated. A missing binary is a test failure, never
a skip.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import servers  # noqa: E402  (scripts/servers.py)


@pytest.fixture
def start_server():
    """Factory: start_server(args=("-t", "2"), kind=None, env=None) -> servers.Server.

    `kind` defaults to the server under test ($CORECACHED_TEST_SERVER)."""
    started = []

    def _start(args=("-t", "2"), kind=None, env=None):
        s = servers.Server(kind, args, env=env)
        started.append(s)
        try:
            return s.start()
        except FileNotFoundError as e:
            pytest.fail(f"cannot start {s.argv[0]}: {e} (not installed / not built?)")

    try:
        yield _start
    finally:
        for s in started:
            s.stop(grace=0)


@pytest.fixture
def server(start_server):
    """The server under test, started fresh for this test."""
    s = start_server()
    yield s
    assert s.alive(), f"server died during the test:\n{s.output()}"
