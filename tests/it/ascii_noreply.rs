//! `noreply`: nothing at all is written back -- not even errors. Each case is
//! followed by `version`, whose reply must be the very next bytes.
use crate::common;
use common::*;

fn silent(c: &mut Conn, cmd: &str) {
    c.send(format!("{cmd}version\r\n"));
    let l = c.line();
    assert!(
        l.starts_with("VERSION "),
        "after {:?} expected only VERSION, got {l:?}",
        show(cmd.as_bytes())
    );
}

#[test]
fn storage_commands() {
    let s = Server::start();
    let mut c = s.conn();
    silent(&mut c, "set k 1 0 1 noreply\r\na\r\n");
    silent(&mut c, "add k 0 0 1 noreply\r\nb\r\n"); // NOT_STORED hidden
    silent(&mut c, "add k2 0 0 1 noreply\r\nb\r\n");
    silent(&mut c, "replace k 2 0 1 noreply\r\nc\r\n");
    silent(&mut c, "replace nokey 0 0 1 noreply\r\nc\r\n");
    silent(&mut c, "append k 0 0 1 noreply\r\nd\r\n");
    silent(&mut c, "prepend k 0 0 1 noreply\r\ne\r\n");
    silent(&mut c, "append nokey 0 0 1 noreply\r\nd\r\n");
    silent(&mut c, "prepend nokey 0 0 1 noreply\r\ne\r\n");
    c.req(
        "get k k2 nokey\r\n",
        "VALUE k 2 3\r\necd\r\nVALUE k2 0 1\r\nb\r\nEND\r\n",
    );
    let (_, _, cas) = c.gets("k").unwrap();
    silent(&mut c, &format!("cas k 0 0 1 {} noreply\r\nx\r\n", cas + 1)); // EXISTS
    silent(&mut c, "cas nokey 0 0 1 1 noreply\r\nx\r\n"); // NOT_FOUND
    silent(&mut c, &format!("cas k 5 0 1 {cas} noreply\r\ny\r\n"));
    c.req("get k\r\n", "VALUE k 5 1\r\ny\r\nEND\r\n");
}

#[test]
fn other_commands() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("n", 0, 0, b"5");
    silent(&mut c, "incr n 10 noreply\r\n");
    silent(&mut c, "decr n 3 noreply\r\n");
    silent(&mut c, "incr nokey 1 noreply\r\n");
    silent(&mut c, "decr nokey 1 noreply\r\n");
    c.req("get n\r\n", "VALUE n 0 2\r\n12\r\nEND\r\n");
    silent(&mut c, "touch n 100 noreply\r\n");
    silent(&mut c, "touch nokey 100 noreply\r\n");
    silent(&mut c, "delete nokey noreply\r\n");
    silent(&mut c, "delete n noreply\r\n");
    c.req("get n\r\n", "END\r\n");
    c.set("n", 0, 0, b"5");
    silent(&mut c, "delete n 0 noreply\r\n");
    c.req("get n\r\n", "END\r\n");
    silent(&mut c, "verbosity 1 noreply\r\n");
    silent(&mut c, "verbosity 0 noreply\r\n");
    c.set("f", 0, 0, b"5");
    silent(&mut c, "flush_all noreply\r\n");
    c.req("get f\r\n", "END\r\n");
    silent(&mut c, "flush_all 0 noreply\r\n");
}

#[test]
fn errors_are_silent_too() {
    let s = Server::start();
    let mut c = s.conn();
    let k251 = "k".repeat(251);
    c.set("s", 0, 0, b"abc");
    silent(&mut c, "incr s 1 noreply\r\n"); // non-numeric value
    silent(&mut c, "incr s abc noreply\r\n"); // invalid delta
    silent(&mut c, "decr s -1 noreply\r\n");
    silent(&mut c, "touch s abc noreply\r\n"); // invalid exptime
    silent(&mut c, "delete s 5 noreply\r\n"); // bad delete format
    silent(&mut c, "flush_all abc noreply\r\n");
    // key too long; its data block is a silent command, so both servers are
    // silent: memcached runs it, corecached swallows it (never runs data)
    silent(
        &mut c,
        &format!("set {k251} 0 0 19 noreply\r\nverbosity 0 noreply\r\n"),
    );
    silent(&mut c, &format!("incr {k251} 1 noreply\r\n"));
    silent(&mut c, &format!("delete {k251} noreply\r\n"));
    silent(&mut c, &format!("touch {k251} 1 noreply\r\n"));
    silent(&mut c, "set k 0 0 3 noreply\r\nabc\rX"); // bad data chunk
    silent(&mut c, "set k 0 0 -1 noreply\r\n");
    // too large: error hidden, data swallowed
    let n = 1024 * 1024 + 10;
    let mut cmd = format!("set big 0 0 {n} noreply\r\n");
    cmd.push_str(&"b".repeat(n));
    cmd.push_str("\r\n");
    silent(&mut c, &cmd);
    // noreply does not silence what follows the failed command: memcached
    // runs the data line `x` (ERROR); corecached swallows the data block
    if is_memcached() {
        c.req("set k 0 abc 1 noreply\r\nx\r\n", "ERROR\r\n");
    } else {
        silent(&mut c, "set k 0 abc 1 noreply\r\nx\r\n");
    }
    // get does not take noreply: it is just another key
    c.req("get s noreply\r\n", "VALUE s 0 3\r\nabc\r\nEND\r\n");
    // nor does an unknown command
    c.req("bogus noreply\r\n", "ERROR\r\n");
    c.req("get s\r\n", "VALUE s 0 3\r\nabc\r\nEND\r\n");
}

#[test]
fn pipelined_noreply_burst() {
    let s = Server::start();
    let mut c = s.conn();
    let mut b = String::new();
    for i in 0..500 {
        let v = format!("val{i}");
        b.push_str(&format!("set key{i} {i} 0 {} noreply\r\n{v}\r\n", v.len()));
    }
    c.send(b);
    c.send("get key0 key250 key499\r\n");
    c.expect("VALUE key0 0 4\r\nval0\r\nVALUE key250 250 6\r\nval250\r\nVALUE key499 499 6\r\nval499\r\nEND\r\n");
}
