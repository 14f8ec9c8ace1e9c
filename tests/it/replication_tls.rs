//! The replication link over mutual TLS (`--replication-tls`, with the
//! `-Z` certificates) between two real corecached processes on loopback
//! (docs/REPLICATION.md, "TLS"): a pair replicates both ways with CAS
//! preserved and the port speaks TLS; a peer whose certificate is from
//! another CA, or one without TLS, is refused and counted while clients are
//! served; garbage on the TLS port does not hurt the host. And the wire
//! version: a peer of another version is refused in words it can read.
//!
//! Under -Z the harness's `-p` listener is TLS too, so each host also gets
//! a plaintext `notls:` listener, and its `port` is switched to it: the
//! replication suite's helpers (stats, dumps) then talk plaintext.

use crate::common::{free_port, Conn, Server};
use crate::pki::{connect, Pki};
use crate::replication::{caught_up, host, rep_stats, stat, streaming, wait_for, wait_same};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A host with `--replication-listen listen`, `--partner partner` (if any),
/// -Z with `certs`' server certificate and `ca`'s CA as ssl_ca_cert, and
/// `extra` flags (`--replication-tls` or not).
fn tls_host(listen: u16, partner: Option<u16>, certs: &Pki, ca: &Pki, extra: &[&str]) -> Server {
    let plain = free_port();
    let notls = format!("notls:127.0.0.1:{plain}");
    let opts = format!(
        "ssl_chain_cert={},ssl_key={},ssl_ca_cert={}",
        certs.path("server.pem"),
        certs.path("server.key"),
        ca.path("ca.pem")
    );
    let mut args = vec!["-Z", "-o", &opts, "-l", &notls];
    args.extend_from_slice(extra);
    let mut s = host(listen, partner, &args);
    s.port = plain;
    s
}

const TLS: &[&str] = &["--replication-tls"];

