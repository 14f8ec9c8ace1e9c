//! Storage, retrieval and arithmetic commands of memcached's ASCII protocol,
//! checked byte for byte over raw TCP.
use crate::common;
use common::*;

#[test]
fn get_miss_and_hit() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("get nokey\r\n", "END\r\n");
    c.req("set k1 5 0 3\r\nabc\r\n", "STORED\r\n");
    c.req("get k1\r\n", "VALUE k1 5 3\r\nabc\r\nEND\r\n");
    // LF-only terminators are accepted on command lines.
    c.req("get k1\n", "VALUE k1 5 3\r\nabc\r\nEND\r\n");
    // Extra spaces between tokens are ignored.
    c.req("get   k1  \r\n", "VALUE k1 5 3\r\nabc\r\nEND\r\n");
    // Empty value.
    c.req("set empty 0 0 0\r\n\r\n", "STORED\r\n");
    c.req("get empty\r\n", "VALUE empty 0 0\r\n\r\nEND\r\n");
}

#[test]
fn get_many_keys_in_order_with_duplicates_and_misses() {
    let s = Server::start();
    let mut c = s.conn();
    let mut want = Vec::new();
    let mut line = String::from("get");
    for i in 0..100 {
        let k = format!("key:{i}");
        if i % 3 != 0 {
            c.set(&k, i, 0, format!("v{i}").as_bytes());
            want.extend_from_slice(
                format!("VALUE {k} {i} {}\r\nv{i}\r\n", format!("v{i}").len()).as_bytes(),
            );
        }
        line.push(' ');
        line.push_str(&k);
    }
    // duplicate key at the end is answered twice
    line.push_str(" key:1\r\n");
    want.extend_from_slice(b"VALUE key:1 1 2\r\nv1\r\n");
    want.extend_from_slice(b"END\r\n");
    c.req(line, want);
}

#[test]
fn get_thousands_of_keys_on_one_line() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("present", 0, 0, b"here");
    let mut line = String::from("get");
    for i in 0..5000 {
        line.push_str(&format!(" absent-key-number-{i}"));
    }
    line.push_str(" present\r\n");
    assert!(line.len() > 100_000);
    c.req(line, "VALUE present 0 4\r\nhere\r\nEND\r\n");
}

#[test]
fn gets_returns_cas_that_changes_on_every_write() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("a", 1, 0, b"x");
    c.set("b", 2, 0, b"yy");
    let (_, _, ca) = c.gets("a").unwrap();
    let (_, _, cb) = c.gets("b").unwrap();
    assert_ne!(ca, cb);
    // multi-key gets
    c.req(
        "gets a nokey b\r\n",
        format!("VALUE a 1 1 {ca}\r\nx\r\nVALUE b 2 2 {cb}\r\nyy\r\nEND\r\n"),
    );
    c.set("a", 1, 0, b"x");
    let (_, _, ca2) = c.gets("a").unwrap();
    assert_ne!(ca, ca2, "cas must change on overwrite");
    c.req("append a 0 0 1\r\nz\r\n", "STORED\r\n");
    let (_, v, ca3) = c.gets("a").unwrap();
    assert_eq!(v, b"xz");
    assert_ne!(ca2, ca3);
    c.req(
        "incr b 0\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
}

#[test]
fn flags_full_u32_range() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("set f 4294967295 0 1\r\nx\r\n", "STORED\r\n");
    c.req("get f\r\n", "VALUE f 4294967295 1\r\nx\r\nEND\r\n");
    c.req("set f 0 0 1\r\nx\r\n", "STORED\r\n");
    c.req("get f\r\n", "VALUE f 0 1\r\nx\r\nEND\r\n");
    // negative flags are a command-line error; memcached then runs the data
    // line as a command (ERROR), corecached swallows it
    let data_as_cmd = if is_memcached() { "ERROR\r\n" } else { "" };
    c.req(
        "set f -1 0 1\r\nx\r\n",
        format!("CLIENT_ERROR bad command line format\r\n{data_as_cmd}"),
    );
    c.req(
        "set f abc 0 1\r\nx\r\n",
        format!("CLIENT_ERROR bad command line format\r\n{data_as_cmd}"),
    );
}

