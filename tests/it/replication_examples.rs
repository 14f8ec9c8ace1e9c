//! The replicated pair in docs/examples/ (replication-a.conf,
//! replication-b.conf, repl.secret.example, corecached@.service) starts as
//! shipped: both hosts from those files through `--config` (directly, and
//! through the systemd unit's ExecStart), with only their addresses moved
//! to free loopback ports and the secret path to a copy of the
//! placeholder; a write on A is readable on B, and one on B on A.

use crate::common::{free_port, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/examples")
        .join(name)
}

/// `text` with every `(from, to)` replaced; each `from` must occur (the
/// test breaks loudly if the example changes shape). `-p` lines go: the
/// harness gives the client port.
fn rewrite(text: &str, subst: &[(&str, &str)]) -> String {
    let mut t = text.to_string();
    for (from, to) in subst {
        assert!(t.contains(from), "{from} not in the example:\n{text}");
        t = t.replace(from, to);
    }
    let t: Vec<&str> = t.lines().filter(|l| !l.starts_with("-p ")).collect();
    t.join("\n") + "\n"
}

/// Writes `docs/examples/<name>` into `dir` with its addresses moved to
/// loopback: this host's replication listener `me`, its partner `other`,
/// clients on 127.0.0.1 (the harness gives the port), the secret at
/// `secret`, a smaller backlog.
fn loopback_conf(dir: &Path, name: &str, me: &str, other: &str, secret: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example(name)).unwrap();
    let (me_ip, other_ip) = if name.ends_with("a.conf") {
        ("10.0.0.1", "10.0.0.2")
    } else {
        ("10.0.0.2", "10.0.0.1")
    };
    let listen = format!("--replication-listen {me_ip}:11311");
    let partner = format!("--partner {other_ip}:11311");
    let l = format!("-l {me_ip}");
    let out = rewrite(
        &text,
        &[
            (&listen, &format!("--replication-listen {me}")),
            (&partner, &format!("--partner {other}")),
            (&l, "-l 127.0.0.1"),
            (
                "--replication-secret /etc/corecached/repl.secret",
                &format!("--replication-secret {}", secret.display()),
            ),
            // 64 MiB of backlog per host is the example's; a test
            // machine runs many servers at once.
            ("--replication-backlog 64m", "--replication-backlog 4m"),
        ],
    );
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// A fresh directory with a copy of the placeholder secret.
fn scratch(tag: &str) -> (PathBuf, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("corecached-examples-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("repl.secret");
    std::fs::copy(example("repl.secret.example"), &secret).unwrap();
    (dir, secret)
}

/// Both hosts replicate async, listen where their files say, and a write on
/// each is readable on the other within 10 s.
fn check_pair(a: &Server, b: &Server, la: &str, lb: &str) {
    let (mut ca, mut cb) = (a.conn(), b.conn());
    for (s, want) in [(a, la), (b, lb)] {
        let st = s.conn().stats("replication");
        assert_eq!(st["mode"], "async");
        assert_eq!(st["listen"], want);
    }
    ca.set("written-on-a", 5, 0, b"hello from A");
    cb.set("written-on-b", 6, 0, b"hello from B");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let on_b = cb.get("written-on-a");
        let on_a = ca.get("written-on-b");
        if on_b.is_some() && on_a.is_some() {
            assert_eq!(on_b, Some((5, b"hello from A".to_vec())));
            assert_eq!(on_a, Some((6, b"hello from B".to_vec())));
            break;
        }
        assert!(
            Instant::now() < end,
            "A's write on B: {on_b:?}, B's on A: {on_a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.conn().stats("replication")["auth_failures"], "0");
}

#[test]
fn the_example_pair_replicates() {
    let (dir, secret) = scratch("conf");
    let (ra, rb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{ra}"), format!("127.0.0.1:{rb}"));
    let ca = loopback_conf(&dir, "replication-a.conf", &la, &lb, &secret);
    let cb = loopback_conf(&dir, "replication-b.conf", &lb, &la, &secret);
    let a = Server::corecached(&["--config", ca.to_str().unwrap()]);
    let b = Server::corecached(&["--config", cb.to_str().unwrap()]);
    check_pair(&a, &b, &la, &lb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sections of a systemd unit file: (section, key, value) in order.
/// systemd's syntax as far as these units use it: `[Section]` headers,
/// `Key=Value` lines, `#`/`;` comments, blank lines, a trailing backslash
/// continuing a line. Anything else fails the test.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(
                ["Unit", "Service", "Install"].contains(&name),
                "line {}: unknown section [{name}]",
                n + 1
            );
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not Key=Value: {raw}", n + 1));
        let k = k.trim();
        assert!(
            !section.is_empty()
                && k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && k.chars().all(|c| c.is_ascii_alphanumeric()),
            "line {}: bad key {k:?} (section {section:?})",
            n + 1
        );
        out.push((section.clone(), k.to_string(), v.trim().to_string()));
    }
    assert!(pending.is_empty(), "the unit ends in a continuation");
    out
}

/// The value systemd uses for `key` in `section`: the last one given (an
/// empty `ExecStart=` resets the list; these units give one).
fn unit_value<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    unit.iter()
        .rev()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in [{section}]"))
}

/// `systemd-analyze verify` on `unit` (the example with ExecStart's binary
/// moved to this build), when the machine has systemd-analyze; says so when
/// it does not (the unit is then checked by `parse_unit` alone).
fn systemd_verify(dir: &Path, unit_text: &str, instance: &str) {
    let bin = crate::common::corecached_bin();
    let text = unit_text.replace("/usr/bin/corecached", bin.to_str().unwrap());
    let path = dir.join(format!("corecached@{instance}.service"));
    std::fs::write(&path, text).unwrap();
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Err(e) => println!(
            "systemd-analyze not available ({e}): corecached@.service checked by this test's \
             own parser only"
        ),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let about_unit: Vec<&str> = err.lines().filter(|l| l.contains("corecached@")).collect();
            assert!(
                out.status.success() && about_unit.is_empty(),
                "systemd-analyze verify {}: {}\n{err}",
                path.display(),
                out.status
            );
            println!("systemd-analyze verify corecached@{instance}.service: clean");
        }
    }
}

