//! Smoke test of the load generator (`corecached-bench`, issue 6): runs it for about a
//! second per protocol against memcached and against corecached, each started here on a
//! free loopback port, and checks that the JSON report is well-formed, says ok and counts
//! operations. No timing assertion. (That it fails, non-zero, where nothing listens is
//! checked by the bench package itself: bench/tests/cli.rs.)
//!
//! `--tls` is run the same way against memcached `-Z` and corecached `-Z` (certificates
//! made per run with the `openssl` command line); the same run must fail against a
//! plaintext port, a plaintext run must fail against the TLS port, and a server requiring
//! a client certificate serves the generator only with `--tls-cert/--tls-key`.
//!
//! memcached comes from PATH (`apt-get install memcached`); the test fails, loudly, if it
//! is missing. Servers are started by the shared harness (tests/it/common.rs), which stops
//! them by PID when dropped.

use crate::common;

use crate::pki::Pki;
use common::Server;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The load generator: a binary of the bench package (bench/Cargo.toml), so cargo
/// gives this crate no `CARGO_BIN_EXE_` for it. `cargo build --release` and
/// `cargo test --release` at the root (bench/tests/cli.rs makes cargo build the
/// binary for tests) put it next to the server binary.
fn bench_bin() -> PathBuf {
    let p = common::corecached_bin().with_file_name("corecached-bench");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release` (it builds the bench package too)",
        p.display()
    );
    p
}

/// Server flags for both servers (the harness adds `-U 0 -l 127.0.0.1 -p PORT`).
const SERVER_ARGS: &[&str] = &["-m", "64", "-t", "2"];

fn run_bench(port: u16, pid: u32, protocol: &str) -> Json {
    run_bench_with(port, pid, protocol, &[])
}

fn run_bench_with(port: u16, pid: u32, protocol: &str, extra: &[&str]) -> Json {
    let out = Command::new(bench_bin())
        .args(extra)
        .args([
            "-p",
            &port.to_string(),
            "-P",
            protocol,
            "-c",
            "4",
            "--pipeline",
            "4",
            "--keys",
            "1000",
            "--populate",
            "-w",
            "0.2",
            "-d",
            "1",
            "--server-pid",
            &pid.to_string(),
            "--server-stats",
            "--json",
            "-",
            "-q",
        ])
        .output()
        .expect("run corecached-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "corecached-bench -P {protocol} failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j = Json::parse(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"));
    assert_eq!(j.get("ok"), Some(&Json::Bool(true)), "{stdout}");
    for k in ["ops", "ops_per_sec", "gets", "sets", "hits"] {
        let v = j.get(k).and_then(Json::num).unwrap_or(0.0);
        assert!(v > 0.0, "{k} should be > 0 for {protocol}:\n{stdout}");
    }
    let errors = j
        .get("errors")
        .and_then(|e| e.get("total"))
        .and_then(Json::num);
    assert_eq!(errors, Some(0.0), "{stdout}");
    let p50 = j
        .get("latency_us")
        .and_then(|l| l.get("p50"))
        .and_then(Json::num);
    assert!(p50.is_some_and(|v| v > 0.0), "{stdout}");
    let cpu = j
        .get("server")
        .and_then(|s| s.get("cpu_us_per_op"))
        .and_then(Json::num);
    assert!(cpu.is_some_and(|v| v >= 0.0), "{stdout}");
    assert!(
        matches!(j.get("server_stats"), Some(Json::Obj(_))),
        "{stdout}"
    );
    j
}

fn smoke(mut server: Server) {
    let (port, pid) = (server.port, server.pid());
    for protocol in ["text", "binary", "meta"] {
        run_bench(port, pid, protocol);
        server.assert_alive();
    }
    drop(server);
}

#[test]
fn bench_smoke_memcached() {
    smoke(Server::memcached(SERVER_ARGS));
}

/// This half drives the corecached server binary (a stub that exited at once when the
/// test was written on the `bench` branch; it fails with "exited ... before accepting
/// connections" against such a server).
#[test]
fn bench_smoke_corecached() {
    smoke(Server::corecached(SERVER_ARGS));
}

/// `-Z -o ...` for a server with the shared test PKI's server certificate
/// (tests/it/pki.rs), plus `extra` options.
fn tls_server_args(pki: &Pki, extra: &str) -> Vec<String> {
    let mut a: Vec<String> = SERVER_ARGS.iter().map(|s| s.to_string()).collect();
    a.extend(["-Z".to_string(), "-o".to_string(), pki.server_opts(extra)]);
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A short generator run expected to fail: its stderr.
fn bench_fails(port: u16, extra: &[&str]) -> String {
    let out = Command::new(bench_bin())
        .args(["-p", &port.to_string(), "-c", "2", "-w", "0", "-d", "0.5"])
        .args(["--timeout", "2", "-q"])
        .args(extra)
        .output()
        .expect("run corecached-bench");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "corecached-bench {extra:?} should have failed on port {port}; stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// The TLS run of the generator (text, pipelined, `stats` over TLS too) against a `-Z`
/// server: it succeeds, says which TLS it negotiated, and a plaintext run against the
/// same port fails.
fn tls_smoke(mut server: Server, ca: &Path, extra: &[&str]) {
    let (port, pid) = (server.port, server.pid());
    let ca = ca.display().to_string();
    let mut args = vec!["--tls", "--tls-ca", &ca];
    args.extend(extra);
    for protocol in ["text", "binary"] {
        let j = run_bench_with(port, pid, protocol, &args);
        let tls = j.get("config").and_then(|c| c.get("tls"));
        let version = match tls.and_then(|t| t.get("version")) {
            Some(Json::Str(v)) => v.clone(),
            other => panic!("config.tls.version: {other:?}"),
        };
        assert!(version.starts_with("TLSv1_"), "{version}");
        assert!(
            matches!(tls.and_then(|t| t.get("cipher_suite")), Some(Json::Str(s)) if s.starts_with("TLS")),
            "{tls:?}"
        );
        server.assert_alive();
    }
    bench_fails(port, &[]);
    server.assert_alive();
}

#[test]
fn bench_tls_memcached() {
    let pki = Pki::new("bench-mc");
    tls_smoke(
        Server::memcached(&strs(&tls_server_args(&pki, ""))),
        Path::new(&pki.path("ca.pem")),
        &[],
    );
}

#[test]
fn bench_tls_corecached() {
    let pki = Pki::new("bench-cc");
    tls_smoke(
        Server::corecached(&strs(&tls_server_args(&pki, ""))),
        Path::new(&pki.path("ca.pem")),
        &[],
    );
}

/// --tls really speaks TLS: against a plaintext port it fails at the handshake (a
/// generator that sent plaintext would be served there), and against a certificate from
/// another CA it refuses the server.
#[test]
fn bench_tls_fails_without_tls_or_trust() {
    let pki = Pki::new("bench-neg");
    let ca = pki.path("ca.pem");
    for plain in [
        Server::corecached(SERVER_ARGS),
        Server::memcached(SERVER_ARGS),
    ] {
        let err = bench_fails(plain.port, &["--tls", "--tls-ca", &ca]);
        assert!(err.contains("TLS handshake"), "{err}");
    }
    let tls = Server::corecached(&strs(&tls_server_args(&pki, "")));
    // client.pem is no CA of the server's certificate
    let err = bench_fails(tls.port, &["--tls", "--tls-ca", &pki.path("client.pem")]);
    assert!(err.contains("invalid peer certificate"), "{err}");
}

/// A server that requires a client certificate (`ssl_verify_mode=3`) serves the
/// generator with --tls-cert/--tls-key and refuses it without.
#[test]
fn bench_tls_client_certificate() {
    let pki = Pki::new("bench-mtls");
    let opts = format!(",ssl_verify_mode=3,ssl_ca_cert={}", pki.path("ca.pem"));
    let server = Server::corecached(&strs(&tls_server_args(&pki, &opts)));
    bench_fails(server.port, &["--tls", "--tls-ca", &pki.path("ca.pem")]);
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    tls_smoke(
        server,
        Path::new(&pki.path("ca.pem")),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
}

/// Just enough JSON to check the report: a strict recursive-descent parser.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn parse(s: &str) -> Result<Json, String> {
        let mut p = P {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn lit(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("expected , or ] at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(format!("expected : at byte {}", self.i));
                    }
                    self.i += 1;
                    let v = self.value()?;
                    if m.insert(k.clone(), v).is_some() {
                        return Err(format!("duplicate key {k:?}"));
                    }
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("expected , or }} at byte {}", self.i)),
                    }
                }
            }
            Some(_) => self.number(),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(format!("expected string at byte {}", self.i));
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = *self.b.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.b.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let h = self.b.get(self.i..self.i + 4).ok_or("bad \\u")?;
                            let h = std::str::from_utf8(h).map_err(|e| e.to_string())?;
                            let cp = u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                            self.i += 4;
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                c if c < 0x20 => return Err(format!("control byte in string at {}", self.i)),
                _ => {
                    // copy one UTF-8 sequence
                    let start = self.i - 1;
                    let mut end = self.i;
                    while end < self.b.len() && (self.b[end] & 0xc0) == 0x80 {
                        end += 1;
                    }
                    out.push_str(
                        std::str::from_utf8(&self.b[start..end]).map_err(|e| e.to_string())?,
                    );
                    self.i = end;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
        if s.is_empty() || s.starts_with('+') || s.starts_with('.') || s.ends_with('.') {
            return Err(format!("bad number at byte {start}"));
        }
        s.parse::<f64>()
            .map(Json::Num)
            .map_err(|_| format!("bad number {s:?} at byte {start}"))
    }
}
