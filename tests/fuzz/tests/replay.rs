//! Replays every seed (corpus/<target>/) and every past finding
//! (regressions/<target>/) through its target, without afl: the targets'
//! assertions run as they do under the fuzzer. Part of `cargo test`.

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
    // mid data block: no probe
    let o = fuzzing::run(&[b"set a 0 0 5\r\nxy"]);
    assert_eq!(o.output, b"");
    assert_eq!(o.probe_at, None);
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
    // the chunking the conn target uses covers all the input
    let data = b"\x07get a b c\r\nset k 0 0 3\r\nabc\r\n";
    let c = corecached_fuzz::chunks(data);
    assert!(c.len() > 1);
    assert_eq!(c.concat(), &data[1..]);
}
