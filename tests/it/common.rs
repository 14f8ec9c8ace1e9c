//! Shared harness for the black-box integration tests: the one place that
//! starts servers. Every test starts its own server on a free loopback port
//! and talks raw TCP to it.
//!
//! `Server::start()` / `Server::with_args()` start the server under test: by
//! default `target/release/corecached` (the binary cargo built for this test
//! run); with `CORECACHED_TEST_SERVER=memcached` the real memcached instead
//! (`memcached -u root -U 0 -l 127.0.0.1 -p PORT ...`), which is how the
//! ascii_* suites are validated: they encode memcached 1.6's observable
//! behaviour byte for byte.
//!
//! `Server::corecached()` and `Server::memcached()` start one particular
//! server whatever `CORECACHED_TEST_SERVER` says: suites of corecached-only
//! features (binary, meta) and the differential suites, which compare the two.
//!
//! Processes are bounded in time (every read has a timeout) and are killed by
//! PID when the `Server` guard drops. Nothing here kills by name. The Python
//! side (pytest fixtures, scripts/bench_compare.py, scripts/test) starts
//! servers by the same rules through scripts/servers.py.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default read timeout for a single expected reply.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to start accepting connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Corecached,
    Memcached,
}

/// Which server the tests run against (`CORECACHED_TEST_SERVER`).
pub fn kind() -> Kind {
    match std::env::var("CORECACHED_TEST_SERVER").as_deref() {
        Err(_) | Ok("") | Ok("corecached") => Kind::Corecached,
        Ok("memcached") => Kind::Memcached,
        Ok(other) => panic!("CORECACHED_TEST_SERVER={other:?}: expected corecached or memcached"),
    }
}

pub fn is_memcached() -> bool {
    kind() == Kind::Memcached
}

/// Tests of corecached-specific behaviour (where memcached 1.6.18 differs or
/// has no equivalent) call this first. It returns true -- and the test must
/// return early -- ONLY when the suite runs against the real memcached
/// (CORECACHED_TEST_SERVER=memcached). Against corecached it never skips.
pub fn skip_unless_corecached(why: &str) -> bool {
    if is_memcached() {
        eprintln!("corecached-only test skipped under CORECACHED_TEST_SERVER=memcached: {why}");
        true
    } else {
        false
    }
}

pub fn corecached_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corecached"))
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: std::sync::OnceLock<Mutex<HashSet<u16>>> = std::sync::OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that is free right now and was never handed out before in
/// this process (so parallel tests never share a port).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if used_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The command line that starts the server under test on `port` with `args`.
pub fn server_command(k: Kind, port: u16, args: &[&str]) -> Command {
    let mut cmd = match k {
        Kind::Corecached => Command::new(corecached_bin()),
        Kind::Memcached => {
            let mut c = Command::new("memcached");
            c.args(["-u", "root"]);
            c
        }
    };
    cmd.args(["-U", "0", "-l", "127.0.0.1", "-p", &port.to_string()]);
    cmd.args(args);
    cmd
}

/// Why a server did not start: its exit status if it exited (None if it
/// could not be spawned or did not accept connections in time), and a
/// message with its stderr.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub message: String,
}

/// A running server; killed (by PID) and reaped on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub kind: Kind,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
}

impl Server {
    /// Start the server under test with `-t 2` and memcached's defaults.
    pub fn start() -> Server {
        Server::with_args(&["-t", "2"])
    }

    /// Start the server under test with extra flags (memcached syntax).
    pub fn with_args(args: &[&str]) -> Server {
        Server::start_kind(kind(), args)
    }

    /// Start corecached (this build) with extra flags, whatever
    /// `CORECACHED_TEST_SERVER` says.
    pub fn corecached(args: &[&str]) -> Server {
        Server::start_kind(Kind::Corecached, args)
    }

