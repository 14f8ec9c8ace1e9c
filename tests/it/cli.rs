//! Command line and process behaviour.
//!
//! Tests that call `skip_unless_corecached` encode corecached's own contract
//! where memcached 1.6.18 behaves differently (memcached exits 1 on an unknown
//! flag, supports UDP, and dies from SIGTERM with status 143). They are
//! skipped ONLY when CORECACHED_TEST_SERVER=memcached.
use crate::binary_wire;
use crate::common;
use common::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run a command to completion with a time limit (killed by PID on expiry).
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn starts_with_memcached_style_flags() {
    let s = Server::with_args(&["-m", "64", "-c", "1024", "-t", "2", "-I", "1m", "-v"]);
    let mut c = s.conn();
    c.send("version\r\n");
    assert!(c.line().starts_with("VERSION "));
    let st = c.stats("settings");
    assert_eq!(st["maxconns"], "1024");
    assert_eq!(st["item_size_max"], "1048576");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    if skip_unless_corecached("memcached exits 1 on an unknown flag") {
        return;
    }
    for bad in [
        vec!["--definitely-not-a-flag"],
        vec!["-p", "not-a-port"],
        vec!["-t", "-3"],
    ] {
        let mut cmd = Command::new(corecached_bin());
        cmd.args(&bad);
        let out = run_bounded(cmd, Duration::from_secs(5));
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: want exit 64 (EX_USAGE), got {:?}",
            out.status
        );
        assert!(
            !out.stderr.is_empty(),
            "{bad:?}: a usage error must say what is wrong on stderr"
        );
    }
}

#[test]
fn udp_is_refused_at_startup() {
    if skip_unless_corecached("memcached supports UDP") {
        return;
    }
    let port = free_port();
    let mut cmd = Command::new(corecached_bin());
    cmd.args(["-U", "1", "-l", "127.0.0.1", "-p", &port.to_string()]);
    let out = run_bounded(cmd, Duration::from_secs(5));
    assert!(!out.status.success(), "-U 1 must fail at start-up");
    assert!(!out.stderr.is_empty(), "-U 1 must explain why on stderr");
}

#[test]
fn port_already_in_use_is_a_startup_error() {
    // Someone else owns the port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let out = run_bounded(
        server_command(kind(), port, &["-t", "2"]),
        Duration::from_secs(5),
    );
    assert!(!out.status.success(), "started on a port that is in use");
    // Another instance of the same server owns the port (SO_REUSEPORT must
    // not let a second instance silently share it).
    let s = Server::start();
    let out = run_bounded(
        server_command(kind(), s.port, &["-t", "2"]),
        Duration::from_secs(5),
    );
    assert!(
        !out.status.success(),
        "a second instance started on the port of the first"
    );
    let mut c = s.conn();
    c.req("get x\r\n", "END\r\n");
}

#[test]
fn sigterm_answers_in_flight_request_then_exits_zero() {
    if skip_unless_corecached("memcached 1.6.18 dies from SIGTERM (status 143)") {
        return;
    }
    let mut s = Server::start();
    let mut c = s.conn();
    c.set("k", 0, 0, &vec![b'v'; 200_000]);
    // a batch of requests in flight when the signal arrives
    let mut idle = s.conn();
    c.send(b"get k\r\n".repeat(20));
    // Let the server read the batch; 4 MB of replies cannot all fit in the
    // socket buffers, so it is still answering when the signal arrives.
    std::thread::sleep(Duration::from_millis(100));
    let reader = std::thread::spawn(move || c.read_to_close());
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM; stderr: {}", s.stderr()));
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st:?}");
    // every reply that was started was finished: only whole replies arrive
    let got = reader.join().unwrap();
    let one = {
        let mut r = b"VALUE k 0 200000\r\n".to_vec();
        r.extend(vec![b'v'; 200_000]);
        r.extend_from_slice(b"\r\nEND\r\n");
        r
    };
    assert!(!got.is_empty(), "the in-flight requests were not answered");
    assert_eq!(got.len() % one.len(), 0, "a reply was cut off");
    for chunk in got.chunks(one.len()) {
        assert!(chunk == one.as_slice(), "corrupt reply during shutdown");
    }
    // idle connections are closed, the port is released
    assert_eq!(idle.read_to_close(), b"");
    assert!(std::net::TcpStream::connect(s.addr()).is_err());
}

/// Can this kernel (and seccomp policy) run the io_uring driver? Asked of
/// the binary itself: `--io-driver io_uring` exits 71 where io_uring is
/// refused, and otherwise starts serving.
fn uring_available() -> bool {
    match Server::try_corecached(&["--io-driver", "io_uring", "-t", "1"]) {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(
                e.status.and_then(|st| st.code()),
                Some(71),
                "--io-driver io_uring: {}",
                e.message
            );
            false
        }
    }
}

