//! Replays every seed (corpus/<target>/) and every past finding
//! (regressions/<target>/) through its target, without afl: the targets'
//! assertions run as they do under the fuzzer. Part of `cargo test`.

use corecached::protocol::{binary, Proto};
use corecached::server::fuzzing;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(kind);
    let mut n = 0;
    for (name, target) in corecached_fuzz::TARGETS {
        for f in files(&root.join(name)) {
            let data = std::fs::read(&f).expect("read corpus file");
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name} fails on {}", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn seed_corpus_passes_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, _) in corecached_fuzz::TARGETS {
        assert!(
            files(&root.join(name)).len() >= 5,
            "corpus/{name} is missing or nearly empty"
        );
    }
    assert!(replay("corpus") > 0);
}

/// Every past finding still passes its target. Not vacuous: the
/// regressions directory holds the fuzzers' findings (replication, tls) and
/// only directories named after a target (a misnamed one would be skipped
/// silently).
#[test]
fn regressions_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for e in std::fs::read_dir(&root).expect("regressions/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                corecached_fuzz::target(&name).is_some(),
                "regressions/{name} is not a target"
            );
        }
    }
    let n = replay("regressions");
    assert!(n > 0, "no regression was replayed");
    eprintln!("{n} regressions replayed");
}

/// The harness itself: a connection's replies come back, the probe is sent
/// only between requests, a server-side close is seen.
#[test]
fn harness_runs_the_real_connection() {
    let o = fuzzing::run(&[b"set a 0 0 1\r\nx\r\nget a\r\n"]);
    assert_eq!(o.output, b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nMN\r\n");
    assert_eq!(o.probe_reply(), Some(&b"MN\r\n"[..]));
    assert!(!o.closed_by_server);
    // split anywhere: the same replies
    let o = fuzzing::run(&[b"se", b"t a 0 0 1\r", b"\nx", b"\r\nget a\r\n"]);
    assert_eq!(o.output, b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nMN\r\n");
    // mid data block: the harness finishes the block, then probes
    let o = fuzzing::run(&[b"set a 0 0 5\r\nxy"]);
    assert_eq!(o.output, b"STORED\r\nMN\r\n");
    assert_eq!(o.filled, 5);
    // mid line: a CRLF ends it
    let o = fuzzing::run(&[b"get a"]);
    assert_eq!(o.output, b"END\r\nMN\r\n");
    // too much pending (a block announced at 2 MiB, swallowed): no probe
    let o = fuzzing::run(&[b"set a 0 0 2097152\r\nxy"]);
    assert_eq!(o.probe_at, None);
    assert!(!o.closed_by_server);
    // a refused value is swallowed, then the connection answers
    let o = fuzzing::run(&[b"set a 0 0 -1\r\nget a\r\n"]);
    assert_eq!(o.probe_reply(), Some(&b"MN\r\n"[..]));
    // quit: closed by the server, no probe
    let o = fuzzing::run(&[b"version\r\nquit\r\nget a\r\n"]);
    assert!(o.output.starts_with(b"VERSION "));
    assert!(o.closed_by_server);
    assert_eq!(o.probe_at, None);
    // binary: NOOP probe answered
    let o = fuzzing::run(&[fuzzing::PROBE_BINARY]);
    assert_eq!(
        o.output,
        [fuzzing::PROBE_BINARY_REPLY, fuzzing::PROBE_BINARY_REPLY].concat()
    );
    // a multi-get larger than the output high-water mark is written in
    // pieces: no write holds much more than WBUF_HIGH (256 KiB)
    let mut input = b"set k 0 0 2000\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 2000]);
    input.extend_from_slice(b"\r\nget");
    input.extend_from_slice(&b" k".repeat(400));
    input.extend_from_slice(b"\r\n");
    let o = fuzzing::run(&[&input]);
    assert!(o.output.len() > 800_000, "{}", o.output.len());
    assert!(o.max_write <= (256 << 10) + 2100, "{}", o.max_write);
    assert_eq!(o.probe_reply(), Some(&b"MN\r\n"[..]));
    // the chunking the conn target uses covers all the input
    let data = b"\x07get a b c\r\nset k 0 0 3\r\nabc\r\n";
    let c = corecached_fuzz::chunks(data);
    assert!(c.len() > 1);
    assert_eq!(c.concat(), &data[1..]);
}

/// An error reply among a connection's replies: a text `...ERROR` line, a
/// binary response with a non-zero status.
fn had_error(out: &[u8], proto: Option<Proto>) -> bool {
    if proto != Some(Proto::Binary) {
        return out.windows(5).any(|w| w == b"ERROR");
    }
    let mut at = 0;
    while at + 24 <= out.len() {
        let h = binary::Header::decode(&out[at..]);
        if h.status != 0 {
            return true;
        }
        at += 24 + h.bodylen as usize;
    }
    false
}

/// The `conn` target's probe is not vacuous: over the corpus most runs end
/// open and between requests (the probe is sent and checked), some of them
/// after an error reply, some after the harness finished a pending request;
/// some end closed by the server.
#[test]
fn conn_corpus_reaches_the_probe() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/conn");
    let (mut probed, mut closed, mut pending, mut errors_then_probe, mut filled) = (0, 0, 0, 0, 0);
    for f in files(&dir) {
        let data = std::fs::read(&f).expect("read corpus file");
        let o = fuzzing::run(&corecached_fuzz::chunks(&data));
        match o.probe_at {
            Some(at) => {
                probed += 1;
                filled += (o.filled > 0) as usize;
                if had_error(&o.output[..at], o.proto) {
                    errors_then_probe += 1;
                }
            }
            None if o.closed_by_server => closed += 1,
            None => pending += 1,
        }
    }
    let total = probed + closed + pending;
    eprintln!(
        "conn corpus: {total} runs, probe {probed} ({errors_then_probe} after an error, {filled} after a fill), closed {closed}, pending {pending}"
    );
    assert!(
        probed * 2 >= total,
        "probe sent in {probed} of {total} runs"
    );
    assert!(errors_then_probe > 0 && filled > 0 && closed > 0);
}

/// The `replication` target's corpus reaches the receiver: frames applied
/// and acknowledged, and each way a link ends (a decode error, an apply
/// error, a partial frame pending).
#[test]
fn replication_corpus_reaches_the_receiver() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/replication");
    let (mut acked, mut decode_err, mut apply_err, mut pending, mut frames) = (0, 0, 0, 0, 0);
    for f in files(&dir) {
        let data = std::fs::read(&f).expect("read corpus file");
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let mut rest = rest.to_vec();
        if mode & 0x40 != 0 && rest.len() > 1 {
            // as the target does: this build's version in every header
            let mut at = 1;
            while at + 8 <= rest.len() && rest[at..at + 2] == corecached::replication::wire::MAGIC {
                rest[at + 2] = corecached::replication::wire::VERSION;
                let len = u32::from_be_bytes(rest[at + 4..at + 8].try_into().unwrap()) as usize;
                at = at.saturating_add(8 + len);
            }
        }
        let o = fuzzing::replicate(
            fuzzing::ARGS,
            (mode % 8) as usize,
            &corecached_fuzz::chunks(&rest),
            |_, _, _| {},
        );
        frames += o.frames;
        acked += (o.acked > 0) as usize;
        pending += (o.error.is_none() && o.pending > 0) as usize;
        match &o.error {
            Some(e) if e.starts_with("protocol:") => apply_err += 1,
            Some(_) => decode_err += 1,
            None => {}
        }
    }
    eprintln!(
        "replication corpus: {frames} frames applied, {acked} runs acknowledged, errors {decode_err} decode / {apply_err} apply, {pending} pending"
    );
    assert!(frames > 0 && acked > 0 && decode_err > 0 && apply_err > 0 && pending > 0);
}

