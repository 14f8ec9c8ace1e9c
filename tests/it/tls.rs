//! TLS (`-Z`), side by side with memcached 1.6.18's own `-Z` (Debian's
//! build has it): a session over TLS, a plaintext `notls:` listener beside
//! a TLS one, a client certificate required and refused, a bad handshake
//! that disturbs nobody, a stalled handshake closed after 10 s, and
//! certificate reload (`refresh_certs`, SIGHUP)
//! without dropping connections. Certificates are made per run with the
//! `openssl` command line (Debian package openssl).

use crate::common::*;
use crate::pki::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Send a request, read until the reply ends with `end`.
fn call(s: &mut Tls, req: &[u8], end: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(req)?;
    s.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "closed after {}",
                show(&got)
            )));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

fn session(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut s = connect(port, cfg).expect("TLS session");
    let mut all = call(&mut s, b"set k 3 0 5\r\nhello\r\n", b"\r\n").unwrap();
    all.extend(call(&mut s, b"get k\r\n", b"END\r\n").unwrap());
    all.extend(call(&mut s, b"delete k\r\nget k\r\n", b"END\r\n").unwrap());
    all
}

fn peer_cn(s: &Tls) -> String {
    let der = s.conn.peer_certificates().unwrap()[0].to_vec();
    // The CN is the only printable run of "server-N" in these certificates.
    let text = String::from_utf8_lossy(&der);
    ["server-1", "server-2"]
        .into_iter()
        .find(|cn| text.contains(cn))
        .unwrap_or("?")
        .to_string()
}

#[test]
fn tls_session_like_memcached() {
    let pki = Pki::new("session");
    let opts = pki.server_opts("");
    let cc = Server::corecached(&["-Z", "-o", &opts, "-t", "2"]);
    let mc = Server::memcached(&["-Z", "-o", &opts]);
    let cfg = pki.client(false);
    let ours = session(cc.addr().port(), &cfg);
    let theirs = session(mc.addr().port(), &cfg);
    assert_eq!(show(&ours), show(&theirs));
    assert_eq!(
        show(&ours),
        show(b"STORED\r\nVALUE k 3 5\r\nhello\r\nEND\r\nDELETED\r\nEND\r\n")
    );
}

/// `-l IP:P1,notls:IP:P2`: TLS on one, plaintext on the other; plaintext
/// on the TLS port is a failed handshake, counted, and nobody else notices.
#[test]
fn notls_listener_beside_tls_and_bad_handshakes() {
    let pki = Pki::new("notls");
    let opts = pki.server_opts("");
    let (p1, p2) = (free_port(), free_port());
    let l = format!("127.0.0.1:{p1},notls:127.0.0.1:{p2}");
    let srv = Server::corecached(&["-Z", "-o", &opts, "-l", &l, "-t", "1"]);
    let cfg = pki.client(false);
    let mut tls = connect(p1, &cfg).unwrap();
    assert!(call(&mut tls, b"version\r\n", b"\r\n")
        .unwrap()
        .starts_with(b"VERSION "));
    let mut plain = Conn::connect(([127, 0, 0, 1], p2).into());
    plain.send("version\r\n");
    assert!(plain.line().starts_with("VERSION "));
    let errors = |port: u16| -> u64 {
        let mut c = Conn::connect(([127, 0, 0, 1], port).into());
        c.stats("")["ssl_handshake_errors"].parse().unwrap()
    };
    // (The harness's own readiness probe was a plaintext connection to the
    // -p listener, which is TLS too.)
    let before = errors(p2);
    // Plaintext (and garbage) on the TLS port: the handshake fails.
    for junk in [
        &b"get k\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", p1)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(junk).unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        assert!(!String::from_utf8_lossy(&buf).contains("VALUE"));
    }
    // The TLS session in progress is undisturbed.
    assert!(call(&mut tls, b"version\r\n", b"\r\n")
        .unwrap()
        .starts_with(b"VERSION "));
    assert_eq!(errors(p2), before + 2);
    let mut c = Conn::connect(([127, 0, 0, 1], p2).into());
    let set = c.stats("settings");
    assert_eq!(set["ssl_enabled"], "yes");
    assert_eq!(set["ssl_min_version"], "tlsv1.2");
    drop(srv);
}

/// ssl_verify_mode=2: a client without a certificate is refused, one with a
/// certificate from ssl_ca_cert is served; memcached the same.
#[test]
fn client_certificate_required() {
    let pki = Pki::new("mtls");
    let opts = pki.server_opts(&format!(
        ",ssl_verify_mode=2,ssl_ca_cert={}",
        pki.path("ca.pem")
    ));
    let cc = Server::corecached(&["-Z", "-o", &opts, "-t", "1"]);
    let mc = Server::memcached(&["-Z", "-o", &opts]);
    for port in [cc.addr().port(), mc.addr().port()] {
        let with = session(port, &pki.client(true));
        assert!(with.starts_with(b"STORED\r\n"), "{}", show(&with));
        // Without: the handshake (TLS 1.2) or the first read (TLS 1.3) fails.
        let refused = connect(port, &pki.client(false))
            .and_then(|mut s| call(&mut s, b"version\r\n", b"\r\n"));
        assert!(
            refused.is_err(),
            "port {port} served a client without a certificate"
        );
    }
}

