//! systemd integration: the `Type=notify` protocol spoken over a datagram
//! socket this test owns (as systemd would own it), and the unit file
//! checked by `systemd-analyze verify`.

use crate::common;

use common::Server;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A notify socket in a fresh temporary directory.
fn notify_socket(tag: &str) -> (UnixDatagram, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("corecached-notify-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (sock, path)
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// READY=1 comes once the server answers on its port; STOPPING=1 comes on
/// SIGTERM, before the process exits 0; each with a STATUS= line.
#[test]
fn ready_then_stopping_with_status() {
    let (sock, path) = notify_socket("ready");
    let mut server =
        Server::corecached_env(&["-t", "2"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let first = recv(&sock);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[0], "READY=1", "{first:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=serving on port ")),
        "{first:?}"
    );
    // Ready means serving: the port answers right away.
    let mut c = server.conn();
    c.req("version\r\n", "VERSION ");
    server.signal(libc::SIGTERM);
    let second = recv(&sock);
    assert!(second.starts_with("STOPPING=1\n"), "{second:?}");
    assert!(
        second.contains("STATUS=shutting down: signal 15"),
        "{second:?}"
    );
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A host rejoining its replication partner is READY only once it serves
/// clients: here its partner never connects, so after the rejoin wait.
#[test]
fn ready_waits_for_the_warm_rejoin() {
    let (sock, path) = notify_socket("rejoin");
    let (listen, partner) = (common::free_port(), common::free_port());
    let l = format!("127.0.0.1:{listen}");
    let p = format!("127.0.0.1:{partner}");
    let start = Instant::now();
    let args = [
        "-t",
        "2",
        "--replication-listen",
        &l,
        "--partner",
        &p,
        "--replication-rejoin-wait",
        "2",
    ];
    // Started by hand: the harness would wait for the client port, which
    // opens only after the rejoin wait too.
    let mut child = std::process::Command::new(common::corecached_bin())
        .args(args)
        .args([
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-p",
            &common::free_port().to_string(),
        ])
        .env("NOTIFY_SOCKET", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = recv(&sock);
    let waited = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("READY=1"), "{first:?}");
    assert!(
        waited >= Duration::from_millis(1900),
        "READY after {waited:?}, before the rejoin wait"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// With `WatchdogSec=` (WATCHDOG_USEC) the server pings at half the
/// interval; without it, it never does.
#[test]
fn watchdog_pings_at_half_the_interval() {
    let (sock, path) = notify_socket("watchdog");
    // systemd sets WATCHDOG_PID to the service's pid: a shell that execs
    // the server knows it.
    let script = format!(
        "NOTIFY_SOCKET={} WATCHDOG_USEC=400000 WATCHDOG_PID=$$ exec \"$@\"",
        path.display()
    );
    let server = Server::corecached_wrapped(&["sh", "-c", &script, "sh"], &["-t", "2"]);
    assert!(recv(&sock).starts_with("READY=1"));
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        if recv(&sock).trim_end() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    // 200 ms apart: about 7 in 1.5 s; a loaded machine may lose a few.
    assert!((3..=9).contains(&pings), "{pings} pings in 1.5 s");
    drop(server);

    let (sock, path) = notify_socket("nowatchdog");
    let _server = Server::corecached_env(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    assert!(recv(&sock).starts_with("READY=1"));
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        sock.recv(&mut buf).is_err(),
        "no watchdog pings unless asked"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The shipped unit file passes `systemd-analyze verify` (the binary path
/// it names is pointed at this build).
#[test]
fn unit_file_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("dist/corecached.service")).unwrap();
    let bin = common::corecached_bin();
    let unit = unit.replace("/usr/bin/corecached", bin.to_str().unwrap());
    let dir = std::env::temp_dir().join(format!("corecached-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corecached.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about the host's own units are not ours.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("corecached")).collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
    for key in [
        "Type=notify",
        "Restart=always",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=",
        "CapabilityBoundingSet=",
        "MemoryDenyWriteExecute=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "RestrictNamespaces=yes",
        "LimitMEMLOCK=",
    ] {
        assert!(
            std::fs::read_to_string(&path).unwrap().contains(key),
            "unit lacks {key}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