/// The `tls` target's corpus reaches both sides of the handshake: raw
/// ClientHellos the server refuses, real handshakes (with and without a
/// client certificate, TLS 1.3 and 1.2) after which `serve` answers
/// requests and the probe, and raw records after a handshake.
#[test]
fn tls_corpus_reaches_serve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/tls");
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tls");
    let files_ = fuzzing::TlsFiles {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server-key.pem"),
        client_cert: d.join("client.pem"),
        client_key: d.join("client-key.pem"),
    };
    let (mut refused, mut served, mut probed, mut raw_after) = (0, 0, 0, 0);
    let mut modes = std::collections::HashSet::new();
    for f in files(&dir) {
        let data = std::fs::read(&f).expect("read corpus file");
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let m = match mode & 3 {
            0 => fuzzing::TlsMode::Raw,
            2 => fuzzing::TlsMode::RawAfterHandshake,
            _ => fuzzing::TlsMode::Plaintext,
        };
        let o = fuzzing::tls_run(
            fuzzing::ARGS,
            &files_,
            m,
            mode & 4 != 0,
            mode & 8 != 0,
            &corecached_fuzz::chunks(rest),
        );
        refused += (m == fuzzing::TlsMode::Raw && o.server_error.is_some()) as usize;
        if m == fuzzing::TlsMode::Plaintext && o.served {
            served += 1;
            modes.insert(mode & 12);
        }
        probed += (o.probe_at.is_some() && o.plaintext.len() > o.probe_expected.len()) as usize;
        raw_after += (m == fuzzing::TlsMode::RawAfterHandshake && o.served) as usize;
    }
    eprintln!(
        "tls corpus: {refused} raw handshakes refused, {served} served ({} client setups), {probed} probed after replies, {raw_after} raw after a handshake",
        modes.len()
    );
    assert!(refused > 0 && served > 0 && probed > 0 && raw_after > 0);
    assert_eq!(modes.len(), 4, "client certificate x TLS 1.2/1.3");
}