#[test]
fn binary_values_round_trip() {
    let s = Server::start();
    let mut c = s.conn();
    let val: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    c.set("bin", 0, 0, &val);
    assert_eq!(c.get("bin").unwrap().1, val);
    // a value containing CRLF sequences inside
    let v2 = b"\r\n\r\nEND\r\nVALUE x 0 1\r\n";
    c.set("crlf", 7, 0, v2);
    assert_eq!(c.get("crlf").unwrap(), (7, v2.to_vec()));
}

#[test]
fn add_replace_outcomes() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("add k 1 0 1\r\na\r\n", "STORED\r\n");
    c.req("add k 2 0 1\r\nb\r\n", "NOT_STORED\r\n");
    c.req("get k\r\n", "VALUE k 1 1\r\na\r\nEND\r\n");
    c.req("replace nokey 0 0 1\r\nb\r\n", "NOT_STORED\r\n");
    c.req("get nokey\r\n", "END\r\n");
    c.req("replace k 3 0 2\r\nbb\r\n", "STORED\r\n");
    c.req("get k\r\n", "VALUE k 3 2\r\nbb\r\nEND\r\n");
}

#[test]
fn append_prepend_outcomes_keep_flags() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("append nokey 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.req("prepend nokey 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.req("get nokey\r\n", "END\r\n");
    c.req("set k 9 0 3\r\nmid\r\n", "STORED\r\n");
    // flags and exptime of append/prepend are ignored
    c.req("append k 1 0 4\r\n_end\r\n", "STORED\r\n");
    c.req("prepend k 2 0 6\r\nstart_\r\n", "STORED\r\n");
    c.req("get k\r\n", "VALUE k 9 13\r\nstart_mid_end\r\nEND\r\n");
    c.req("append k 0 0 0\r\n\r\n", "STORED\r\n");
    c.req("get k\r\n", "VALUE k 9 13\r\nstart_mid_end\r\nEND\r\n");
}

#[test]
fn cas_all_outcomes() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("cas nokey 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
    c.set("k", 3, 0, b"v1");
    let (_, _, cas) = c.gets("k").unwrap();
    c.req(
        format!("cas k 4 0 2 {}\r\nv0\r\n", cas + 1000),
        "EXISTS\r\n",
    );
    c.req(format!("cas k 4 0 2 {cas}\r\nv2\r\n"), "STORED\r\n");
    c.req("get k\r\n", "VALUE k 4 2\r\nv2\r\nEND\r\n");
    // the old cas is now stale
    c.req(format!("cas k 4 0 2 {cas}\r\nv3\r\n"), "EXISTS\r\n");
    let (_, _, cas2) = c.gets("k").unwrap();
    assert_ne!(cas, cas2);
    c.req("delete k\r\n", "DELETED\r\n");
    c.req(format!("cas k 0 0 1 {cas2}\r\nx\r\n"), "NOT_FOUND\r\n");
    // missing cas unique -> ERROR; memcached runs the data line (another
    // ERROR), corecached swallows it
    let data_as_cmd = if is_memcached() { "ERROR\r\n" } else { "" };
    c.req("cas k 0 0 1\r\nx\r\n", format!("ERROR\r\n{data_as_cmd}"));
    c.req(
        "cas k 0 0 1 abc\r\nx\r\n",
        format!("CLIENT_ERROR bad command line format\r\n{data_as_cmd}"),
    );
}

