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

#[test]
fn regressions_pass_every_target() {
    replay("regressions");
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
