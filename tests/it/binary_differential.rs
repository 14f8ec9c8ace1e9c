//! Differential tests: the same binary packets to memcached 1.6 and to
//! corecached; the replies must be identical apart from named fields:
//! CAS values (compared by identity: each server's CAS values are renamed
//! 1, 2, 3... in order of first appearance, so "same item, same CAS" and
//! "changed item, new CAS" must agree) and the version string.
//!
//! memcached must be on PATH (the project's test script installs it): these
//! tests fail, never skip, without it.

use crate::binary_wire;
use crate::common;

use binary_wire::*;
use common::Server;
use std::collections::HashMap;
use std::time::Duration;

/// What a client saw: a reply, or the server closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    R(Reply),
    Closed,
}

/// Renames CAS values to their order of first appearance.
#[derive(Default)]
struct Norm {
    cas: HashMap<u64, u64>,
}

impl Norm {
    fn reply(&mut self, mut r: Reply) -> Reply {
        if r.cas != 0 {
            let n = self.cas.len() as u64 + 1;
            r.cas = *self.cas.entry(r.cas).or_insert(n);
        }
        if r.opcode == op::VERSION && r.status == 0 {
            r.value = b"<version>".to_vec();
        }
        r
    }
}

/// A scenario: drives one server through a session, returns what it saw.
/// It gets a fresh connection factory so it can test closes.
type Scenario = fn(&mut dyn FnMut() -> Client, &mut Vec<Seen>);

fn run(s: Scenario, srv: &Server) -> Vec<Seen> {
    let port = srv.port;
    let mut connect = move || Client::connect(port);
    let mut seen = Vec::new();
    s(&mut connect, &mut seen);
    let mut n = Norm::default();
    seen.into_iter()
        .map(|x| match x {
            Seen::R(r) => Seen::R(n.reply(r)),
            c => c,
        })
        .collect()
}

/// Run a scenario on fresh memcached and corecached servers; compare.
fn differential(name: &str, s: Scenario) {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let want = run(s, &mc);
    let got = run(s, &cc);
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            g, w,
            "{name}: reply #{i} differs (left corecached, right memcached)"
        );
    }
    assert_eq!(got.len(), want.len(), "{name}: number of replies");
    assert!(!want.is_empty());
    if std::env::var_os("DIFF_DUMP").is_some() {
        eprintln!("{name}: {} replies: {want:?}", want.len());
    }
}

fn call(c: &mut Client, p: Pkt, seen: &mut Vec<Seen>) -> Reply {
    let r = c.call(&p);
    seen.push(Seen::R(r.clone()));
    r
}

fn batch(c: &mut Client, ps: &[Pkt], seen: &mut Vec<Seen>) {
    for r in c.batch(ps) {
        seen.push(Seen::R(r));
    }
}

fn until_closed(c: &mut Client, seen: &mut Vec<Seen>) {
    for r in c.until_closed() {
        seen.push(Seen::R(r));
    }
    seen.push(Seen::Closed);
}

fn s_storage(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    let o = |p: Pkt, n: u32| p.opaque(n);
    for (i, p) in [
        set(op::SET, b"a", b"alpha", 1, 0),
        get(op::GET, b"a"),
        get(op::GETK, b"a"),
        get(op::GET, b"missing"),
        get(op::GETK, b"missing"),
        set(op::ADD, b"a", b"x", 0, 0),
        set(op::ADD, b"b", b"beta", 2, 0),
        set(op::REPLACE, b"c", b"x", 0, 0),
        set(op::REPLACE, b"b", b"BETA", 3, 0),
        get(op::GET, b"b"),
        Pkt::new(op::APPEND).key(b"b").value(b"++"),
        Pkt::new(op::PREPEND).key(b"b").value(b"--"),
        get(op::GETK, b"b"),
        Pkt::new(op::APPEND).key(b"nokey").value(b"x"),
        Pkt::new(op::PREPEND).key(b"nokey").value(b"x"),
        set(op::SET, b"empty", b"", 0, 0),
        get(op::GET, b"empty"),
        set(op::SET, b"key with spaces", b"v", 0, 0),
        get(op::GETK, b"key with spaces"),
        set(op::SET, &[b'k'; 250], b"long key", 0, 0),
        get(op::GETK, &[b'k'; 250]),
        get(op::DELETE, b"a"),
        get(op::DELETE, b"a"),
        get(op::GET, b"a"),
        Pkt::new(op::VERSION),
        Pkt::new(op::NOOP),
    ]
    .into_iter()
    .enumerate()
    {
        call(&mut c, o(p, i as u32 + 100), seen);
    }
    // Quit answers and closes.
    c.send(&Pkt::new(op::QUIT).opaque(5));
    until_closed(&mut c, seen);
    let mut c = connect();
    c.send(&Pkt::new(op::QUITQ));
    until_closed(&mut c, seen);
}

