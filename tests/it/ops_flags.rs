//! memcached's operator switches enforced (issue 12), each compared with
//! the real memcached 1.6.18 started with the same flags: `-C` (no CAS),
//! `-F` (no flush_all), `-X` (no dumps), `-W` (no watch), `-A` and the
//! `shutdown` command, and `stats settings` showing every switch.

use crate::binary_wire::{op, set as bset, Client, Pkt};
use crate::common::{self, Server};
use std::time::Duration;

/// `script` on a fresh connection: exactly `lines` reply lines, then
/// silence.
fn call(s: &Server, script: &str, lines: usize) -> String {
    let mut c = s.conn();
    c.send(script.as_bytes());
    let mut out = String::new();
    for _ in 0..lines {
        out.push_str(&c.line());
        out.push('\n');
    }
    c.expect_silence(Duration::from_millis(150));
    out
}

/// -C -F -X -W: the refusals and the CAS-less replies (text, meta), byte
/// for byte.
#[test]
fn switches_refuse_like_memcached() {
    let flags = ["-C", "-F", "-X", "-W"];
    let mc = Server::memcached(&flags);
    let cc = Server::corecached(&[&["-t", "2"][..], &flags].concat());
    let scripts: &[(&str, usize)] = &[
        // CAS 0 everywhere; a compare never matches (EXISTS / NOT_FOUND).
        (
            "set a:1 0 0 1\r\nx\r\ngets a:1\r\nmg a:1 c v\r\ncas a:1 0 0 1 0\r\ny\r\ncas a:1 0 0 1 5\r\nz\r\ncas nope 0 0 1 5\r\nz\r\ngets a:1\r\nms a:1 1 C0\r\nq\r\nms a:1 1 C7\r\nq\r\nms nope 1 C7\r\nq\r\nmd a:1 C7\r\nmg a:1 c v\r\n",
            18,
        ),
        (
            "set n 0 0 1\r\n5\r\nincr n 2\r\nmg n c v\r\nms n 1 c\r\n9\r\n",
            5,
        ),
        // -F: refused (noreply silences it), counted in cmd_flush.
        (
            "flush_all\r\nflush_all noreply\r\nflush_all 5\r\n",
            2,
        ),
        // -X
        (
            "stats cachedump 1 1\r\nstats cachedump\r\nlru_crawler metadump all\r\nlru_crawler metadump\r\n",
            4,
        ),
        // -W, and shutdown without -A
        (
            "watch\r\nwatch fetchers\r\nshutdown\r\nshutdown graceful\r\nshutdown x\r\n",
            5,
        ),
    ];
    for (sc, n) in scripts {
        let want = call(&mc, sc, *n);
        let got = call(&cc, sc, *n);
        assert_eq!(want, got, "script {sc:?}");
    }
    // the refused flushes were counted (memcached: text ones only)
    let mut b = [&mc, &cc].map(|s| Client::connect(s.port));
    for c in &mut b {
        let r = c.call(&Pkt::new(op::FLUSH));
        assert_eq!(r.status, 0x20, "binary flush refused with Auth failure");
        assert_eq!(r.value, b"Auth failure.");
    }
    let counts: Vec<u64> = [&mc, &cc]
        .iter()
        .map(|s| s.conn().stat_u64("cmd_flush"))
        .collect();
    assert_eq!(counts[0], counts[1], "cmd_flush");
    // items survived the refused flushes
    assert!(cc.conn().get("a:1").is_some());
    // binary: CAS 0 in get and set replies; a set with a CAS is EXISTS
    for (s, c) in [&mc, &cc].iter().zip(b.iter_mut()) {
        let r = c.call(&bset(op::SET, b"b", b"v", 0, 0));
        assert_eq!((r.status, r.cas), (0, 0), "{:?} set", s.kind);
        let r = c.call(&Pkt::new(op::GET).key(b"b"));
        assert_eq!((r.status, r.cas), (0, 0), "{:?} get", s.kind);
        // memcached drops a binary set's CAS when CAS is off: it stores
        let r = c.call(&bset(op::SET, b"b", b"w", 0, 0).cas(9));
        assert_eq!((r.status, r.cas), (0, 0), "{:?} set with cas", s.kind);
        let r = c.call(&Pkt::new(op::DELETE).key(b"b").cas(9));
        assert_eq!(r.status, 2, "{:?} delete with cas", s.kind);
    }
}

