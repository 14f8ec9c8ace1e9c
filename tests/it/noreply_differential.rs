//! `noreply` on malformed text commands, and the HTTP-close rule's edges,
//! side by side with the real memcached 1.6.18 (from PATH; these tests fail
//! without it).
//!
//! memcached decides `noreply` from the last token as soon as the token count
//! is one the command accepts, before it reads any field (`set_noreply_maybe`
//! in proto_text.c). So `set k 0 0 noreply` or `incr k noreply` is an error
//! nobody hears: a reply there would be read by a client as the reply to its
//! next request. Every script ends in `version` (no `mn`): the bytes before
//! the VERSION line are all the replies the malformed line got.

use crate::common;

use common::{exchange, mask_version, Conn, Server};
use std::time::Duration;

/// Send `script` + `version\r\n` on a fresh connection; return what came
/// back up to and including the VERSION line (its text masked), and whether
/// the server closed the connection.
fn run(s: &Server, script: &str) -> (String, bool) {
    let has_version = |o: &[u8]| {
        String::from_utf8_lossy(o)
            .split_inclusive("\r\n")
            .any(|l| l.starts_with("VERSION ") && l.ends_with("\r\n"))
    };
    let (out, closed) = exchange(
        s,
        format!("{script}version\r\n").as_bytes(),
        has_version,
        Duration::from_millis(200),
        Duration::from_secs(5),
    );
    (mask_version(&out), closed)
}

