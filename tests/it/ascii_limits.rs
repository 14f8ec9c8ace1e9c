//! Limits and malformed input: key length, control characters, item size,
//! bad data chunks, over-long lines, the connection limit.
use crate::common;
use common::*;
use std::io::Write;
use std::time::Duration;

fn key(n: usize) -> String {
    "k".repeat(n)
}

#[test]
fn key_of_250_bytes_is_fine() {
    let s = Server::start();
    let mut c = s.conn();
    let k = key(250);
    c.req(format!("set {k} 1 0 2\r\nok\r\n"), "STORED\r\n");
    c.req(
        format!("get {k}\r\n"),
        format!("VALUE {k} 1 2\r\nok\r\nEND\r\n"),
    );
    c.req(format!("touch {k} 0\r\n"), "TOUCHED\r\n");
    c.req(format!("delete {k}\r\n"), "DELETED\r\n");
}

#[test]
fn key_of_251_bytes_is_refused_by_every_command() {
    let s = Server::start();
    let mut c = s.conn();
    let k = key(251);
    let bad = "CLIENT_ERROR bad command line format\r\n";
    // retrieval: only the error, even when other keys are valid hits
    c.set("a", 0, 0, b"1");
    for cmd in [
        format!("get {k}\r\n"),
        format!("get a {k} a\r\n"),
        format!("gets a {k}\r\n"),
        format!("gat 1 {k}\r\n"),
        format!("gats 1 a {k}\r\n"),
        format!("incr {k} 1\r\n"),
        format!("decr {k} 1\r\n"),
        format!("delete {k}\r\n"),
        format!("touch {k} 1\r\n"),
    ] {
        c.req(cmd, bad);
    }
    // storage: memcached does NOT swallow the data block -- the value line
    // that follows is parsed as a command (an unknown one here). corecached
    // swallows it (docs/COMPATIBILITY.md: data is never run as commands).
    let data_as_cmd = if common::is_memcached() {
        "ERROR\r\n"
    } else {
        ""
    };
    for cmd in ["set", "add", "replace", "append", "prepend"] {
        c.req(
            format!("{cmd} {k} 0 0 1\r\nx\r\n"),
            format!("{bad}{data_as_cmd}"),
        );
    }
    c.req(
        format!("cas {k} 0 0 1 1\r\nx\r\n"),
        format!("{bad}{data_as_cmd}"),
    );
    c.req(format!("set {k} 0 0 7\r\nversion\r\n"), bad);
    if common::is_memcached() {
        let v = c.line();
        assert!(v.starts_with("VERSION "), "{v:?}");
    }
    c.req("get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
}

#[test]
fn control_characters_inside_keys_are_key_bytes() {
    // memcached's ASCII tokenizer splits on spaces only.
    let s = Server::start();
    let mut c = s.conn();
    c.req("set a\x01b 0 0 1\r\nx\r\n", "STORED\r\n");
    c.req("get a\x01b\r\n", "VALUE a\x01b 0 1\r\nx\r\nEND\r\n");
    c.req("set t\tab 0 0 1\r\ny\r\n", "STORED\r\n");
    c.req("get t\tab\r\n", "VALUE t\tab 0 1\r\ny\r\nEND\r\n");
    c.req("get t\r\n", "END\r\n");
    c.req("set d\x7fe 0 0 1\r\nz\r\n", "STORED\r\n");
    c.req("get d\x7fe\r\n", "VALUE d\x7fe 0 1\r\nz\r\nEND\r\n");
}

#[test]
fn value_over_item_size_max_is_refused_and_swallowed() {
    let s = Server::start();
    let mut c = s.conn();
    let mib = 1024 * 1024;
    // a value comfortably under 1 MiB (minus per-item overhead) fits
    let ok = vec![b'o'; mib - 512];
    c.set("big", 3, 0, &ok);
    assert_eq!(c.get("big").unwrap(), (3, ok));
    // one byte over 1 MiB does not; the data block is swallowed and the
    // connection stays in sync
    let mut cmd = format!("set big 0 0 {}\r\n", mib + 1).into_bytes();
    cmd.extend(vec![b'x'; mib + 1]);
    cmd.extend_from_slice(b"\r\nget big\r\n");
    // memcached also drops the key's old value when a set is refused as too large
    c.req(cmd, "SERVER_ERROR object too large for cache\r\nEND\r\n");
    // much larger, sent in pieces, still swallowed exactly
    c.send(b"set big2 0 0 3000000\r\n");
    for _ in 0..3 {
        c.send(vec![b'y'; 1_000_000]);
    }
    c.send(b"\r\nversion\r\n");
    c.expect("SERVER_ERROR object too large for cache\r\nVERSION ");
    c.line();
    // too large with noreply: silent, still swallowed
    let mut cmd = format!("set big3 0 0 {} noreply\r\n", 2 * mib).into_bytes();
    cmd.extend(vec![b'z'; 2 * mib]);
    cmd.extend_from_slice(b"\r\nget big3\r\n");
    c.req(cmd, "END\r\n");
}

#[test]
fn too_large_append_keeps_old_value() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("k", 0, 0, b"v");
    let n = 1024 * 1024 + 1;
    let mut cmd = format!("append k 0 0 {n}\r\n").into_bytes();
    cmd.extend(vec![b'x'; n]);
    cmd.extend_from_slice(b"\r\nget k\r\n");
    c.req(
        cmd,
        "SERVER_ERROR object too large for cache\r\nVALUE k 0 1\r\nv\r\nEND\r\n",
    );
}

