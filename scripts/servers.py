"""The one way Python code here starts a memcached-protocol server.

Used by tests/py/conftest.py (and the pytest suites through it),
scripts/bench_compare.py, and scripts/test (the memccapable sections, through
the command line below). The Rust tests have the same rules in
tests/it/common.rs.

Rules: a server listens on 127.0.0.1 only, on a free port (retried when the
port is taken before the server binds it), is ready when it accepts a TCP
connection (bounded by a timeout; a process that exits first is an error with
its output), and is stopped by PID: SIGTERM, then SIGKILL after a grace
period. Every process started here is also stopped at interpreter exit
(atexit) and, from the command line, on SIGINT/SIGTERM/SIGHUP.

Server kinds: "corecached" (this build: $CORECACHED_BIN or
target/release/corecached) or "memcached" (the real one from PATH, with
`-u root`, which memcached needs as root and ignores otherwise). Every
server gets `-U 0 -l 127.0.0.1 -p PORT` before the caller's flags.

Command line (scripts/test):
    servers.py run [--kind K] [--server-args "-t 2"] [--timeout S] -- CMD...
starts a server, runs CMD with every `{port}` replaced by the server's port,
and exits with CMD's status (1 if the server failed to start or died during
CMD, printing the server's output).
"""

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 10.0
KINDS = ("corecached", "memcached")

_children = {}  # pid -> Popen: everything started here and not yet reaped
_used_ports = set()


def server_kind():
    """The server under test: $CORECACHED_TEST_SERVER, default corecached."""
    k = os.environ.get("CORECACHED_TEST_SERVER", "") or "corecached"
    if k not in KINDS:
        raise RuntimeError(f"CORECACHED_TEST_SERVER={k!r}: expected corecached or memcached")
    return k


def corecached_bin():
    return os.environ.get("CORECACHED_BIN") or os.path.join(REPO, "target", "release", "corecached")


def default_binary(kind):
    return corecached_bin() if kind == "corecached" else "memcached"


def free_port():
    """A loopback port free right now and never handed out before by this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def server_argv(kind, port, args=(), binary=None, wrapper=()):
    """The command line of a `kind` server on 127.0.0.1:`port` with extra `args`."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r} (corecached|memcached)")
    argv = [binary or default_binary(kind)]
    if kind == "memcached":
        argv += ["-u", "root"]
    argv += ["-U", "0", "-l", "127.0.0.1", "-p", str(port)] + list(args)
    return list(wrapper) + argv


def spawn(argv, **kw):
    """Popen, remembered so that it is stopped at exit if the caller does not."""
    p = subprocess.Popen(argv, **kw)
    _children[p.pid] = p
    return p