#[test]
fn both_io_drivers_serve_every_protocol_and_auto_is_the_documented_one() {
    if skip_unless_corecached("--io-driver is corecached's own flag") {
        return;
    }
    // The documented choice (docs/ARCHITECTURE.md, "I/O driver"): auto runs
    // io_uring wherever the kernel allows it, else epoll. epoll must always
    // work (containers that block io_uring rely on it).
    let uring = uring_available();
    let auto_want = if uring {
        "io_uring driver"
    } else {
        "epoll driver"
    };
    let mut cases = vec![("epoll", "epoll driver"), ("auto", auto_want)];
    if uring {
        cases.push(("io_uring", "io_uring driver"));
    }
    for (flag, want) in cases {
        let s = Server::corecached(&["-t", "2", "--io-driver", flag]);
        // Several connections of each protocol, so both event loops
        // (SO_REUSEPORT) serve some.
        for i in 0..4 {
            let mut c = s.conn();
            c.req(format!("set t{i} 0 0 1\r\nx\r\n"), "STORED\r\n");
            c.req(
                format!("get t{i}\r\n"),
                format!("VALUE t{i} 0 1\r\nx\r\nEND\r\n"),
            );
            let mut m = s.conn();
            m.req(format!("ms m{i} 2 T0\r\nmv\r\n"), "HD\r\n");
            m.req(format!("mg m{i} v\r\n"), "VA 2\r\nmv\r\n");
            m.req("mn\r\n", "MN\r\n");
            let mut b = binary_wire::Client::connect(s.port);
            let key = format!("b{i}");
            let r = b.call(&binary_wire::set(
                binary_wire::op::SET,
                key.as_bytes(),
                b"bv",
                5,
                0,
            ));
            assert_eq!(
                (r.magic, r.status),
                (binary_wire::RES, 0),
                "--io-driver {flag}"
            );
            let r = b.call(&binary_wire::get(binary_wire::op::GET, key.as_bytes()));
            assert_eq!((r.status, r.flags(), &r.value[..]), (0, 5, &b"bv"[..]));
        }
        // Keys stored over one protocol are read over another connection.
        let mut c = s.conn();
        for i in 0..4 {
            c.req(
                format!("get b{i}\r\n"),
                format!("VALUE b{i} 5 2\r\nbv\r\nEND\r\n"),
            );
        }
        let log = startup_line(&s);
        assert!(
            log.contains(want),
            "--io-driver {flag}: start-up line {log:?}, want {want:?}"
        );
    }
}

/// The start-up line (the listener accepts before it is printed: wait for it).
fn startup_line(s: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.stderr();
        if let Some(l) = log.lines().find(|l| l.contains(" listening on ")) {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no start-up line: {log:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pinning_follows_the_pin_flag_and_is_named_at_start_up() {
    if skip_unless_corecached("--pin is corecached's own flag") {
        return;
    }
    let s = Server::corecached(&["-t", "1", "--pin", "never"]);
    let l = startup_line(&s);
    assert!(l.contains(", not pinned,"), "{l}");
    let s = Server::corecached(&["-t", "1", "--pin", "always"]);
    let l = startup_line(&s);
    assert!(l.contains(", pinned to CPU "), "{l}");
    // auto: one loop fits on any machine, so it is pinned; more loops than
    // CPUs are never pinned (two loops must not be fixed to one CPU).
    let s = Server::corecached(&["-t", "1"]);
    let l = startup_line(&s);
    assert!(l.contains(", pinned to CPU "), "{l}");
    let over = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let s = Server::corecached(&["-t", &over.to_string()]);
    let l = startup_line(&s);
    assert!(l.contains(", not pinned,"), "{l}");
}

/// Every way the process ends removes its `-P` pid file. The path that did
/// not: an event loop whose runtime cannot be built (here: no descriptor left
/// for the io_uring/epoll instance under a small RLIMIT_NOFILE) exited the
/// process (71) from the loop thread, after the pid file was written. Each
/// limit from 4 to 8 descriptors is tried: the server either fails to start
/// or serves and is stopped with SIGTERM; either way the pid file must be
/// gone. At least one limit must hit the runtime failure after the write.
#[test]
fn pid_file_is_removed_on_every_exit() {
    if skip_unless_corecached("corecached's start-up failure paths") {
        return;
    }
    let mut runtime_failures = 0;
    for nofile in 4..=8 {
        let pidfile = std::env::temp_dir().join(format!(
            "corecached-test-{}-nofile{nofile}.pid",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&pidfile);
        let inner = server_command(
            Kind::Corecached,
            free_port(),
            &["-t", "1", "-P", pidfile.to_str().unwrap()],
        );
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn prlimit (util-linux)");
        let deadline = Instant::now() + Duration::from_secs(3);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            // It serves: a clean shutdown must remove the file too.
            // SAFETY: kill(2) on the PID of our own child, not yet reaped
            // (prlimit execs the server, so it is the server's PID).
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        }
        let out = run_bounded_wait(child, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !pidfile.exists(),
            "nofile {nofile}: exit {:?} left the pid file behind; stderr: {err}",
            out.status
        );
        if err.contains("cannot build runtime") && !err.contains("could not write pid file") {
            assert_eq!(out.status.code(), Some(71), "nofile {nofile}: {err}");
            runtime_failures += 1;
        }
    }
    assert!(
        runtime_failures > 0,
        "no descriptor limit in 4..=8 made an event loop fail after the pid file was written"
    );
}

/// Wait for `child` to exit (killed by PID after `limit`) and collect its output.
fn run_bounded_wait(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}