#[test]
fn item_size_max_flag_raises_the_limit() {
    let s = Server::with_args(&["-t", "2", "-I", "2m"]);
    let mut c = s.conn();
    let v = vec![b'q'; 1024 * 1024 + 300_000];
    c.set("big", 0, 0, &v);
    assert_eq!(c.get("big").unwrap().1, v);
    let n = 2 * 1024 * 1024 + 1;
    let mut cmd = format!("set big 0 0 {n}\r\n").into_bytes();
    cmd.extend(vec![b'x'; n]);
    cmd.extend_from_slice(b"\r\n");
    c.req(cmd, "SERVER_ERROR object too large for cache\r\n");
}

#[test]
fn negative_or_bad_length_is_a_format_error_without_swallow() {
    let s = Server::start();
    let mut c = s.conn();
    c.req(
        "set k 0 0 -1\r\nget k\r\n",
        "CLIENT_ERROR bad command line format\r\nEND\r\n",
    );
    c.req(
        "set k 0 0 abc\r\nget k\r\n",
        "CLIENT_ERROR bad command line format\r\nEND\r\n",
    );
    // A bad field with a readable length: memcached runs the data block as a
    // command (`ERROR` here); corecached swallows it.
    let data_as_cmd = if common::is_memcached() {
        "ERROR\r\n"
    } else {
        ""
    };
    c.req(
        "set k 0 abc 1\r\nx\r\n",
        format!("CLIENT_ERROR bad command line format\r\n{data_as_cmd}"),
    );
    c.req(
        "set k 18446744073709551616 0 1\r\nx\r\n",
        format!("CLIENT_ERROR bad command line format\r\n{data_as_cmd}"),
    );
    // too many tokens
    c.req(
        "set k 0 0 1 noreply extra\r\nx\r\n",
        format!("ERROR\r\n{data_as_cmd}"),
    );
    // a 6th token that is not "noreply" is ignored
    c.req("set k 0 0 1 bogus\r\nx\r\n", "STORED\r\n");
}