def stop_process(p, grace=3.0):
    """Stop one child by PID: SIGTERM, SIGKILL after `grace` seconds (at once
    when `grace` is 0); reap it."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace if grace > 0 else 10)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    _children.pop(p.pid, None)


def forget(p):
    """The caller reaped `p` itself."""
    _children.pop(p.pid, None)


def stop_all():
    for p in list(_children.values()):
        stop_process(p, grace=1.0)


atexit.register(stop_all)


class StartError(RuntimeError):
    pass


class Server:
    """A server process on 127.0.0.1:`port`; `start()` it, `stop()` it (or use `with`).

    `log` is a path for the server's stdout+stderr (default: a temporary file,
    removed on stop); `wrapper` is a command that execs the server (e.g.
    `["taskset", "-c", "0"]`), so `pid` is the server's; `port` is a fixed
    client port (default: a free one per attempt), e.g. to restart a server
    where its clients know it.
    """

    def __init__(self, kind=None, args=(), binary=None, wrapper=(), env=None, log=None,
                 port=None):
        self.kind = kind or server_kind()
        self.args = list(args)
        self.binary = binary
        self.wrapper = list(wrapper)
        self.env = env
        self.log_path = log
        self.proc = None
        self.fixed_port = port
        self.port = None
        self.argv = None
        self._log = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=START_TIMEOUT, attempts=3):
        last = None
        for _ in range(attempts):  # the free port may be taken before the server binds it
            try:
                self._start_once(timeout)
                return self
            except StartError as e:
                last = e
                self.stop()
        raise last

    def _start_once(self, timeout):
        self.port = self.fixed_port or free_port()
        self.argv = server_argv(self.kind, self.port, self.args, self.binary, self.wrapper)
        if self.log_path:
            self._log = open(self.log_path, "w+b")
        else:
            self._log = tempfile.TemporaryFile()
        env = None if self.env is None else {**os.environ, **self.env}
        # A file, not a pipe: a verbose server must never block on a full pipe.
        self.proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                          stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise StartError(f"{' '.join(self.argv)} exited with {rc} before accepting "
                                 f"connections; its output:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StartError(f"{' '.join(self.argv)} not accepting connections after "
                                 f"{timeout} s; its output:\n{self.output()}")
            time.sleep(0.01)

    def output(self, limit=8000):
        """The last `limit` bytes the server wrote (stdout and stderr), as text."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-limit:].decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=3.0):
        if self.proc is not None:
            stop_process(self.proc, grace)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def ask(port, line, timeout=1.0, tls_ca=None):
    """Send one request line, return the first reply line (without CRLF).
    With `tls_ca` (a CA file), over TLS, verifying the server against it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        s = raw
        if tls_ca:
            import ssl
            ctx = ssl.create_default_context(cafile=tls_ca)
            ctx.check_hostname = False
            s = ctx.wrap_socket(raw)
        s.sendall(line)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()


def stats(port, arg="", timeout=5.0):
    """`stats [arg]` of the server on 127.0.0.1:`port` as a dict name -> value (text)."""
    line = f"stats {arg}".strip().encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(line)
        data = b""
        while not (data.endswith(b"END\r\n") or data.endswith(b"ERROR\r\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for ln in data.decode(errors="replace").split("\r\n"):
        p = ln.split(" ", 2)
        if len(p) == 3 and p[0] == "STAT":
            out[p[1]] = p[2]
    return out


def make_tls_pki(directory):
    """A throw-away CA and a server certificate for 127.0.0.1 (EC P-256), made
    with the openssl command line in `directory`. Returns the paths
    dict(ca=..., cert=..., key=...); `tls_server_args` makes the flags."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=corecached-test-ca")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {k: os.path.join(directory, f) for k, f in
            (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


def tls_server_args(pki):
    """memcached's TLS flags (corecached takes the same): `-Z -o ssl_chain_cert=,ssl_key=`."""
    return ["-Z", "-o", f"ssl_chain_cert={pki['cert']},ssl_key={pki['key']}"]


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Start a server, run a command against it, stop it.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run CMD with {port} = the server's port")
    run.add_argument("--kind", choices=KINDS, default=None,
                     help="default: $CORECACHED_TEST_SERVER, else corecached")
    run.add_argument("--server-args", default="-t 2", help='server flags (default "-t 2")')
    run.add_argument("--timeout", type=float, default=300.0, help="limit for CMD in s (default 300)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("run: no command given")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    srv = Server(args.kind, args.server_args.split())
    try:
        try:
            srv.start()
        except StartError as e:
            print(f"!! {e}", flush=True)
            return 1
        print(f"+ {' '.join(srv.argv)}", flush=True)
        cmd = [c.replace("{port}", str(srv.port)) for c in cmd]
        print(f"+ {' '.join(cmd)}", flush=True)
        p = spawn(cmd, stdin=subprocess.DEVNULL)
        try:
            rc = p.wait(timeout=args.timeout)
            forget(p)
        except subprocess.TimeoutExpired:
            stop_process(p)
            print(f"!! {cmd[0]} timed out after {args.timeout} s", flush=True)
            rc = 124
        if not srv.alive():
            print(f"!! the server died during {cmd[0]}; its output:\n{srv.output()}", flush=True)
            rc = rc or 1
        elif rc != 0:
            print(f"server output:\n{srv.output()}", flush=True)
        return rc
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
