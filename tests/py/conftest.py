"""Shared fixtures for the Python black-box suites.

The server under test is corecached (target/release/corecached, or the path in
CORECACHED_BIN). With CORECACHED_TEST_SERVER=memcached the real memcached is
started instead (`memcached -u root -U 0 -l 127.0.0.1 -p PORT ...`), which is
how these suites are validated. A missing binary is a test failure, never a
skip. Every process is started on a free loopback port, waited for with a
timeout, and killed by PID in a finally block.
"""
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0


def server_kind():
    k = os.environ.get("CORECACHED_TEST_SERVER", "") or "corecached"
    if k not in ("corecached", "memcached"):
        raise RuntimeError(f"CORECACHED_TEST_SERVER={k!r}: expected corecached or memcached")
    return k


def is_memcached():
    return server_kind() == "memcached"


def corecached_bin():
    return os.environ.get("CORECACHED_BIN") or str(ROOT / "target" / "release" / "corecached")


_used_ports = set()


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def server_argv(kind, port, args):
    if kind == "memcached":
        base = ["memcached", "-u", "root"]
    else:
        base = [corecached_bin()]
    return base + ["-U", "0", "-l", "127.0.0.1", "-p", str(port)] + list(args)


class ServerProc:
    def __init__(self, kind, args):
        self.kind = kind
        self.args = list(args)
        self.proc = None
        self.port = None
        self._err = None

    def start(self):
        last = None
        for _ in range(3):  # the free port may be taken before the server binds it
            try:
                self._start_once()
                return self
            except RuntimeError as e:
                last = e
                self.stop()
        raise last

    def _start_once(self):
        self.port = free_port()
        argv = server_argv(self.kind, self.port, self.args)
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err
            )
        except FileNotFoundError as e:
            pytest.fail(f"cannot start {argv[0]}: {e} (not installed / not built?)")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"{argv} exited with {rc} before accepting connections:\n{self.stderr()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} not accepting after {START_TIMEOUT}s:\n{self.stderr()}")
            time.sleep(0.01)

    def stderr(self):
        if self._err is None:
            return ""
        self._err.seek(0)
        return self._err.read()[-8000:].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # by PID, via the Popen handle
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        if self._err is not None:
            self._err.close()
            self._err = None


@pytest.fixture
def start_server():
    """Factory: start_server(args=("-t", "2"), kind=None) -> ServerProc."""
    started = []

    def _start(args=("-t", "2"), kind=None):
        s = ServerProc(kind or server_kind(), args)
        started.append(s)
        return s.start()

    try:
        yield _start
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def server(start_server):
    """The server under test, started fresh for this test."""
    s = start_server()
    yield s
    assert s.alive(), f"server died during the test:\n{s.stderr()}"