#[test]
fn delete_forms() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("delete k\r\n", "NOT_FOUND\r\n");
    c.set("k", 0, 0, b"v");
    c.req("delete k\r\n", "DELETED\r\n");
    c.req("get k\r\n", "END\r\n");
    // legacy zero hold time is accepted
    c.set("k", 0, 0, b"v");
    c.req("delete k 0\r\n", "DELETED\r\n");
    c.req("delete k 0\r\n", "NOT_FOUND\r\n");
    // a non-zero hold time is refused (memcached 1.4+)
    c.set("k", 0, 0, b"v");
    c.req(
        "delete k 5\r\n",
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
    );
    c.req(
        "delete k x\r\n",
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
    );
    c.req("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n");
    c.req("delete\r\n", "ERROR\r\n");
    c.req("delete k 0 noreply\r\n", "");
    c.req("get k\r\n", "END\r\n");
}

#[test]
fn incr_decr_basics_and_errors() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("incr nokey 1\r\n", "NOT_FOUND\r\n");
    c.req("decr nokey 1\r\n", "NOT_FOUND\r\n");
    c.set("n", 5, 0, b"10");
    c.req("incr n 5\r\n", "15\r\n");
    c.req("decr n 3\r\n", "12\r\n");
    c.req("incr n 0\r\n", "12\r\n");
    // decr floors at zero
    c.req("decr n 100\r\n", "0\r\n");
    c.req("get n\r\n", "VALUE n 5 2\r\n0 \r\nEND\r\n");
    c.req(
        "incr n abc\r\n",
        "CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    c.req(
        "incr n -1\r\n",
        "CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    c.req(
        "incr n 18446744073709551616\r\n",
        "CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    c.req("incr n\r\n", "ERROR\r\n");
    c.req("incr\r\n", "ERROR\r\n");
    c.set("s", 0, 0, b"abc");
    c.req(
        "incr s 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
    c.req(
        "decr s 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
    // flags are kept
    c.set("f", 77, 0, b"1");
    c.req("incr f 1\r\n", "2\r\n");
    c.req("get f\r\n", "VALUE f 77 1\r\n2\r\nEND\r\n");
}

#[test]
fn incr_wraps_at_64_bits() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("n", 0, 0, b"18446744073709551615");
    c.req("incr n 1\r\n", "0\r\n");
    // memcached rewrites a shorter result in place, padded with spaces to the
    // old length
    c.req(
        "get n\r\nEND\r\n",
        "VALUE n 0 20\r\n0                   \r\nEND\r\nERROR\r\n",
    );
    c.set("m", 0, 0, b"18446744073709551610");
    c.req("incr m 10\r\n", "4\r\n");
    c.set("big", 0, 0, b"18446744073709551614");
    c.req("incr big 1\r\n", "18446744073709551615\r\n");
}

#[test]
fn incr_length_changes() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("n", 3, 0, b"99");
    c.req("incr n 1\r\n", "100\r\n");
    c.req("get n\r\n", "VALUE n 3 3\r\n100\r\nEND\r\n");
    c.req("incr n 999900\r\n", "1000000\r\n");
    c.req("get n\r\n", "VALUE n 3 7\r\n1000000\r\nEND\r\n");
    c.req("decr n 999999\r\n", "1\r\n");
    c.req("get n\r\n", "VALUE n 3 7\r\n1      \r\nEND\r\n");
    // a value that was padded with spaces still counts as numeric
    c.req("incr n 41\r\n", "42\r\n");
    c.req("get n\r\n", "VALUE n 3 7\r\n42     \r\nEND\r\n");
    // leading/trailing space in a stored number is accepted
    c.set("sp", 0, 0, b" 7");
    c.req("incr sp 1\r\n", "8\r\n");
    c.set("z", 0, 0, b"0");
    c.req("decr z 1\r\n", "0\r\n");
}