    /// Like `corecached`, with extra environment variables for the process.
    pub fn corecached_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_kind_env(Kind::Corecached, args, envs)
    }

    /// Start the real memcached from PATH (`memcached -u root -U 0 -l
    /// 127.0.0.1 -p PORT` plus `args`), whatever `CORECACHED_TEST_SERVER`
    /// says; fails loudly when it is missing. For differential tests.
    pub fn memcached(args: &[&str]) -> Server {
        Server::start_kind(Kind::Memcached, args)
    }

    /// Start a specific server kind.
    pub fn start_kind(k: Kind, args: &[&str]) -> Server {
        Server::start_kind_env(k, args, &[])
    }

    /// Start corecached through a wrapper command that execs it (e.g.
    /// `["prlimit", "--as=1073741824", "--"]`), so `pid()` is the server's.
    pub fn corecached_wrapped(wrapper: &[&str], args: &[&str]) -> Server {
        Server::start_full(Kind::Corecached, args, &[], wrapper)
    }

    /// Start a specific server kind with extra environment variables.
    pub fn start_kind_env(k: Kind, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_full(k, args, envs, &[])
    }

    /// One attempt to start corecached with `args`: the server once it
    /// accepts connections, or how it failed (for tests of start-up errors
    /// and of what the environment allows, e.g. io_uring).
    pub fn try_corecached(args: &[&str]) -> Result<Server, StartFailure> {
        Server::try_start(Kind::Corecached, args, &[], &[])
    }

    fn start_full(k: Kind, args: &[&str], envs: &[(&str, &str)], wrapper: &[&str]) -> Server {
        let mut last_err = String::new();
        // A port found free may be taken before the server binds it; retry.
        for _ in 0..3 {
            match Server::try_start(k, args, envs, wrapper) {
                Ok(s) => return s,
                Err(e) => last_err = e.message,
            }
        }
        panic!("{k:?} failed to start: {last_err}");
    }

    fn try_start(
        k: Kind,
        args: &[&str],
        envs: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Server, StartFailure> {
        let port = free_port();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir();
        let tag = format!("corecached-test-{}-{}-{}", std::process::id(), n, port);
        let stderr_path = dir.join(format!("{tag}.stderr"));
        let stdout_path = dir.join(format!("{tag}.stdout"));
        let mut cmd = server_command(k, port, args);
        if let Some((first, rest)) = wrapper.split_first() {
            let inner = cmd;
            cmd = Command::new(first);
            cmd.args(rest)
                .arg(inner.get_program())
                .args(inner.get_args());
        }
        cmd.envs(envs.iter().copied());
        // Files, not pipes: a verbose server must never block on a full pipe.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().map_err(|e| StartFailure {
            status: None,
            message: format!("cannot spawn {cmd:?}: {e} (is it installed / built?)"),
        })?;
        let mut srv = Server {
            child: Some(child),
            port,
            kind: k,
            stderr_path,
            stdout_path,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = srv.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(StartFailure {
                    status: Some(st),
                    message: format!(
                        "{cmd:?} exited with {st} before accepting connections; stderr:\n{}",
                        srv.stderr()
                    ),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(srv);
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    status: None,
                    message: format!(
                        "{cmd:?} did not accept connections within {START_TIMEOUT:?}; stderr:\n{}",
                        srv.stderr()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        let mut s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        if s.len() > 8000 {
            s = format!("...{}", &s[s.len() - 8000..]);
        }
        s
    }

    /// Panic (with the server's stderr) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "server exited unexpectedly ({st}); stderr:\n{}",
                self.stderr()
            );
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr())
    }

    /// A raw TCP connection to the server (see `tcp`).
    pub fn tcp(&self) -> TcpStream {
        tcp(self.addr())
    }

    /// Send a signal to the server (by PID).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the PID of the child this harness spawned and
        // still owns (not yet reaped), so the PID cannot name another process.
        let r = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.stderr_path);
        let _ = std::fs::remove_file(&self.stdout_path);
    }
}

/// Printable form of protocol bytes for assertion messages.
/// Send `req` on a fresh connection to `s` and read replies until `done`
/// says the answer is complete, the server closes, or `limit` passes
/// (reads poll every `poll`). Returns the bytes and whether the server
/// closed the connection (EOF or reset).
pub fn exchange(
    s: &Server,
    req: &[u8],
    done: impl Fn(&[u8]) -> bool,
    poll: Duration,
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut t = s.tcp();
    t.set_read_timeout(Some(poll)).unwrap();
    t.write_all(req).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + limit;
    while !done(&out) && Instant::now() < deadline {
        match t.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(_) => {}
        }
    }
    (out, false)
}

