"""TLS with real clients, side by side with memcached 1.6.18 -Z (issue 13).

A throw-away CA and server certificate are made with the openssl CLI; both
servers get the same `-Z -o ssl_chain_cert=...,ssl_key=...`. Checked on each:
  * pymemcache with `tls_context` (the way its users turn TLS on): a session of
    set/get/gets/cas/incr/append/delete/get_many, the same results from both;
  * `openssl s_client`, scripted: the same bytes in, the same bytes out;
  * a plaintext client on the TLS port gets no reply (the handshake fails),
    and the server still serves TLS clients afterwards.
"""
import socket
import ssl
import subprocess

import pytest
from pymemcache.client.base import Client


def _openssl(tmp, *args):
    subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca")
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


def _tls_args(pki):
    return ("-t", "2", "-Z", "-o", f"ssl_chain_cert={pki / 'server.pem'},ssl_key={pki / 'server.key'}")


def _context(pki):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.check_hostname = False
    return ctx


def _session(port, pki):
    """What a pymemcache user sees over TLS, as a list of results."""
    c = Client(("127.0.0.1", port), tls_context=_context(pki), timeout=5, connect_timeout=5)
    out = []
    try:
        out.append(c.set("k", b"v1", noreply=False))
        out.append(c.get("k"))
        value, token = c.gets("k")
        out.append(value)
        out.append(c.cas("k", b"v2", token, noreply=False))
        out.append(c.cas("k", b"v3", token, noreply=False))  # stale token: False
        out.append(c.get("k"))
        out.append(c.set("n", b"41", noreply=False))
        out.append(c.incr("n", 1))
        out.append(c.append("k", b"+", noreply=False))
        big = bytes(range(256)) * 400  # 100 KiB: several TLS records
        out.append(c.set("big", big, noreply=False))
        out.append(c.get("big") == big)
        out.append(sorted(c.get_many(["k", "n", "missing"]).items()))
        out.append(c.delete("k", noreply=False))
        out.append(c.get("k"))
    finally:
        c.close()
    return out


def _s_client(port, pki, data):
    p = subprocess.run(
        ["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{port}",
         "-CAfile", str(pki / "ca.pem"), "-verify_return_error"],
        input=data, capture_output=True, timeout=30)
    return p.stdout


def test_pymemcache_over_tls_like_memcached(start_server, pki):
    ours = start_server(_tls_args(pki), kind=None)
    ref = start_server(_tls_args(pki), kind="memcached")
    got, want = _session(ours.port, pki), _session(ref.port, pki)
    assert got == want
    assert got[1] == b"v1" and got[10] is True  # the session did real work


def test_openssl_s_client_session_like_memcached(start_server, pki):
    ours = start_server(_tls_args(pki), kind=None)
    ref = start_server(_tls_args(pki), kind="memcached")
    data = (b"set a 0 0 5\r\nhello\r\nget a\r\nincr a 1\r\nset n 0 0 1\r\n7\r\n"
            b"incr n 5\r\nmn\r\nbogus\r\nquit\r\n")
    got, want = _s_client(ours.port, pki, data), _s_client(ref.port, pki, data)
    assert got == want
    assert b"VALUE a 0 5\r\nhello\r\nEND\r\n" in got


def test_plaintext_client_on_a_tls_port_is_refused_and_harmless(start_server, pki):
    ours = start_server(_tls_args(pki), kind=None)
    with socket.create_connection(("127.0.0.1", ours.port), timeout=5) as s:
        s.sendall(b"set p 0 0 1\r\nx\r\nget p\r\n")
        s.settimeout(3)
        try:
            reply = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            reply = b""
        assert b"STORED" not in reply and b"VALUE" not in reply
    assert _session(ours.port, pki)[1] == b"v1"