fn s_quiet(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    let mut ps = Vec::new();
    for (i, p) in [
        set(op::SETQ, b"q1", b"1", 0, 0),
        set(op::SETQ, b"q2", b"2", 0, 0),
        set(op::ADDQ, b"q1", b"x", 0, 0),
        set(op::ADDQ, b"q3", b"3", 0, 0),
        set(op::REPLACEQ, b"nope", b"x", 0, 0),
        set(op::REPLACEQ, b"q3", b"33", 0, 0),
        Pkt::new(op::APPENDQ).key(b"q1").value(b"0"),
        Pkt::new(op::PREPENDQ).key(b"nope").value(b"0"),
        arith(op::INCRQ, b"q1", 5, 0, 0),
        arith(op::DECRQ, b"q2", 1, 0, 0),
        arith(op::INCRQ, b"nope", 1, 0, u32::MAX),
        get(op::GETQ, b"q1"),
        get(op::GETQ, b"nope"),
        get(op::GETKQ, b"q2"),
        get(op::GETKQ, b"nope"),
        get(op::DELETEQ, b"q3"),
        get(op::DELETEQ, b"q3"),
        touch(op::GATQ, b"q1", 0),
        touch(op::GATKQ, b"q1", 0),
        touch(op::GATQ, b"nope", 0),
        touch(op::GATKQ, b"nope", 0),
        set(op::SETQ, b"s", b"abc", 0, 0),
        arith(op::INCRQ, b"s", 1, 0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        ps.push(p.opaque(i as u32));
    }
    batch(&mut c, &ps, seen);
    batch(&mut c, &[Pkt::new(op::FLUSHQ)], seen);
    call(&mut c, get(op::GET, b"q1"), seen);
}

fn s_arith(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    for p in [
        arith(op::INCR, b"n", 1, 10, u32::MAX),
        arith(op::DECR, b"n", 1, 10, u32::MAX),
        arith(op::INCR, b"n", 1, 10, 0),
        get(op::GET, b"n"),
        arith(op::INCR, b"n", 1, 10, 0),
        arith(op::INCR, b"n", 100, 0, 0),
        get(op::GET, b"n"),
        arith(op::DECR, b"n", 5, 0, 0),
        arith(op::DECR, b"n", 1000, 0, 0),
        get(op::GET, b"n"),
        arith(op::DECR, b"m", 1, 7, 0),
        set(op::SET, b"w", b"18446744073709551615", 0, 0),
        arith(op::INCR, b"w", 2, 0, 0),
        get(op::GET, b"w"),
        set(op::SET, b"x", b"abc", 0, 0),
        arith(op::INCR, b"x", 1, 0, 0),
        arith(op::DECR, b"x", 1, 0, 0),
        set(op::SET, b"big", b"99", 5, 0),
        arith(op::INCR, b"big", 1, 0, 0),
        get(op::GET, b"big"),
    ] {
        call(&mut c, p, seen);
    }
}

fn s_cas(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    let cas = call(&mut c, set(op::SET, b"c", b"1", 0, 0), seen).cas;
    for p in [
        set(op::SET, b"c", b"2", 0, 0).cas(cas + 1),
        set(op::SET, b"none", b"2", 0, 0).cas(cas),
        set(op::ADD, b"c", b"2", 0, 0).cas(cas + 1),
        set(op::ADD, b"none", b"2", 0, 0).cas(cas),
        set(op::REPLACE, b"c", b"2", 0, 0).cas(cas + 1),
        Pkt::new(op::APPEND).key(b"c").value(b"x").cas(cas + 1),
        Pkt::new(op::APPEND).key(b"none").value(b"x").cas(cas),
        get(op::DELETE, b"c").cas(cas + 1),
        arith(op::INCR, b"c", 1, 0, 0).cas(cas + 1),
        get(op::GET, b"c"),
    ] {
        call(&mut c, p, seen);
    }
    let cas2 = call(&mut c, set(op::REPLACE, b"c", b"3", 0, 0).cas(cas), seen).cas;
    let cas3 = call(
        &mut c,
        Pkt::new(op::APPEND).key(b"c").value(b"4").cas(cas2),
        seen,
    )
    .cas;
    let cas4 = call(&mut c, arith(op::INCR, b"c", 1, 0, 0).cas(cas3), seen).cas;
    call(&mut c, get(op::GETK, b"c"), seen);
    call(&mut c, get(op::DELETE, b"c").cas(cas4), seen);
    call(&mut c, get(op::GET, b"c"), seen);
}

fn s_touch(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    for p in [
        set(op::SET, b"t", b"value", 9, 0),
        touch(op::TOUCH, b"t", 100),
        touch(op::TOUCH, b"none", 100),
        touch(op::GAT, b"t", 100),
        touch(op::GATK, b"t", 100),
        touch(op::GAT, b"none", 100),
        touch(op::GATK, b"none", 100),
        touch(op::GATQ, b"t", 100),
        touch(op::GATKQ, b"t", 100),
        touch(op::GAT, b"t", 1),
        get(op::GET, b"t"),
    ] {
        call(&mut c, p, seen);
    }
    std::thread::sleep(Duration::from_millis(2100));
    call(&mut c, get(op::GET, b"t"), seen);
}

fn s_flush(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    call(&mut c, set(op::SET, b"f", b"1", 0, 0), seen);
    call(&mut c, Pkt::new(op::FLUSH).opaque(1), seen);
    call(&mut c, get(op::GET, b"f"), seen);
    call(&mut c, set(op::SET, b"f", b"1", 0, 0), seen);
    call(
        &mut c,
        Pkt::new(op::FLUSH).extras(&2u32.to_be_bytes()),
        seen,
    );
    call(&mut c, get(op::GET, b"f"), seen);
    std::thread::sleep(Duration::from_millis(3100));
    call(&mut c, get(op::GET, b"f"), seen);
    call(&mut c, set(op::SET, b"f", b"2", 0, 0), seen);
    call(&mut c, get(op::GET, b"f"), seen);
}

fn s_malformed(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let e4 = [0u8; 4];
    let e8 = [0u8; 8];
    let e20 = [0u8; 20];
    // Each on its own connection, after a Noop so it is a binary one.
    let cases: Vec<Pkt> = vec![
        get(op::GET, b"k").magic(0x81),
        get(op::GET, b"k").magic(0x00),
        get(op::GET, b"abc").bodylen(2),
        set(op::SET, b"k", b"", 0, 0).bodylen(4),
        get(op::GET, &[b'k'; 251]),
        get(op::DELETE, &[b'k'; 300]),
        Pkt::new(op::GET).extras(&e4).key(b"k"),
        Pkt::new(op::GET),
        Pkt::new(op::GETQ).key(b"k").value(b"v"),
        Pkt::new(op::SET).extras(&e4).key(b"k").value(b"v"),
        Pkt::new(op::SET).extras(&e8).value(b"v"),
        Pkt::new(op::ADD).key(b"k").value(b"v"),
        Pkt::new(op::APPEND).extras(&e8).key(b"k").value(b"v"),
        Pkt::new(op::PREPEND).value(b"v"),
        Pkt::new(op::DELETE).extras(&e4).key(b"k"),
        Pkt::new(op::DELETE).key(b"k").value(b"v"),
        Pkt::new(op::INCR).extras(&e8).key(b"k"),
        Pkt::new(op::DECR).extras(&e20),
        Pkt::new(op::INCR).extras(&e20).key(b"k").value(b"v"),
        Pkt::new(op::NOOP).key(b"k"),
        Pkt::new(op::VERSION).extras(&e4),
        Pkt::new(op::QUIT).value(b"v"),
        Pkt::new(op::FLUSH).extras(&e8),
        Pkt::new(op::FLUSH).key(b"k"),
        Pkt::new(op::TOUCH).key(b"k"),
        Pkt::new(op::GAT).extras(&e8).key(b"k"),
        Pkt::new(op::GATK).extras(&e4),
        Pkt::new(op::STAT).extras(&e4),
        Pkt::new(op::SASL_LIST).key(b"k"),
        Pkt::new(op::SASL_AUTH).value(b"x"),
    ];
    for p in cases {
        let mut c = connect();
        call(&mut c, Pkt::new(op::NOOP), seen);
        c.send(&p.opaque(42));
        until_closed(&mut c, seen);
    }
    // Cases that keep the connection in sync.
    let mut c = connect();
    let big = vec![b'v'; 2 << 20];
    call(&mut c, set(op::SET, b"big", b"small", 0, 0), seen);
    call(&mut c, set(op::SET, b"big", &big, 0, 0).opaque(1), seen);
    call(&mut c, get(op::GET, b"big"), seen);
    call(&mut c, set(op::ADD, b"big", &big, 0, 0).opaque(2), seen);
    call(&mut c, set(op::SETQ, b"big", &big, 0, 0).opaque(3), seen);
    call(&mut c, Pkt::new(op::APPEND).key(b"big").value(&big), seen);
    call(&mut c, Pkt::new(0x55).opaque(4), seen);
    call(&mut c, Pkt::new(0xff).opaque(5), seen);
    // SASL opcodes without -S: unknown command, body skipped
    call(&mut c, Pkt::new(op::SASL_LIST), seen);
    call(
        &mut c,
        Pkt::new(op::SASL_AUTH).key(b"PLAIN").value(b"\0u\0p"),
        seen,
    );
    call(
        &mut c,
        Pkt::new(op::SASL_STEP).key(b"PLAIN").value(b"\0u\0p"),
        seen,
    );
    call(&mut c, Pkt::new(op::NOOP).opaque(6), seen);
    // Text after binary: the connection stays binary, so it is a bad magic.
    c.send_raw(b"version\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n");
    until_closed(&mut c, seen);
}

/// Stats framing, groups, and the counters after the same operations.
/// The stat `name` from a stats listing, as a comparable reply (panics if absent).
fn named_stat(list: &[(String, String)], name: &str) -> Seen {
    let v = list
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name}"));
    Seen::R(Reply {
        magic: RES,
        opcode: op::STAT,
        status: 0,
        opaque: 0,
        cas: 0,
        extras: vec![],
        key: v.0.clone().into_bytes(),
        value: v.1.clone().into_bytes(),
    })
}

