//! Issue 9, protocol side: hostile text input, side by side with the real
//! memcached 1.6.18 (from PATH; these tests fail without it).
//!
//! - A storage line's data block is never run as commands: whatever is wrong
//!   with the line, when its length is one memcached would accept, the block
//!   is swallowed (memcached runs it as commands after most line errors: a
//!   deliberate difference, docs/COMPATIBILITY.md). Where memcached accepts
//!   a value (numbers wrap to 32 bits) we accept and store it the same way.
//! - An HTTP request line closes the connection without a reply.
//! - Numbers in gat/touch/verbosity/incr parse as memcached's safe_strto*.
//! - A multi-get line over the bound closes the connection however TCP cut it.
//! - No announced length makes a connection swallow gigabytes.

use crate::binary_wire;
use crate::common;

use binary_wire::{op, set, Client, Pkt, Reply, NOOP_OPAQUE};
use common::{exchange, mask_version, show, Conn, Server};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// Send `script` on a fresh connection, then `mn` (unless the script closes
/// the connection); return what came back (VERSION lines masked) and whether
/// the server closed the connection.
fn run(s: &Server, script: &[u8]) -> (String, bool) {
    let mut req = script.to_vec();
    req.extend_from_slice(b"mn\r\n");
    let (out, closed) = exchange(
        s,
        &req,
        |o| o.ends_with(b"MN\r\n"),
        Duration::from_millis(300),
        Duration::from_secs(10),
    );
    (mask_version(&out), closed)
}

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\r\\n", "\r\n")
        .replace("\\t", "\t")
        .into_bytes()
}