fn repl_addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// What a raw TCP client gets back after sending `bytes` (until the host
/// closes or 3 s pass).
fn raw_reply(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(repl_addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// A whole plaintext HELLO frame of this build's wire version (2): node
/// id, run id, 2 streams, host bit, nonce. A plaintext receiver answers it
/// with a CHALLENGE frame.
fn plain_hello() -> Vec<u8> {
    let mut f = vec![0xC7, b'R', 2, 1, 0, 0, 0, 35];
    f.extend_from_slice(&7u64.to_be_bytes());
    f.extend_from_slice(&9u64.to_be_bytes());
    f.extend_from_slice(&2u16.to_be_bytes());
    f.push(1);
    f.extend_from_slice(&[0x5a; 16]);
    f
}

/// Clients of `s` keep being served while `busy` holds: a set and a get
/// every few milliseconds, each answered. Returns the requests served.
fn serve_clients_meanwhile(s: &Server, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let addr = s.addr();
    std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            c.set("client-key", 0, 0, b"client-value");
            assert_eq!(c.get("client-key"), Some((0, b"client-value".to_vec())));
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "a client waited {:?}",
                start.elapsed()
            );
            n += 2;
            std::thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

/// (a) A pair over mutual TLS replicates sets, deletes, touch and
/// incr both ways, CAS preserved; the replication port speaks TLS (a
/// plaintext HELLO gets no frame back; a client certificate from the CA
/// gets a handshake, none is refused and counted).
#[test]
fn a_tls_pair_replicates_both_ways_with_cas() {
    let pki = Pki::new("repl-pair");
    let (ra, rb) = (free_port(), free_port());
    let a = tls_host(ra, Some(rb), &pki, &pki, TLS);
    let b = tls_host(rb, Some(ra), &pki, &pki, TLS);
    wait_for(10, "both links streaming", || {
        streaming(&a) && streaming(&b)
    });
    for (src, dst, p) in [(&a, &b, "ab"), (&b, &a, "ba")] {
        let mut c = src.conn();
        let k = |s: &str| format!("{p}-{s}");
        c.set(&k("set"), 7, 0, b"value");
        c.set(&k("del"), 0, 0, b"gone");
        c.req(format!("delete {}\r\n", k("del")), "DELETED\r\n");
        c.set(&k("touch"), 0, 0, b"t");
        c.req(format!("touch {} 500\r\n", k("touch")), "TOUCHED\r\n");
        c.set(&k("num"), 0, 0, b"10");
        c.req(format!("incr {} 5\r\n", k("num")), "15\r\n");
        c.set(&k("cas"), 1, 0, b"before");
        let (_, _, cas) = c.gets(&k("cas")).unwrap();
        c.req(
            format!("cas {} 2 0 5 {cas}\r\nafter\r\n", k("cas")),
            "STORED\r\n",
        );
        wait_for(10, "the source caught up", || caught_up(src));
        let mut d = dst.conn();
        for name in ["set", "touch", "num", "cas"] {
            let here = c.gets(&k(name));
            assert!(here.is_some(), "{name} missing at the source");
            assert_eq!(d.gets(&k(name)), here, "{p} {name}: value, flags, CAS");
        }
        assert_eq!(d.get(&k("num")).unwrap().1, b"15");
        assert_eq!(d.gets(&k("del")), None);
        d.send(format!("mg {} t\r\n", k("touch")));
        let l = d.line();
        let ttl: i64 = l.trim_start_matches("HD t").parse().unwrap_or(-9);
        assert!(
            (495..=500).contains(&ttl),
            "touch's expiry on the copy: {l}"
        );
        // gets on the source, cas on the copy (failover).
        let (_, _, cas) = c.gets(&k("set")).unwrap();
        d.req(
            format!("cas {} 0 0 2 {cas}\r\nv2\r\n", k("set")),
            "STORED\r\n",
        );
    }
    wait_same(&a, &b, 10);
    for s in [&a, &b] {
        assert_eq!(stat(s, "tls"), 1);
        assert_eq!(stat(s, "tls_handshake_errors"), 0, "{:?}", rep_stats(s));
    }
    // The port speaks TLS: a plaintext HELLO gets no frame (a plaintext
    // receiver answers it with a CHALLENGE), only a TLS alert or the close.
    // (The control: a plaintext receiver does answer it.)
    let rp = free_port();
    let _plain = host(rp, None, &[]);
    assert_eq!(raw_reply(rp, &plain_hello())[..4], [0xC7, b'R', 2, 2]);
    let got = raw_reply(ra, &plain_hello());
    assert!(
        got.is_empty() || got[0] == 0x15,
        "plaintext answer on the TLS port: {got:?}"
    );
    wait_for(5, "the plaintext HELLO counted", || {
        stat(&a, "tls_handshake_errors") == 1
    });
    // Mutual: a certificate from ssl_ca_cert gets a handshake ...
    let mut s = connect(ra, &pki.client(true)).expect("TLS with a client certificate");
    s.write_all(&plain_hello()).unwrap();
    drop(s);
    // ... and no certificate is refused (TLS 1.3: the client finishes
    // first, the host's refusal shows on the next read).
    let refused = connect(ra, &pki.client(false)).and_then(|mut s| {
        s.write_all(&plain_hello())?;
        let mut b = [0u8; 16];
        s.read(&mut b)
    });
    assert!(
        matches!(refused, Err(_) | Ok(0)),
        "served without a client certificate: {refused:?}"
    );
    wait_for(5, "the refusal counted", || {
        stat(&a, "tls_handshake_errors") == 2
    });
    assert!(streaming(&a) && streaming(&b), "{:?}", rep_stats(&a));
}

/// (b) A peer whose certificate is from another CA is refused by the
/// receiver and counted; it applies nothing; both hosts' clients are served
/// all the while.
#[test]
fn a_peer_certified_by_another_ca_is_refused_and_counted() {
    let pki = Pki::new("repl-ca");
    let other = Pki::new("repl-other-ca");
    let (ra, rb) = (free_port(), free_port());
    let a = tls_host(ra, None, &pki, &pki, TLS);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = serve_clients_meanwhile(&a, stop.clone());
    // B trusts A's CA (so it accepts A), but its own certificate is from
    // another CA.
    let b = tls_host(rb, Some(ra), &other, &pki, TLS);
    b.conn().set("from-b", 0, 0, b"x");
    wait_for(10, "A to count refused handshakes", || {
        stat(&a, "tls_handshake_errors") >= 2
    });
    stop.store(true, Ordering::Relaxed);
    let served = clients.join().expect("A's clients were served");
    assert!(served > 10, "only {served} client requests");
    let st = rep_stats(&a);
    assert_eq!(st["inbound_sessions"], "0", "{st:?}");
    assert_eq!(st["snapshot_items_applied"], "0", "{st:?}");
    assert_eq!(st["auth_failures"], "0", "a TLS refusal, not an auth one");
    assert_eq!(a.conn().get("from-b"), None);
    assert!(!streaming(&b));
    assert_eq!(b.conn().get("from-b"), Some((0, b"x".to_vec())));
}

/// (c) A plaintext peer against a TLS receiver is refused and counted (and
/// applies nothing); a TLS sender against a plaintext receiver fails its
/// handshake (counted there) and the receiver counts a bad frame.
#[test]
fn a_plaintext_peer_and_a_tls_receiver_refuse_each_other() {
    let pki = Pki::new("repl-plain");
    let (ra, rb) = (free_port(), free_port());
    let a = tls_host(ra, None, &pki, &pki, TLS);
    let b = host(rb, Some(ra), &[]);
    b.conn().set("from-plain", 0, 0, b"x");
    wait_for(10, "A to count the plaintext peer", || {
        stat(&a, "tls_handshake_errors") >= 2
    });
    let st = rep_stats(&a);
    assert_eq!(st["inbound_sessions"], "0", "{st:?}");
    assert_eq!(st["bad_frames"], "0", "{st:?}");
    assert_eq!(a.conn().get("from-plain"), None);
    assert!(!streaming(&b));
    // The other way round.
    let (rc, rd) = (free_port(), free_port());
    let c = host(rc, None, &[]);
    let d = tls_host(rd, Some(rc), &pki, &pki, TLS);
    d.conn().set("from-tls", 0, 0, b"y");
    wait_for(10, "D to count its failed handshakes", || {
        stat(&d, "tls_handshake_errors") >= 1
    });
    wait_for(10, "C to count the ClientHello as a bad frame", || {
        stat(&c, "bad_frames") >= 1
    });
    assert_eq!(stat(&c, "inbound_sessions"), 0);
    assert_eq!(c.conn().get("from-tls"), None);
    assert!(!streaming(&d));
}

/// (d) Garbage on the TLS replication port (a memcached command, a
/// plaintext frame, TLS record headers with huge lengths, random bytes, a
/// half-open connection) never crashes the host: each is a counted failed
/// handshake, clients are served, and a real partner still gets in.
#[test]
fn garbage_on_the_tls_replication_port_does_not_crash_the_host() {
    let pki = Pki::new("repl-junk");
    let ra = free_port();
    let mut a = tls_host(ra, None, &pki, &pki, TLS);
    let mut junk: Vec<Vec<u8>> = vec![
        b"get foo\r\n".to_vec(),
        plain_hello(),
        // a TLS handshake record announcing 64 KiB (more than a record may)
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0],
        // a ClientHello header, then nothing sensible
        vec![
            0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0xff, 0xff, 0xff, 1, 2, 3,
        ],
        // an alert record, an application-data record
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
        vec![0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5],
    ];
    junk.extend(crate::replication::random_junk(
        0x2545_f491_4f6c_dd1d,
        20,
        1,
        400,
    ));
    let mut c = a.conn();
    for j in &junk {
        let got = raw_reply(ra, j);
        assert!(
            !got.starts_with(&[0xC7, b'R']),
            "a replication frame in plaintext"
        );
        c.set("still", 0, 0, b"serving");
    }
    // A half-open handshake (nothing sent) ends within the handshake
    // timeout and does not block the next peer.
    let _idle = TcpStream::connect(repl_addr(ra)).unwrap();
    wait_for(10, "every bad handshake counted", || {
        stat(&a, "tls_handshake_errors") >= junk.len() as u64
    });
    a.assert_alive();
    assert_eq!(c.get("still"), Some((0, b"serving".to_vec())));
    let b = tls_host(free_port(), Some(ra), &pki, &pki, TLS);
    b.conn().set("late", 0, 0, b"partner");
    wait_for(10, "a real partner streaming", || caught_up(&b));
    assert_eq!(a.conn().get("late"), Some((0, b"partner".to_vec())));
    a.assert_alive();
}

/// A `--replication-tls` without its certificates is refused at start-up
/// with a message saying what is missing.
#[test]
fn replication_tls_needs_z_and_a_ca() {
    let pki = Pki::new("repl-flags");
    let l = format!("127.0.0.1:{}", free_port());
    let no_ca = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    for (args, says) in [
        (vec!["--replication-listen", &l, "--replication-tls"], "-Z"),
        (
            vec![
                "-Z",
                "-o",
                &no_ca,
                "--replication-listen",
                &l,
                "--replication-tls",
            ],
            "ssl_ca_cert",
        ),
        (vec!["--replication-tls"], "--replication-listen"),
    ] {
        let out = std::process::Command::new(crate::common::corecached_bin())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains("--replication-tls") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

/// Wire version 2: a HELLO of version 1 (a build from before revisions)
/// gets a REFUSED frame in version 1's header, reason 5 (version), counted
/// as a version refusal, not a bad frame; and a sender that hears a
/// version-1 refusal counts it too.
#[test]
fn an_old_wire_version_is_refused_in_words_it_can_read() {
    let rb = free_port();
    let b = host(rb, None, &[]);
    let got = raw_reply(rb, &[0xC7, b'R', 1, 1, 0, 0, 0, 43]);
    assert_eq!(got, [0xC7, b'R', 1, 10, 0, 0, 0, 1, 5]);
    assert_eq!(stat(&b, "version_refusals"), 1);
    assert_eq!(stat(&b, "bad_frames"), 0);
    // An old receiver: it answers our HELLO (version 2) with its own
    // protocol refusal, in version 1.
    let old = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = old.local_addr().unwrap().port();
    let a = host(free_port(), Some(port), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    old.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let mut hellos = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            match old.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut h = [0u8; 8];
                    let _ = s.read_exact(&mut h);
                    // Read the whole HELLO, so the close is no reset.
                    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                    let mut payload = vec![0u8; len.min(4096)];
                    let _ = s.read_exact(&mut payload);
                    hellos.push(h);
                    let _ = s.write_all(&[0xC7, b'R', 1, 10, 0, 0, 0, 1, 2]);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        hellos
    });
    wait_for(10, "A to count the old partner's refusal", || {
        stat(&a, "version_refusals") >= 1
    });
    stop.store(true, Ordering::Relaxed);
    let hellos = t.join().unwrap();
    assert_eq!(hellos[0][..4], [0xC7, b'R', 2, 1], "a version-2 HELLO");
    assert_eq!(stat(&a, "bad_frames"), 0);
}
