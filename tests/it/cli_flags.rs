//! memcached's whole command line: the flags that mean something here,
//! seen from outside (unix socket and its mask, -B, -R, -b, -d, -k, -r,
//! --config with a memcached.conf). The parsing of every flag and -o
//! option is pinned by the unit tests in src/config.rs.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("corecached-flags-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A server started by hand (no TCP port to wait for); killed by PID.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    let child = Command::new(corecached_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corecached");
    Proc(child)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unix_call(path: &Path, req: &[u8], want_end: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(want_end) {
        let n = s.read(&mut buf).expect("reply");
        assert!(n > 0, "closed; got {}", show(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// `-s PATH -a MASK`: clients on the unix socket, with the socket's
/// permissions from the mask; no TCP listener (as memcached); a stale
/// socket file from an earlier run is replaced.
#[test]
fn unix_socket_with_mask_replaces_tcp() {
    let dir = tmp("unix");
    let sock = dir.join("cc.sock");
    // A stale socket left by a crashed run.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let port = free_port();
    let p = port.to_string();
    let _srv = spawn(&[
        "-s",
        sock.to_str().unwrap(),
        "-a",
        "0660",
        "-p",
        &p,
        "-t",
        "2",
    ]);
    wait_for("the unix socket", || UnixStream::connect(&sock).is_ok());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let r = unix_call(&sock, b"set k 5 0 2\r\nhi\r\nget k\r\n", b"END\r\n");
    assert_eq!(show(&r), show(b"STORED\r\nVALUE k 5 2\r\nhi\r\nEND\r\n"));
    // Binary on the unix socket too.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut noop = [0u8; 24];
    noop[0] = 0x80;
    noop[1] = 0x0a;
    s.write_all(&noop).unwrap();
    let mut hdr = [0u8; 24];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!((hdr[0], hdr[1]), (0x81, 0x0a));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "-s must not also listen on TCP"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-B ascii` serves text only (a binary request is text to it: ERROR);
/// `-B binary` serves binary only (text closes the connection, as with
/// SASL).
#[test]
fn protocol_binding() {
    let ascii = Server::corecached(&["-B", "ascii"]);
    let mut noop = vec![0u8; 24];
    noop[0] = 0x80;
    noop[1] = 0x0a;
    noop.extend_from_slice(b"\r\n");
    // memcached -B ascii reads the header as two bad text lines (0x0a is
    // the opcode of noop and a line end).
    let memcached = Server::memcached(&["-B", "ascii"]);
    for s in [&ascii, &memcached] {
        let mut c = s.conn();
        c.send("version\r\n");
        assert!(c.line().starts_with("VERSION "));
        c.send(&noop);
        assert_eq!(c.line(), "ERROR");
        assert_eq!(c.line(), "ERROR");
    }

    let binary = Server::corecached(&["-B", "binary"]);
    let mut c = binary.conn();
    c.send(&noop[..24]);
    let hdr = c.read_n(24);
    assert_eq!((hdr[0], hdr[1]), (0x81, 0x0a));
    let mut t = binary.conn();
    t.send("version\r\n");
    let rest = t.read_to_close();
    assert!(!show(&rest).contains("VERSION"), "{}", show(&rest));
}

/// `-R N`: after N requests from one read the connection yields to the
/// loop's others (memcached's conn_yields counts it).
#[test]
fn reqs_per_event_yields() {
    let yields = |r: &str| {
        let s = Server::corecached(&["-t", "1", "-R", r]);
        let mut c = s.conn();
        let mut pipeline = String::new();
        for i in 0..100 {
            pipeline.push_str(&format!("get k{i}\r\n"));
        }
        pipeline.push_str("mn\r\n");
        c.send(&pipeline);
        c.read_through_line(b"MN\r\n");
        c.stat_u64("conn_yields")
    };
    let few = yields("1000");
    let many = yields("5");
    assert!(
        many >= 10 && many > few,
        "-R 5: {many} yields, -R 1000: {few}"
    );
}

/// `-b N` is the listen backlog (ss shows it as the listener's Send-Q).
#[test]
fn listen_backlog() {
    let s = Server::corecached(&["-t", "1", "-b", "77"]);
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", s.addr().port())])
        .output()
        .expect("ss (Debian package iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let sendq: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(sendq, vec!["77"], "{text}");
}

/// `-d` detaches: the command returns at once, the daemon writes its pid
/// file and serves; `-k` locks its memory, `-r` raises its core limit.
#[test]
fn daemon_with_locked_memory_and_core_limit() {
    let dir = tmp("daemon");
    let pidfile = dir.join("cc.pid");
    let port = free_port();
    let status = Command::new(corecached_bin())
        .args([
            "-d",
            "-k",
            "-r",
            "-p",
            &port.to_string(),
            "-l",
            "127.0.0.1",
            "-t",
            "1",
        ])
        .args(["-P", pidfile.to_str().unwrap(), "-m", "64"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the daemon's pid read from its pid file.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _kill = Kill(pid);
    wait_for("the daemon's port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut c = Conn::connect(([127, 0, 0, 1], port).into());
    c.req("version\r\n", "VERSION ");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // Its own session: not in the test's process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "daemon leads its own session: {stat}"
    );
    let locked = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    let kb: u64 = locked.split_whitespace().nth(1).unwrap().parse().unwrap();
    // mlockall needs CAP_IPC_LOCK or a memlock limit: as root it works.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(kb > 0, "-k: {locked}");
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let cols: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        cols[4], cols[5],
        "-r: soft core limit raised to the hard one: {core}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--config` reads a memcached.conf (Debian's format, with its `-d` and
/// `logfile` lines); flags after it win; accepted no-ops warn on stderr.
#[test]
fn config_file_starts_the_server() {
    let dir = tmp("conf");
    let conf = dir.join("memcached.conf");
    std::fs::write(
        &conf,
        "# Debian-style\n-d\nlogfile /var/log/memcached.log\n-m 96\n-c 33\n-o modern # no-op\n",
    )
    .unwrap();
    let mut s = Server::corecached(&["--config", conf.to_str().unwrap(), "-c", "44"]);
    let mut c = s.conn();
    let st = c.stats("settings");
    assert_eq!(st["maxbytes"], (96u64 << 20).to_string());
    assert_eq!(st["maxconns"], "44");
    s.assert_alive();
    let err = s.stderr();
    assert!(err.contains("warning: -o modern"), "{err}");
    assert!(err.contains("logfile"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-o idle_timeout=1`: a silent client is closed after about a second (as
/// memcached closes it), a client that keeps talking is not.
#[test]
fn idle_timeout_closes_silent_clients() {
    let s = Server::corecached(&["-t", "1", "-o", "idle_timeout=1"]);
    let mut silent = s.conn();
    let mut busy = s.conn();
    let start = Instant::now();
    for _ in 0..6 {
        busy.send("version\r\n");
        assert!(busy.line().starts_with("VERSION "));
        std::thread::sleep(Duration::from_millis(400));
    }
    // The silent one was closed meanwhile (after 1 s, well before 2.4 s).
    let rest = silent.read_to_close();
    assert!(rest.is_empty(), "{}", show(&rest));
    assert!(start.elapsed() < Duration::from_secs(5));
    busy.send("version\r\n");
    assert!(busy.line().starts_with("VERSION "));
    let mut c = s.conn();
    assert_eq!(c.stat_u64("idle_kicks"), 1);
}

/// `-o idle_timeout`: idle means no whole request, so a client trickling a
/// request line a byte at a time is closed like a silent one, in memcached
/// and here; a value's data stalled for the timeout is closed too (memcached
/// never closes a connection in the middle of a value).
#[test]
fn idle_timeout_closes_trickled_lines_and_stalled_values() {
    let ours = Server::corecached(&["-t", "1", "-o", "idle_timeout=1"]);
    let theirs = Server::memcached(&["-o", "idle_timeout=1"]);
    for s in [&ours, &theirs] {
        let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        c.write_all(b"get ").unwrap();
        let start = Instant::now();
        let closed = loop {
            let mut b = [0u8; 64];
            match c.read(&mut b) {
                Ok(0) => break Some(start.elapsed()),
                Ok(n) => panic!("a reply to half a line: {}", show(&b[..n])),
                Err(_) if start.elapsed() > Duration::from_secs(8) => break None,
                Err(_) => {}
            }
            if c.write_all(b"k").is_err() {
                break Some(start.elapsed());
            }
        };
        let closed = closed.expect("a trickled request line was never closed");
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
        let mut probe = s.conn();
        assert_eq!(probe.stat_u64("idle_kicks"), 1);
    }
    // A value's data that stops: closed after the timeout here.
    let mut c = ours.conn();
    c.send("set k 0 0 10\r\nabc");
    let rest = c.read_to_close();
    assert!(rest.is_empty(), "{}", show(&rest));
    let mut probe = ours.conn();
    assert_eq!(probe.stat_u64("idle_kicks"), 2);
}

/// `-vv`: one stderr line when a client connects and one when it leaves.
#[test]
fn vv_logs_connection_open_and_close() {
    let s = Server::corecached(&["-t", "1", "-vv"]);
    {
        let mut c = s.conn();
        c.send("version\r\n");
        assert!(c.line().starts_with("VERSION "));
    }
    wait_for("the close line", || {
        s.stderr().contains("connection closed.")
    });
    let err = s.stderr();
    assert!(
        err.lines()
            .any(|l| l.starts_with('<') && l.contains("new client connection from tcp:127.0.0.1:")),
        "{err}"
    );
}