fn s_stats(connect: &mut dyn FnMut() -> Client, seen: &mut Vec<Seen>) {
    let mut c = connect();
    assert!(c.stats("reset").unwrap().is_empty());
    let _ = c.batch(&[
        set(op::SET, b"a", b"1", 0, 0),
        set(op::ADD, b"a", b"1", 0, 0),
        get(op::GET, b"a"),
        get(op::GET, b"b"),
        get(op::GETKQ, b"c"),
        get(op::DELETE, b"a"),
        get(op::DELETE, b"a"),
        arith(op::INCR, b"n", 1, 5, u32::MAX),
        arith(op::DECR, b"n", 1, 5, u32::MAX),
        // Known difference, not compared: an incr/decr that creates the
        // item from its initial value counts as neither hit nor miss in
        // memcached; our store reports it as a hit (it does not say it
        // created the item).
        set(op::SET, b"n", b"5", 0, 0),
        arith(op::INCR, b"n", 1, 0, 0),
        arith(op::DECR, b"n", 1, 0, 0),
        touch(op::TOUCH, b"n", 0),
        touch(op::TOUCH, b"x", 0),
        touch(op::GAT, b"n", 0),
        touch(op::GATQ, b"x", 0),
        set(op::SET, b"n", b"6", 0, 0).cas(1),
        set(op::SET, b"zz", b"6", 0, 0).cas(1),
        Pkt::new(op::FLUSH).extras(&100u32.to_be_bytes()),
    ]);
    let st = c.stats("").unwrap();
    for name in [
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "auth_cmds",
        "auth_errors",
        "curr_items",
    ] {
        seen.push(named_stat(&st, name));
    }
    // Framing of a stats reply: every packet a Stat with our opaque, no
    // extras, no CAS; the terminator empty.
    for group in ["", "settings", "items", "slabs", "sizes"] {
        c.send(&Pkt::new(op::STAT).key(group.as_bytes()).opaque(77));
        loop {
            let r = c.read().unwrap();
            assert_eq!(
                (r.opcode, r.status, r.opaque, r.extras.len(), r.cas),
                (op::STAT, 0, 77, 0, 0),
                "group {group:?}"
            );
            if r.key.is_empty() {
                seen.push(Seen::R(r));
                break;
            }
        }
    }
    // settings that must agree with memcached's defaults
    let settings = c.stats("settings").unwrap();
    for name in [
        "maxconns",
        "item_size_max",
        "cas_enabled",
        "auth_enabled_sasl",
        "binding_protocol",
        "evictions",
    ] {
        seen.push(named_stat(&settings, name));
    }
    // an unknown group
    call(&mut c, Pkt::new(op::STAT).key(b"bogus").opaque(3), seen);
}

#[test]
fn storage_and_retrieval() {
    differential("storage", s_storage);
}

#[test]
fn quiet_variants() {
    differential("quiet", s_quiet);
}

#[test]
fn incr_decr() {
    differential("arith", s_arith);
}

#[test]
fn compare_and_swap() {
    differential("cas", s_cas);
}

#[test]
fn touch_and_gat() {
    differential("touch", s_touch);
}

#[test]
fn flush_with_delay() {
    differential("flush", s_flush);
}

#[test]
fn malformed_and_in_sync() {
    differential("malformed", s_malformed);
}

#[test]
fn stats_and_counters() {
    differential("stats", s_stats);
}
