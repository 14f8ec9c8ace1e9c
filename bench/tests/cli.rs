//! The load generator's command line, without a server: it fails loudly
//! where nothing listens. (Runs against memcached and corecached are in the
//! server's tests, tests/it/bench_smoke.rs.) Also makes `cargo test` build
//! target/<profile>/corecached-bench, which bench_smoke runs.

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_corecached-bench");

#[test]
fn fails_loudly_without_server() {
    // nothing listens there once the probe socket is closed
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(BENCH)
        .args(["-p", &port.to_string(), "-d", "1", "-q", "--timeout", "2"])
        .output()
        .expect("run corecached-bench");
    assert!(
        !out.status.success(),
        "corecached-bench must exit non-zero when the server refuses connections"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "stderr: {err}");
}

#[test]
fn help_names_the_options() {
    let out = Command::new(BENCH)
        .arg("--help")
        .output()
        .expect("run corecached-bench");
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--server-pid", "--json", "--pipeline", "--tls", "--tls-ca"] {
        assert!(text.contains(opt), "--help lacks {opt}: {text}");
    }
}