#[test]
fn bad_data_chunk() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("k", 0, 0, b"v1");
    // exactly <bytes>+2 are consumed; they must end in \r\n
    c.req(
        "set k 0 0 3\r\nabcXY\r\n",
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    );
    c.req(
        "set k 0 0 3\r\nabcd\r\n",
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    );
    c.req(
        "set k 0 0 3\r\nabc\rXget k\r\n",
        "CLIENT_ERROR bad data chunk\r\nVALUE k 0 2\r\nv1\r\nEND\r\n",
    );
    c.req(
        "set k 0 0 3\r\nab\r\nXget k\r\n",
        "CLIENT_ERROR bad data chunk\r\nVALUE k 0 2\r\nv1\r\nEND\r\n",
    );
    // a bare LF is not a valid data terminator
    c.req(
        "set k 0 0 1\nx\nget k\r\n",
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    );
    // noreply hides the error, but the leftover line is a new command
    c.req(
        "set k 0 0 3 noreply\r\nabcd\r\nget k\r\n",
        "ERROR\r\nVALUE k 0 2\r\nv1\r\nEND\r\n",
    );
    // the old value survived every failure
    c.req("get k\r\n", "VALUE k 0 2\r\nv1\r\nEND\r\n");
}

#[test]
fn short_partial_line_waits_for_more() {
    let s = Server::start();
    let mut c = s.conn();
    c.send(vec![b'x'; 1000]);
    c.expect_silence(Duration::from_millis(300));
    c.req("\r\n", "ERROR\r\n");
    c.send("get ");
    c.expect_silence(Duration::from_millis(200));
    c.req("nokey\r\n", "END\r\n");
}

#[test]
fn over_long_line_without_newline_closes_connection() {
    // memcached 1.6.18: more than 2048 bytes without a newline, for anything
    // but a get/gets, closes the connection without a reply.
    let s = Server::start();
    let mut c = s.conn();
    c.send(vec![b'x'; 5000]);
    assert_eq!(show(&c.read_to_close()), "");
    let mut c = s.conn();
    c.send(format!("set k 0 0 1 {}", "y".repeat(5000)));
    assert_eq!(show(&c.read_to_close()), "");
    // the server is fine afterwards
    let mut d = s.conn();
    d.req("get k\r\n", "END\r\n");
}

#[test]
fn long_get_line_arriving_in_pieces_is_fine() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("last", 0, 0, b"L");
    let mut line = String::from("get");
    for i in 0..3000 {
        line.push_str(&format!(" miss{i}"));
    }
    line.push_str(" last\r\n");
    let b = line.as_bytes();
    for chunk in b.chunks(4000) {
        c.send(chunk);
        std::thread::sleep(Duration::from_millis(30));
    }
    c.expect("VALUE last 0 1\r\nL\r\nEND\r\n");
}

/// Send `version` on a fresh connection; true if served, false if refused
/// with memcached's exact message and closed.
fn probe(s: &Server) -> (bool, Conn) {
    let mut c = s.conn();
    // a refused connection may already be closed: ignore write errors
    let _ = c.s.write_all(b"version\r\n");
    let first = c.line();
    if first.starts_with("VERSION ") {
        return (true, c);
    }
    assert_eq!(first, "ERROR Too many open connections");
    assert_eq!(show(&c.read_to_close()), "");
    (false, c)
}

#[test]
fn connection_limit() {
    // memcached counts -c against all of its file descriptors (listeners,
    // internal pipes), so fewer than 64 clients get in; the refused ones get
    // "ERROR Too many open connections\r\n" and are closed.
    let s = Server::with_args(&["-t", "2", "-c", "64"]);
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..80 {
        let (ok, c) = probe(&s);
        if ok {
            served += 1;
            held.push(c);
        } else {
            refused += 1;
        }
    }
    assert!((16..=64).contains(&served), "served {served}");
    assert!(refused >= 16, "refused {refused}");
    // served connections still work
    for c in held.iter_mut() {
        c.req("get x\r\n", "END\r\n");
    }
    // freeing slots lets new clients in again
    held.clear();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, _c) = probe(&s);
    assert!(ok, "a new connection must be served after others closed");
}