#[test]
fn touch_gat_gats() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("touch nokey 10\r\n", "NOT_FOUND\r\n");
    c.set("k", 2, 0, b"val");
    c.req("touch k 100\r\n", "TOUCHED\r\n");
    c.req(
        "touch k abc\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    c.req("touch k\r\n", "ERROR\r\n");
    c.req("gat 100 k nokey\r\n", "VALUE k 2 3\r\nval\r\nEND\r\n");
    let (_, _, cas) = c.gets("k").unwrap();
    c.req(
        "gats 100 k\r\n",
        format!("VALUE k 2 3 {cas}\r\nval\r\nEND\r\n"),
    );
    c.req("gat abc k\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
    c.req("gat\r\n", "ERROR\r\n");
    c.req("gat 10\r\n", "END\r\n");
    c.set("k2", 0, 0, b"v2");
    c.req(
        "gat 0 k k2\r\n",
        "VALUE k 2 3\r\nval\r\nVALUE k2 0 2\r\nv2\r\nEND\r\n",
    );
    // touch/gat do not change cas
    let (_, _, cas2) = c.gets("k").unwrap();
    assert_eq!(cas, cas2);
}

#[test]
fn flush_all_forms() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("a", 0, 0, b"1");
    c.set("b", 0, 0, b"2");
    c.req("flush_all\r\n", "OK\r\n");
    c.req("get a b\r\n", "END\r\n");
    // new items after a flush are visible
    c.set("a", 0, 0, b"1");
    c.req("get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
    c.req("flush_all 0\r\n", "OK\r\n");
    c.req("get a\r\n", "END\r\n");
    c.set("a", 0, 0, b"1");
    c.req("flush_all noreply\r\n", "");
    c.req("get a\r\n", "END\r\n");
    c.req(
        "flush_all abc\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    c.req("flush_all 0 noreply\r\nversion\r\n", "VERSION ");
    c.line();
}

#[test]
fn flush_all_with_delay() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("a", 0, 0, b"1");
    c.req("flush_all 2\r\n", "OK\r\n");
    // still there before the delay elapses
    c.req("get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
    std::thread::sleep(std::time::Duration::from_millis(3100));
    c.req("get a\r\n", "END\r\n");
    // items stored after the flush deadline survive
    c.set("b", 0, 0, b"2");
    c.req("get b\r\n", "VALUE b 0 1\r\n2\r\nEND\r\n");
}

#[test]
fn version_verbosity_quit() {
    let s = Server::start();
    let mut c = s.conn();
    c.send("version\r\n");
    let v = c.line();
    assert!(v.starts_with("VERSION "), "{v:?}");
    assert!(v.len() > 8 && !v[8..].contains(' '), "{v:?}");
    c.req("version extra\r\n", format!("{v}\r\n"));
    c.req("verbosity 1\r\n", "OK\r\n");
    c.req("verbosity 0\r\n", "OK\r\n");
    c.req("verbosity 1 2\r\n", "OK\r\n");
    c.req("verbosity\r\n", "ERROR\r\n");
    c.req(
        "verbosity abc\r\n",
        "CLIENT_ERROR bad command line format\r\n",
    );
    c.req("verbosity 1 noreply\r\n", "");
    c.req("verbosity 0\r\n", "OK\r\n");
    // quit closes without a reply; later pipelined commands are not answered
    c.send("quit\r\nversion\r\n");
    assert_eq!(c.read_to_close(), b"");
    let mut d = s.conn();
    d.send("quit extra\r\n");
    assert_eq!(d.read_to_close(), b"");
}

#[test]
fn unknown_commands() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("foo\r\n", "ERROR\r\n");
    c.req("\r\n", "ERROR\r\n");
    c.req("GET k\r\n", "ERROR\r\n");
    c.req("SET k 0 0 1\r\nx\r\n", "ERROR\r\nERROR\r\n");
    c.req("get\r\n", "ERROR\r\n");
    c.req("gets\r\n", "ERROR\r\n");
    c.req("set k 0 0\r\n", "ERROR\r\n");
    c.req("bogus noreply\r\n", "ERROR\r\n");
    // the connection is still fine
    c.req("set k 0 0 1\r\nx\r\n", "STORED\r\n");
}