/// Without the switches, flush_all works and CAS values are not 0 (so the
/// test above pins the switches, not a default).
#[test]
fn switches_off_by_default() {
    let cc = Server::corecached(&["-t", "2"]);
    let mut c = cc.conn();
    c.set("k", 0, 0, b"v");
    assert_ne!(c.gets("k").unwrap().2, 0);
    c.req("flush_all\r\n", "OK\r\n");
    assert!(c.get("k").is_none());
}

/// -A: `shutdown x` is refused as memcached refuses it; `shutdown` closes
/// the asking connection without a reply and the server exits.
#[test]
fn shutdown_command_with_a() {
    let mc = Server::memcached(&["-A"]);
    let mut cc = Server::corecached(&["-t", "2", "-A"]);
    assert_eq!(
        call(&mc, "shutdown x\r\nshutdown a b\r\n", 2),
        call(&cc, "shutdown x\r\nshutdown a b\r\n", 2)
    );
    for graceful in [false, true] {
        let mut s = if graceful {
            Server::corecached(&["-t", "2", "-A"])
        } else {
            std::mem::replace(&mut cc, Server::corecached(&["-t", "1"]))
        };
        let other = s.conn();
        let mut c = s.conn();
        c.send(if graceful {
            "shutdown graceful\r\n"
        } else {
            "shutdown\r\n"
        });
        assert!(c.read_to_close().is_empty(), "no reply before the close");
        let st = s.wait_exit(Duration::from_secs(10)).expect("server exits");
        assert!(st.success(), "exit status {st:?}");
        drop(other);
    }
}

/// `stats settings` shows each switch with memcached's name and value.
#[test]
fn settings_show_switches_like_memcached() {
    let flags = [
        "-C",
        "-F",
        "-X",
        "-A",
        "-D",
        "/",
        "-R",
        "7",
        "-b",
        "99",
        "-B",
        "ascii",
        "-o",
        "idle_timeout=9,slab_automove_ratio=0.5,slab_automove_window=5,hashpower=18,no_maxconns_fast,lru_crawler_sleep=50,lru_crawler_tocrawl=3,no_slab_reassign,slab_automove=2",
    ];
    let mc = Server::memcached(&flags);
    let cc = Server::corecached(&[&["-t", "2"][..], &flags].concat());
    let want = mc.conn().stats("settings");
    let got = cc.conn().stats("settings");
    let names = [
        "domain_socket",
        "umask",
        "shutdown_command",
        "stat_key_prefix",
        "detail_enabled",
        "reqs_per_event",
        "cas_enabled",
        "tcp_backlog",
        "binding_protocol",
        "item_size_max",
        "maxconns_fast",
        "hashpower_init",
        "slab_reassign",
        "slab_automove",
        "slab_automove_ratio",
        "slab_automove_window",
        "lru_crawler",
        "lru_crawler_sleep",
        "lru_crawler_tocrawl",
        "flush_enabled",
        "dump_enabled",
        "idle_timeout",
        "maxbytes",
        "maxconns",
        "evictions",
        "growth_factor",
        "chunk_size",
    ];
    for n in names {
        assert_eq!(want.get(n), got.get(n), "stats settings {n}");
    }
    // and the defaults
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "4"]);
    let want = mc.conn().stats("settings");
    let got = cc.conn().stats("settings");
    for n in names {
        assert_eq!(want.get(n), got.get(n), "default stats settings {n}");
    }
    let _ = common::unix_now();
}