/// Each script gives byte-identical replies on both servers (VERSION masked).
fn same_as_memcached(scripts: &[&str]) {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let mut bad = Vec::new();
    for sc in scripts {
        let b = unescape(sc);
        let want = run(&mc, &b);
        let got = run(&cc, &b);
        if want != got {
            bad.push(format!(
                "{sc}\n  memcached:  {want:?}\n  corecached: {got:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

/// Values memcached accepts (after wrapping to 32 bits) are accepted and
/// stored alike; lengths it refuses get its error and no swallow.
#[test]
fn storage_numbers_like_memcached() {
    same_as_memcached(&[
        // exptime 2^31 wraps to -2^31: stored (already expired), the value
        // `flush_all` is data, the canary survives.
        r"set canary 0 0 1\r\nc\r\nset k 0 2147483648 9\r\nflush_all\r\nget k\r\nget canary\r\n",
        r"set k 0 4294967306 1\r\nx\r\nget k\r\n",
        r"set k 0 -5 1\r\nx\r\nget k\r\n",
        r"set k 4294967296 0 1\r\nx\r\nget k\r\n",
        r"set k 18446744073709551615 0 1\r\nx\r\nget k\r\n",
        r"set k -10000000000000000000 0 1\r\nx\r\nget k\r\n",
        r"set k +7 +0 +3\r\nabc\r\nget k\r\n",
        r"set k 0 0 3\tjunk\r\nabc\r\nget k\r\n",
        // length 2^32 + 1 wraps to 1
        r"set k 0 0 4294967297\r\nx\r\nget k\r\n",
        r"cas k 0 0 1 +0\r\nx\r\n",
        r"append k 0 99999999999 1\r\ny\r\nget k\r\n",
        // lengths memcached refuses without reading a block: it stays in sync
        r"set k 0 0 2147483646\r\nversion\r\n",
        r"set k 0 0 2147483647\r\nversion\r\n",
        r"set k 0 0 2147483648\r\nversion\r\n",
        r"set k 0 0 -1\r\nversion\r\n",
        r"add k 0 0 -2147483649\r\nversion\r\n",
        r"set k 0 0 18446744073709551616\r\nversion\r\n",
        r"set k 0 0 3x\r\nversion\r\n",
        r"set k 0 0 2147483646 noreply\r\nversion\r\n",
        r"ms k 2147483646\r\nversion\r\n",
        r"ms k -1\r\nversion\r\n",
        r"ms k 4294967299 T99999999999\r\nabc\r\nmg k v\r\n",
    ]);
}

/// Every storage verb and every bad field: the reply is memcached's, the
/// announced block is swallowed (memcached runs it: `delete canary` here).
#[test]
fn data_block_of_a_refused_line_is_never_a_command() {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let data = "delete canary"; // 13 bytes
    let k251 = "k".repeat(251);
    let fmt = "CLIENT_ERROR bad command line format\r\n";
    let flags17 = "c f s t k h l u q P L O1 T5 N5 R5 I Q";
    let mut cases: Vec<(String, &str)> = Vec::new();
    for verb in ["set", "add", "replace", "append", "prepend"] {
        for args in [
            format!("{k251} 0 0 13"),
            "k x 0 13".into(),
            "k -1 0 13".into(),
            "k 18446744073709551616 0 13".into(),
            "k 0 x 13".into(),
            "k 0 9223372036854775808 13".into(),
            "k 0 -9223372036854775809 13".into(),
        ] {
            cases.push((format!("{verb} {args}"), fmt));
        }
        cases.push((format!("{verb} k 0 0 13 noreply extra"), "ERROR\r\n"));
        cases.push((format!("{verb} k x 0 13 noreply"), ""));
    }
    cases.push(("cas k 0 0 13 x".into(), fmt));
    cases.push(("cas k 0 0 13 -1".into(), fmt));
    cases.push(("cas k 0 0 13 18446744073709551616".into(), fmt));
    cases.push((format!("cas {k251} 0 0 13 1"), fmt));
    cases.push(("cas k 0 0 13".into(), "ERROR\r\n"));
    cases.push(("cas k 0 0 13 1 noreply x".into(), "ERROR\r\n"));
    cases.push((format!("ms {k251} 13"), fmt));
    cases.push((
        format!("ms k 13 {flags17}"),
        "CLIENT_ERROR options flags too long\r\n",
    ));
    cases.push(("ms k 13 F-1".into(), fmt));
    cases.push(("ms k 13 Zbad".into(), "CLIENT_ERROR invalid flag\r\n"));
    let mut bad = Vec::new();
    for (line, want) in &cases {
        let script = format!("set canary 0 0 1\r\nc\r\n{line}\r\n{data}\r\nget canary\r\n");
        let (m, _) = run(&mc, script.as_bytes());
        let (c, closed) = run(&cc, script.as_bytes());
        // memcached: the same reply to the line (noreply: none)
        let m_rest = m.strip_prefix("STORED\r\n").unwrap_or(&m);
        if !m_rest.starts_with(want) {
            bad.push(format!(
                "{line}: memcached said {m:?}, expected {want:?} first"
            ));
        }
        let c_want = format!("STORED\r\n{want}VALUE canary 0 1\r\nc\r\nEND\r\nMN\r\n");
        if c != c_want || closed {
            bad.push(format!(
                "{line}:\n  want {c_want:?}\n   got {c:?} closed={closed}"
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

/// memcached's HTTP rule: any line whose command it does not know and whose
/// last token starts with `HTTP/` closes the connection; nothing after it
/// runs (the POST body's `set pwned` is not stored).
#[test]
fn http_request_lines_close_the_connection() {
    same_as_memcached(&[
        r"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        r"POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\nset pwned 0 0 1\r\nx\r\n",
        r"get pwned\r\n",
        r"PUT /a HTTP/1.0\r\nset pwned 0 0 1\r\nx\r\n",
        r"get pwned\r\n",
        r"HTTP/1.1\r\nversion\r\n",
        r"foo bar HTTP/9\r\nversion\r\n",
        r"mzz HTTP/1.1\r\nversion\r\n",
        r"Version HTTP/1.1\r\nversion\r\n",
        // a later line, not only the first
        // (noreply: memcached drops the replies queued before the close;
        // corecached sends them -- docs/COMPATIBILITY.md)
        r"set a 0 0 1 noreply\r\nx\r\nOPTIONS * HTTP/1.1\r\nversion\r\n",
        r"get a\r\n",
        // not the rule: short or dispatched commands, other last tokens
        r"X HTTP/1.1\r\nversion\r\n",
        r"gx / HTTP/1.1\r\nversion\r\n",
        r"mz HTTP/1.1\r\nversion\r\n",
        r"GET / http/1.1\r\nversion\r\n",
        r"GET / HTTP/1.1 x\r\nversion\r\n",
        r"get / HTTP/1.1\r\n",
        // memcached's tokenizer keeps 23 tokens: the 23rd decides
        r"GET a b c d e f g h i j k l m n o p q r s t u HTTP/1.1 x y\r\nversion\r\n",
        r"GET a b c d e f g h i j k l m n o p q r s t u v HTTP/1.1\r\nversion\r\n",
    ]);
}

/// Numbers read by strtol/strtoul kept to 32 bits, as memcached does.
#[test]
fn wrapped_numbers_in_other_commands() {
    same_as_memcached(&[
        r"set k 0 0 1\r\nx\r\ngat 4294967296 k\r\ngat 4294967297 k nokey\r\ntouch k 4294967296\r\nget k\r\n",
        r"gat 9999999999999999999999 k\r\ntouch k -9223372036854775809\r\n",
        r"verbosity 99999999999999\r\nverbosity 18446744073709551616\r\nverbosity -1\r\nverbosity 1 noreply\r\n",
        r"set n 0 0 1\r\n5\r\nincr n +5\r\ndecr n -0\r\nincr n -1\r\n",
        r"flush_all 4294967296\r\nflush_all -0\r\n",
        // ma under q: memcached hides the update of an existing item only
        r"ma nokey q N0\r\nma nokey2 q N0 v\r\nma nokey3 q\r\nma nokey q\r\nma nokey q v\r\nmg nokey v\r\nmg nokey2 v\r\n",
        r"ma viv q N0 J5 v\r\nmg viv v\r\nma viv q D3 M-\r\nmg viv v\r\n",
    ]);
}

/// Connect, send `bytes` (in `chunk`-byte writes 5 ms apart, or at once),
/// and report whether the server answered anything before closing.
fn get_line_outcome(s: &Server, bytes: &[u8], chunk: Option<usize>) -> (Vec<u8>, bool) {
    let mut c = s.conn();
    match chunk {
        None => {
            let _ = c.s.write_all(bytes);
        }
        Some(n) => {
            for piece in bytes.chunks(n) {
                if c.s.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let _ = c.s.write_all(b"version\r\n");
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(9).any(|w| w == b"VERSION 1") {
                    return (out, false);
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(e) => panic!("no answer and no close: {e}; got {:?}", show(&out)),
        }
    }
}

/// A multi-get line whose newline lies beyond 1 MiB closes the connection
/// with no reply, whether it arrives in one write or in 64 KiB pieces; one
/// just under the bound is answered both ways.
#[test]
fn multiget_line_bound_does_not_depend_on_tcp_splits() {
    if common::skip_unless_corecached("memcached's multi-get line is unbounded") {
        return;
    }
    let s = Server::corecached(&["-t", "2"]);
    let mut c = s.conn();
    c.set("last", 0, 0, b"L");
    let build = |target: usize| {
        let mut line = b"get".to_vec();
        let mut i = 0;
        while line.len() + 12 < target {
            line.extend_from_slice(format!(" m{i:09}").as_bytes());
            i += 1;
        }
        line.extend_from_slice(b" last\r\n");
        line
    };
    let over = build((1 << 20) + 100_000);
    let under = build((1 << 20) - 1000);
    assert!(over.len() > (1 << 20) + 1 && under.len() < 1 << 20);
    for chunk in [None, Some(64 * 1024)] {
        let (out, closed) = get_line_outcome(&s, &over, chunk);
        assert!(
            closed && out.is_empty(),
            "over the bound, chunk {chunk:?}: closed={closed} got {:?}",
            show(&out)
        );
        let (out, closed) = get_line_outcome(&s, &under, chunk);
        assert!(
            !closed && out.starts_with(b"VALUE last 0 1\r\nL\r\nEND\r\nVERSION "),
            "under the bound, chunk {chunk:?}: closed={closed} got {:?}",
            show(&out)
        );
    }
    c.req("get last\r\n", "VALUE last 0 1\r\nL\r\nEND\r\n");
}

/// A data block announced far beyond -I is refused with memcached's reply and
/// the connection is closed at once, instead of swallowing 2 GiB first
/// (memcached swallows up to 2 GiB). One within the bound is still swallowed.
#[test]
fn huge_announced_block_closes_instead_of_swallowing_gigabytes() {
    if common::skip_unless_corecached("memcached swallows up to 2 GiB") {
        return;
    }
    let s = Server::corecached(&["-t", "2"]);
    let too_large = "SERVER_ERROR object too large for cache\r\n";
    for line in [
        "set k 0 0 2147483645\r\nversion\r\n",
        "ms k 2147483645\r\nversion\r\n",
        // -I (1 MiB) + 16 MiB is the largest block swallowed
        "set k 0 0 17825791\r\nversion\r\n",
    ] {
        let mut c = s.conn();
        let t0 = Instant::now();
        c.send(line);
        let got = c.read_to_close();
        assert_eq!(show(&got), show(too_large.as_bytes()), "{line:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{line:?} closed late"
        );
    }
    // a bad field with a huge length: the error, then close
    let mut c = s.conn();
    c.send("set k x 0 2000000000\r\nversion\r\n");
    assert_eq!(
        show(&c.read_to_close()),
        "CLIENT_ERROR bad command line format\\r\\n"
    );
    // exactly -I + 16 MiB with its CRLF: swallowed, the connection in sync
    let mut c: Conn = s.conn();
    let n = (17 << 20) - 2;
    c.send(format!("set k 0 0 {n}\r\n"));
    c.send(vec![b'v'; n]);
    c.req("\r\nget k\r\n", format!("{too_large}END\r\n"));
}

/// Stat packets and errors up to the Noop that follows one binary Stat.
fn bin_stat(c: &mut Client, key: &str) -> Vec<(u8, u16, Vec<u8>, Vec<u8>)> {
    c.batch(&[Pkt::new(op::STAT).key(key.as_bytes())])
        .into_iter()
        .map(|r: Reply| (r.opcode, r.status, r.key, r.value))
        .collect()
}

/// Binary Stat with `detail ...` or an unknown group: every request gets
/// memcached's answer (before the fix `detail*` got none and the client
/// waited forever). memcached matches reset/settings/detail as prefixes.
#[test]
fn binary_stat_groups_like_memcached() {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let mut m = Client::connect(mc.port);
    let mut c = Client::connect(cc.port);
    let mut bad = Vec::new();
    for key in [
        "detail",
        "detail dump",
        "detail on",
        "detail off",
        "detailx",
        "detail  on",
        "detail onx",
        "detail dumpx",
        "bogus",
        "reset",
        "resetfoo",
        "slabsX",
        "sizes",
        "sizes ",
        "conns",
        "itemsX",
    ] {
        let want = bin_stat(&mut m, key);
        let got = bin_stat(&mut c, key);
        if want != got {
            bad.push(format!(
                "{key:?}\n  memcached  {want:?}\n  corecached {got:?}"
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

/// A binary body announced absurdly large (0xFFFFFFFF and friends): the
/// request gets memcached's status, then the connection closes at once
/// instead of swallowing gigabytes (memcached answers the Noop that follows
/// for bodies of 2 GiB or more -- it reads the length as negative -- and
/// swallows anything below). Either way the client is never left waiting.
#[test]
fn binary_absurd_body_is_answered_then_closed() {
    if common::skip_unless_corecached("memcached swallows or misreads these bodies") {
        return;
    }
    let s = Server::corecached(&["-t", "2"]);
    let noop = Pkt::new(op::NOOP).opaque(NOOP_OPAQUE);
    for (name, p, status) in [
        (
            "set 4 GiB",
            set(op::SET, b"k", b"", 0, 0).bodylen(u32::MAX),
            0x03,
        ),
        (
            "set 2 GiB",
            set(op::SET, b"k", b"", 0, 0).bodylen(0x7fff_ffff),
            0x03,
        ),
        (
            "append 4 GiB",
            Pkt::new(op::APPEND).key(b"k").bodylen(u32::MAX),
            0x03,
        ),
        (
            "sasl auth 4 GiB",
            Pkt::new(op::SASL_AUTH).key(b"PLAIN").bodylen(u32::MAX),
            0x81,
        ),
        (
            "unknown opcode 4 GiB",
            Pkt::new(0x50).key(b"k").bodylen(u32::MAX),
            0x81,
        ),
    ] {
        let mut c = Client::connect(s.port);
        let t0 = Instant::now();
        let mut b = p.bytes();
        b.extend(noop.bytes());
        c.send_raw(&b);
        let r = c
            .read()
            .unwrap_or_else(|| panic!("{name}: closed without a reply"));
        assert_eq!((r.opcode, r.status), (p.opcode, status), "{name}");
        assert!(
            c.read().is_none(),
            "{name}: expected the connection to close"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "{name}: closed late");
    }
    // a body just over -I is still swallowed and the Noop answered
    let mut c = Client::connect(s.port);
    let big = vec![b'x'; (1 << 20) + 1];
    let r = c.batch(&[set(op::SET, b"k", &big, 0, 0)]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 0x03);
}