/// `text` with every `VERSION ...` line replaced by `VERSION x` (the two
/// servers' version strings differ).
pub fn mask_version(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with("VERSION ") {
                "VERSION x\r\n"
            } else {
                l
            }
        })
        .collect()
}

pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(600) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 600 {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

/// A raw TCP connection to `addr` with the harness's timeouts (reads
/// `TIMEOUT`, writes 20 s) and Nagle off.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A client connection with exact-byte reads and timeouts everywhere.
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn {
            s: tcp(addr),
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, b: impl AsRef<[u8]>) {
        self.s.write_all(b.as_ref()).expect("write to server");
    }

    /// Read more bytes into the buffer; false on EOF. Panics on timeout.
    fn fill(&mut self, what: &dyn Fn() -> String) -> bool {
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!(
                    "timed out waiting for {}; got so far: {:?}",
                    what(),
                    show(&self.buf)
                )
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            // A signal reached this thread mid-read (seen once under load): read again.
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(e) => panic!("read error {e} while waiting for {}", what()),
        }
    }

    /// Read exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let have = self.buf.len();
            if !self.fill(&|| format!("{n} bytes (have {have})")) {
                panic!(
                    "connection closed; wanted {n} bytes, got {}: {:?}",
                    self.buf.len(),
                    show(&self.buf)
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Read exactly `want.len()` bytes and require them to equal `want`.
    #[track_caller]
    pub fn expect(&mut self, want: impl AsRef<[u8]>) {
        let want = want.as_ref();
        let got = self.read_n(want.len());
        assert!(
            got == want,
            "reply mismatch\n  want: {:?}\n   got: {:?}",
            show(want),
            show(&got)
        );
    }

    /// Send `cmd` and require exactly `want` back.
    #[track_caller]
    pub fn req(&mut self, cmd: impl AsRef<[u8]>, want: impl AsRef<[u8]>) {
        self.send(cmd);
        self.expect(want);
    }

    /// Read up to and including the next `\r\n`; returns the line without it.
    pub fn line(&mut self) -> String {
        let b = self.read_until(b"\r\n");
        String::from_utf8_lossy(&b[..b.len() - 2]).into_owned()
    }

    /// Read up to and including the first occurrence of `pat`.
    pub fn read_until(&mut self, pat: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = memfind(&self.buf, pat) {
                return self.buf.drain(..i + pat.len()).collect();
            }
            let p = show(pat);
            if !self.fill(&|| format!("{p:?}")) {
                panic!(
                    "connection closed while waiting for {:?}; got {:?}",
                    show(pat),
                    show(&self.buf)
                );
            }
        }
    }

    /// Meta protocol: send `req` followed by `mn`, and return everything the
    /// server sent before the `MN\r\n` that answers the `mn`.
    pub fn call_mn(&mut self, req: impl AsRef<[u8]>) -> Vec<u8> {
        let mut r = req.as_ref().to_vec();
        r.extend_from_slice(b"mn\r\n");
        self.send(r);
        let mut out = self.read_through_line(b"MN\r\n");
        out.truncate(out.len() - 4);
        out
    }

    /// Read a multi-line reply ending with `END\r\n`.
    pub fn read_end(&mut self) -> Vec<u8> {
        self.read_through_line(b"END\r\n")
    }

    /// Read whole `\r\n`-terminated lines up to and including the first
    /// line that equals `last` (which must end with `\r\n`).
    pub fn read_through_line(&mut self, last: &[u8]) -> Vec<u8> {
        assert!(last.ends_with(b"\r\n"), "{:?} is not a line", show(last));
        let mut out = Vec::new();
        loop {
            let l = self.read_until(b"\r\n");
            let done = l == last;
            out.extend_from_slice(&l);
            if done {
                return out;
            }
        }
    }

    /// Require that nothing arrives within `d`.
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            show(&self.buf)
        );
        self.s.set_read_timeout(Some(d)).unwrap();
        let mut tmp = [0u8; 4096];
        let r = self.s.read(&mut tmp);
        self.s.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Ok(0) => panic!("connection closed, expected it to stay open and silent"),
            Ok(n) => panic!("expected silence, got {:?}", show(&tmp[..n])),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("expected silence, got error {e}"),
        }
    }

    /// Require that the server closes the connection (EOF or reset) within
    /// the timeout. Returns whatever bytes arrived before the close.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill(&|| "the server to close the connection".to_string()) {}
        std::mem::take(&mut self.buf)
    }

    // ---- convenience helpers -------------------------------------------

    #[track_caller]
    pub fn set(&mut self, key: &str, flags: u32, exp: i64, val: &[u8]) {
        self.store("set", key, flags, exp, val, "STORED");
    }

    #[track_caller]
    pub fn store(&mut self, cmd: &str, key: &str, flags: u32, exp: i64, val: &[u8], want: &str) {
        let mut b = format!("{cmd} {key} {flags} {exp} {}\r\n", val.len()).into_bytes();
        b.extend_from_slice(val);
        b.extend_from_slice(b"\r\n");
        self.send(b);
        self.expect(format!("{want}\r\n"));
    }

    /// `get key` -> Some((flags, value)) or None.
    pub fn get(&mut self, key: &str) -> Option<(u32, Vec<u8>)> {
        self.send(format!("get {key}\r\n"));
        let l = self.line();
        if l == "END" {
            return None;
        }
        let parts: Vec<&str> = l.split(' ').collect();
        assert!(
            parts.len() == 4 && parts[0] == "VALUE" && parts[1] == key,
            "bad VALUE line {l:?}"
        );
        let flags: u32 = parts[2].parse().unwrap();
        let n: usize = parts[3].parse().unwrap();
        let mut v = self.read_n(n + 2);
        assert_eq!(&v[n..], b"\r\n", "value not terminated by CRLF");
        v.truncate(n);
        self.expect("END\r\n");
        Some((flags, v))
    }

    /// `gets key` -> Some((flags, value, cas)) or None.
    pub fn gets(&mut self, key: &str) -> Option<(u32, Vec<u8>, u64)> {
        self.send(format!("gets {key}\r\n"));
        let l = self.line();
        if l == "END" {
            return None;
        }
        let parts: Vec<&str> = l.split(' ').collect();
        assert!(
            parts.len() == 5 && parts[0] == "VALUE" && parts[1] == key,
            "bad VALUE line {l:?}"
        );
        let n: usize = parts[3].parse().unwrap();
        let mut v = self.read_n(n + 2);
        assert_eq!(&v[n..], b"\r\n");
        v.truncate(n);
        self.expect("END\r\n");
        Some((parts[2].parse().unwrap(), v, parts[4].parse().unwrap()))
    }

    /// `stats [sub]` parsed into name -> value; every line must be
    /// `STAT <name> <value>` and the reply must end with `END`.
    pub fn stats(&mut self, sub: &str) -> BTreeMap<String, String> {
        let cmd = if sub.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {sub}\r\n")
        };
        self.send(cmd);
        let raw = self.read_end();
        parse_stats(&raw)
    }

    pub fn stat_u64(&mut self, name: &str) -> u64 {
        let st = self.stats("");
        st.get(name)
            .unwrap_or_else(|| panic!("stats has no {name}"))
            .parse()
            .unwrap_or_else(|_| panic!("stat {name} is not a number"))
    }
}

/// Parse a `STAT name value` block ending with `END\r\n`, asserting its format.
pub fn parse_stats(raw: &[u8]) -> BTreeMap<String, String> {
    let text = std::str::from_utf8(raw).expect("stats reply is not UTF-8");
    assert!(text.ends_with("END\r\n"), "stats reply must end with END");
    let body = &text[..text.len() - 5];
    assert!(body.is_empty() || body.ends_with("\r\n"));
    let mut m = BTreeMap::new();
    for l in body.split("\r\n").filter(|l| !l.is_empty()) {
        let mut it = l.splitn(3, ' ');
        let (stat, name, value) = (it.next(), it.next(), it.next());
        assert!(
            stat == Some("STAT") && name.is_some() && value.is_some(),
            "bad stats line {l:?}"
        );
        let (name, value) = (name.unwrap(), value.unwrap());
        assert!(
            !name.is_empty() && !name.contains(' '),
            "bad stat name {l:?}"
        );
        assert!(
            !value.is_empty() && !value.contains(' '),
            "bad stat value {l:?}"
        );
        assert!(
            m.insert(name.to_string(), value.to_string()).is_none(),
            "duplicate stat {name}"
        );
    }
    m
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The resident set of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

pub fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