/// `shutdown` (-A) tells systemd it is stopping, as SIGTERM does.
#[test]
fn shutdown_command_notifies_systemd() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("corecached-ops-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notify message within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut s = Server::corecached_env(
        &["-t", "2", "-A"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    assert!(recv().starts_with("READY=1"));
    let mut c = s.conn();
    c.send("shutdown\r\n");
    let msg = recv();
    assert!(msg.starts_with("STOPPING=1\n"), "{msg:?}");
    assert!(
        msg.contains("STATUS=shutting down: shutdown command"),
        "{msg:?}"
    );
    let st = s.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(st.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// -C with SASL: an authenticated binary set carrying a CAS stores (the
/// CAS dropped) on the same authenticated connection.
#[test]
fn no_cas_keeps_the_sasl_login() {
    let path = std::env::temp_dir().join(format!("corecached-ops-pwdb-{}", std::process::id()));
    std::fs::write(&path, "alice:wonderland\n").unwrap();
    let p = path.to_str().unwrap();
    let s = Server::corecached(&["-t", "2", "-C", "-S", "--sasl-pwdb", p]);
    let mut c = Client::connect(s.port);
    let r = c.call(
        &Pkt::new(op::SASL_AUTH)
            .key(b"PLAIN")
            .value(b"\0alice\0wonderland"),
    );
    assert_eq!(r.status, 0);
    let r = c.call(&bset(op::SET, b"k", b"v", 0, 0).cas(9));
    assert_eq!((r.status, r.cas), (0, 0));
    let r = c.call(&Pkt::new(op::GET).key(b"k"));
    assert_eq!((r.status, &r.value[..]), (0, &b"v"[..]));
    let _ = std::fs::remove_file(&path);
}

/// `-o no_slab_reassign`: `slabs reassign` is refused as memcached refuses
/// it (with it on, the same command reaches the page mover).
#[test]
fn no_slab_reassign_refuses_reassign_like_memcached() {
    let cc = Server::corecached(&["-t", "1", "-o", "no_slab_reassign"]);
    let mc = Server::memcached(&["-o", "no_slab_reassign"]);
    for s in [&cc, &mc] {
        let mut c = s.conn();
        c.send("slabs reassign 1 2\r\n");
        assert_eq!(
            c.line(),
            "CLIENT_ERROR slab reassignment disabled",
            "{:?}",
            s.kind
        );
    }
    let on = Server::corecached(&["-t", "1"]);
    let mut c = on.conn();
    c.send("slabs reassign 1 2\r\n");
    assert_ne!(c.line(), "CLIENT_ERROR slab reassignment disabled");
}

/// `flush_all` under `-F` and not: memcached counts the command and applies
/// `-F` before it reads the delay, so an unreadable delay is refused as
/// "not allowed" under `-F` and counted in `cmd_flush` either way; a wrong
/// word count is a plain ERROR first.
#[test]
fn flush_all_errors_in_memcached_order() {
    let run = |k: common::Kind, args: &[&str]| {
        let s = Server::start_kind(k, args);
        let mut c = s.conn();
        let mut out = Vec::new();
        for req in [
            "flush_all abc",
            "flush_all abc noreply",
            "flush_all -1",
            "flush_all 10",
            "flush_all 10 noreply",
            "flush_all 1 2",
            "flush_all 1 2 3",
            "flush_all 99999999999",
            "flush_all",
        ] {
            c.send(format!("{req}\r\nversion\r\n"));
            let mut got = Vec::new();
            loop {
                let l = c.line();
                if l.starts_with("VERSION ") {
                    break;
                }
                got.push(l);
            }
            out.push(format!("{req} -> {got:?}"));
        }
        c.send("stats\r\n");
        out.push(format!(
            "cmd_flush {}",
            common::parse_stats(&c.read_end())["cmd_flush"]
        ));
        out
    };
    for args in [&["-F"][..], &[][..]] {
        let want = run(common::Kind::Memcached, args);
        assert_eq!(run(common::Kind::Corecached, args), want, "{args:?}");
    }
}