/// A renewed certificate is picked up by `refresh_certs` (and by SIGHUP):
/// open connections stay up on the old one, new ones get the new one.
#[test]
fn certificate_reload_keeps_connections() {
    let pki = Pki::new("reload");
    let opts = pki.server_opts("");
    let srv = Server::corecached(&["-Z", "-o", &opts, "-t", "2"]);
    let port = srv.addr().port();
    let cfg = pki.client(false);
    let mut old = connect(port, &cfg).unwrap();
    assert_eq!(peer_cn(&old), "server-1");
    pki.renew();
    assert_eq!(
        call(&mut old, b"refresh_certs\r\n", b"\r\n").unwrap(),
        b"OK\r\n"
    );
    let new = connect(port, &cfg).unwrap();
    assert_eq!(peer_cn(&new), "server-2");
    assert!(call(&mut old, b"version\r\n", b"\r\n")
        .unwrap()
        .starts_with(b"VERSION "));
    // A broken file: the reload fails with memcached's wording, the old
    // certificate stays in use.
    std::fs::write(pki.dir.join("live.pem"), "not a certificate").unwrap();
    let r = call(&mut old, b"refresh_certs\r\n", b"\r\n").unwrap();
    assert!(
        r.starts_with(b"Error loading the certificate chain: "),
        "{}",
        show(&r)
    );
    assert_eq!(peer_cn(&connect(port, &cfg).unwrap()), "server-2");
    // SIGHUP reloads too.
    std::fs::copy(pki.dir.join("server.pem"), pki.dir.join("live.pem")).unwrap();
    std::fs::copy(pki.dir.join("server.key"), pki.dir.join("live.key")).unwrap();
    srv.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if peer_cn(&connect(port, &cfg).unwrap()) == "server-1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(call(&mut old, b"version\r\n", b"\r\n")
        .unwrap()
        .starts_with(b"VERSION "));
    // Without -Z: memcached's answer.
    let plain = Server::corecached(&[]);
    let mut c = plain.conn();
    c.send("refresh_certs\r\n");
    assert_eq!(c.line(), "Error TLS not enabled");
    // `noreply` is the last token, as memcached reads it.
    c.send("refresh_certs x noreply\r\nversion\r\n");
    assert!(c.line().starts_with("VERSION "));
}

/// A client that connects to a TLS port and never finishes its handshake
/// (nothing sent, or half a ClientHello) is closed after the handshake time
/// (10 s) and counted in `ssl_handshake_errors`; meanwhile TLS clients are
/// served. memcached keeps such a connection open until `idle_timeout`, if
/// one is set (COMPATIBILITY.md, `-Z` row).
#[test]
fn a_stalled_handshake_is_closed_after_the_handshake_time() {
    let pki = Pki::new("stall");
    let opts = pki.server_opts("");
    let (p1, p2) = (free_port(), free_port());
    let l = format!("127.0.0.1:{p1},notls:127.0.0.1:{p2}");
    let _srv = Server::corecached(&["-Z", "-o", &opts, "-l", &l, "-t", "1"]);
    let stat = |name: &str| -> u64 {
        let mut c = Conn::connect(([127, 0, 0, 1], p2).into());
        c.stats("")[name].parse().unwrap()
    };
    let errors = || stat("ssl_handshake_errors");
    let before = errors();
    // The asking connection counts itself.
    let conns_before = stat("curr_connections");
    let start = std::time::Instant::now();
    let stalled: Vec<TcpStream> = [&b""[..], &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01][..]]
        .into_iter()
        .map(|sent| {
            let mut c = TcpStream::connect(("127.0.0.1", p1)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c.write_all(sent).unwrap();
            c
        })
        .collect();
    // While they stall, a TLS client is served.
    let served = session(p1, &pki.client(false));
    assert!(served.starts_with(b"STORED\r\n"), "{}", show(&served));
    assert_eq!(errors(), before, "counted before the handshake time");
    for mut c in stalled {
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).expect("closed, not timed out");
        let waited = start.elapsed();
        assert_eq!(n, 0, "got {}", show(&buf[..n]));
        assert!(
            waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
            "closed after {waited:?}"
        );
    }
    assert_eq!(errors(), before + 2);
    // A failed handshake gives its connection count back.
    assert_eq!(stat("curr_connections"), conns_before);
}