/// docs/examples/corecached@.service starts the pair: its [Service]
/// section is parsed (Type=notify, a start timeout that covers the warm
/// rejoin's 10-minute bound), and each host runs the unit's ExecStart with
/// `%i` = replication-a / replication-b, /etc/corecached/ moved to a
/// scratch directory holding the two example files (addresses on loopback)
/// and the binary this build; both get NOTIFY_SOCKET as under systemd and
/// must send READY=1. Then writes cross both ways. With systemd-analyze
/// installed, `systemd-analyze verify` must pass on both instances.
#[test]
fn the_systemd_example_starts_the_pair() {
    let unit_text = std::fs::read_to_string(example("corecached@.service")).unwrap();
    let unit = parse_unit(&unit_text);
    assert_eq!(unit_value(&unit, "Service", "Type"), "notify");
    let timeout = unit_value(&unit, "Service", "TimeoutStartSec");
    let mins: u64 = timeout
        .strip_suffix("min")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("TimeoutStartSec={timeout}: expected N min"));
    assert!(
        mins > 10,
        "TimeoutStartSec={timeout} does not cover a 10-minute warm rejoin"
    );
    assert_eq!(unit_value(&unit, "Unit", "After"), "network-online.target");
    let exec = unit_value(&unit, "Service", "ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/corecached", "ExecStart={exec}");

    let (dir, secret) = scratch("systemd");
    let etc = dir.join("etc-corecached");
    std::fs::create_dir_all(&etc).unwrap();
    let (ra, rb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{ra}"), format!("127.0.0.1:{rb}"));
    loopback_conf(&etc, "replication-a.conf", &la, &lb, &secret);
    loopback_conf(&etc, "replication-b.conf", &lb, &la, &secret);
    let mut hosts = Vec::new();
    for instance in ["replication-a", "replication-b"] {
        systemd_verify(&dir, &unit_text, instance);
        let args: Vec<String> = argv[1..]
            .iter()
            .map(|a| {
                a.replace("%i", instance)
                    .replace("/etc/corecached/", &format!("{}/", etc.display()))
            })
            .collect();
        assert!(
            args.iter()
                .any(|a| a.ends_with(&format!("{instance}.conf"))),
            "ExecStart does not name the instance's file: {args:?}"
        );
        let sock_path = dir.join(format!("notify-{instance}"));
        let _ = std::fs::remove_file(&sock_path);
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let argr: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Server::corecached_env(&argr, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
        hosts.push((s, sock));
    }
    for (i, (_, sock)) in hosts.iter().enumerate() {
        let mut buf = [0u8; 4096];
        let mut got = String::new();
        while !got.lines().any(|l| l == "READY=1") {
            let k = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("host {i}: no READY=1 within 15 s ({e}); got {got:?}"));
            got.push_str(&String::from_utf8_lossy(&buf[..k]));
            got.push('\n');
        }
    }
    check_pair(&hosts[0].0, &hosts[1].0, &la, &lb);
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/examples/mcrouter.json routes its pair pools to the client address of
/// each example host (`-l` and `-p` of replication-a.conf / replication-b.conf),
/// writes to A and fails over to B: mcrouter itself does not run here, so
/// this keeps the three files in step.
#[test]
fn the_mcrouter_example_routes_to_the_example_pair() {
    let json = std::fs::read_to_string(example("mcrouter.json")).unwrap();
    for (conf, pool) in [
        ("replication-a.conf", "pair-a"),
        ("replication-b.conf", "pair-b"),
    ] {
        let text = std::fs::read_to_string(example(conf)).unwrap();
        let flag = |f: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(f))
                .unwrap_or_else(|| panic!("{f} not in {conf}"))
                .trim()
                .to_string()
        };
        let addr = format!("\"{}:{}\"", flag("-l "), flag("-p "));
        let at = json.find(&format!("\"{pool}\"")).expect(pool);
        let servers = &json[at..json[at..].find(']').map(|e| at + e).unwrap()];
        assert!(
            servers.contains(&addr),
            "{pool} in mcrouter.json is not {addr}"
        );
    }
    assert!(
        json.contains("\"children\": [\"PoolRoute|pair-a\", \"PoolRoute|pair-b\"]"),
        "the pair route fails over from A to B"
    );
}