/// Each `(script, want)`: both servers answer `want` (before the masked
/// VERSION line) and stay open, or both close when `want` is `None`.
fn check(cases: &[(String, Option<&str>)]) {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let mut bad = Vec::new();
    for (script, want) in cases {
        let expect = match want {
            Some(w) => (format!("{w}VERSION x\r\n"), false),
            None => (String::new(), true),
        };
        for (name, s) in [("memcached", &mc), ("corecached", &cc)] {
            let got = run(s, script);
            if got != expect {
                bad.push(format!(
                    "{script:?}\n  {name}: {got:?}\n  expected: {expect:?}"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

const FMT: &str = "CLIENT_ERROR bad command line format\r\n";

/// Every text command that takes `noreply`: a bad field with `noreply` as
/// the last token is silent; where memcached does not read `noreply` (a
/// wrong count, `noreply` not last, `delete noreply`), the reply is sent.
#[test]
fn bad_fields_under_noreply_are_silent_as_in_memcached() {
    let k251 = "k".repeat(251);
    let mut cases: Vec<(String, Option<&str>)> = Vec::new();
    let mut silent = |s: String| cases.push((s, Some("")));
    for verb in ["set", "add", "replace", "append", "prepend"] {
        // `noreply` where the length belongs: no block is read
        silent(format!("{verb} k 0 0 noreply\r\n"));
        silent(format!("{verb} k x 0 noreply\r\n"));
        silent(format!("{verb} {k251} 0 0 noreply\r\n"));
        silent(format!("{verb} k 0 0 -1 noreply\r\n"));
        silent(format!("{verb} k 0 0 2147483646 noreply\r\n"));
    }
    // `noreply` where the cas belongs; the valid length announces a block,
    // whose bytes are a silent command for memcached (which runs it) and
    // silently swallowed by corecached (docs/COMPATIBILITY.md)
    silent("cas k 0 0 17 noreply\r\ndelete zz noreply\r\n".into());
    silent(format!("cas {k251} 0 0 noreply noreply\r\n"));
    silent("cas k 0 0 x noreply\r\n".into());
    for verb in ["incr", "decr"] {
        silent(format!("{verb} k noreply\r\n"));
        silent(format!("{verb} k -1 noreply\r\n"));
        silent(format!("{verb} {k251} noreply\r\n"));
        silent(format!("{verb} {k251} 1 noreply\r\n"));
    }
    silent("touch k noreply\r\n".into());
    silent("touch k x noreply\r\n".into());
    silent(format!("touch {k251} noreply\r\n"));
    silent("delete k x noreply\r\n".into());
    silent("delete k noreply noreply\r\n".into());
    silent("delete k 1 noreply\r\n".into());
    silent(format!("delete {k251} noreply\r\n"));
    silent(format!("delete {k251} 0 noreply\r\n"));
    silent("flush_all x noreply\r\n".into());
    silent("flush_all noreply noreply\r\n".into());
    silent("verbosity noreply\r\n".into());
    silent("verbosity x noreply\r\n".into());
    // Replies memcached does send: the count is wrong (`ERROR` comes before
    // `noreply` is looked at), or `noreply` is not the last token.
    let mut answered = |s: String, w: &'static str| cases.push((s, Some(w)));
    for verb in ["set", "add", "replace", "append", "prepend"] {
        answered(format!("{verb} k 0 noreply\r\n"), "ERROR\r\n");
        answered(format!("{verb} k 0 0 noreply 1\r\n"), FMT);
        answered(format!("{verb} k 0 0 noreply x y\r\n"), "ERROR\r\n");
    }
    answered("cas k 0 0 noreply\r\n".into(), "ERROR\r\n");
    answered("cas k 0 0 noreply 1\r\n".into(), FMT);
    answered("incr noreply\r\n".into(), "ERROR\r\n");
    answered(
        "incr k noreply 1\r\n".into(),
        "CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    answered("touch noreply\r\n".into(), "ERROR\r\n");
    answered(
        "touch k noreply 1\r\n".into(),
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    // only the key: memcached does not look for `noreply`
    answered("delete noreply\r\n".into(), "NOT_FOUND\r\n");
    answered(
        "set noreply 0 0 1\r\nx\r\ndelete noreply\r\n".into(),
        "STORED\r\nDELETED\r\n",
    );
    answered(
        "delete k noreply 0\r\n".into(),
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
    );
    answered(
        "flush_all noreply x\r\n".into(),
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    answered("verbosity noreply x\r\n".into(), FMT);
    check(&cases);
}

/// corecached only (the documented difference): the block announced by a
/// refused `cas ... noreply` line is swallowed silently, never run.
#[test]
fn block_of_a_silent_refused_line_is_swallowed() {
    let s = Server::corecached(&["-t", "2"]);
    let mut c = Conn::connect(s.addr());
    // the reviewer's input: `cas k 0 0 1 noreply` and its 1-byte block
    c.send("cas k 0 0 1 noreply\r\nx\r\nversion\r\n");
    let l = c.line();
    assert!(l.starts_with("VERSION "), "got {l:?}");
    // the block `version` is data: one VERSION, from the real command
    c.send("set k x 0 7 noreply\r\nversion\r\nversion\r\nmn\r\n");
    let l = c.line();
    assert!(l.starts_with("VERSION "), "got {l:?}");
    assert_eq!(c.line(), "MN");
}

/// The HTTP rule's edges: `misbehave` exists only in memcached's debug
/// builds, so in 1.6.18 as shipped it is an unknown command and an HTTP
/// line with it closes; `bget` is memcached's alias of `get`; commands it
/// dispatches (`lru_crawler`, `watch`, `lru`, `extstore`) answer `ERROR`.
#[test]
fn http_rule_edges_like_memcached() {
    let cases: Vec<(String, Option<&str>)> = vec![
        ("misbehave HTTP/1.1\r\n".into(), None),
        ("misbehave / HTTP/1.0\r\n".into(), None),
        ("misbehave\r\n".into(), Some("ERROR\r\n")),
        ("bget k\r\n".into(), Some("END\r\n")),
        ("bget HTTP/1.1\r\n".into(), Some("END\r\n")),
        ("bget\r\n".into(), Some("ERROR\r\n")),
        (
            "set k 0 0 1\r\nx\r\nbget k j\r\n".into(),
            Some("STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"),
        ),
        ("lru_crawler HTTP/1.1\r\n".into(), Some("ERROR\r\n")),
        ("watch HTTP/1.1\r\n".into(), Some("ERROR\r\n")),
        ("lru HTTP/1.1\r\n".into(), Some("ERROR\r\n")),
        ("extstore HTTP/1.1\r\n".into(), Some("ERROR\r\n")),
    ];
    check(&cases);
}
