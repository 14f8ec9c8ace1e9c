//! The binary protocol over TCP against corecached: every opcode, quiet
//! pipelines, CAS, incr/decr initial values, flush with delay, the GAT
//! family, stat groups, malformed headers, SASL.

use crate::binary_wire;
use crate::common;

use binary_wire::*;
use common::Server;
use std::io::Write;
use std::time::Duration;

fn server() -> Server {
    Server::corecached(&["-t", "2"])
}

#[test]
fn get_set_family() {
    let s = server();
    let mut c = Client::connect(s.port);
    let r = c.call(&set(op::SET, b"k1", b"hello", 0xdead_beef, 0).opaque(11));
    assert_eq!(
        (r.magic, r.opcode, r.status, r.opaque),
        (RES, op::SET, 0, 11)
    );
    assert_ne!(r.cas, 0);
    let cas = r.cas;
    for opc in [op::GET, op::GETQ, op::GETK, op::GETKQ] {
        let r = c.call(&get(opc, b"k1").opaque(12));
        assert_eq!((r.opcode, r.status, r.opaque, r.cas), (opc, 0, 12, cas));
        assert_eq!(r.flags(), 0xdead_beef);
        assert_eq!(r.value, b"hello");
        let keyed = opc == op::GETK || opc == op::GETKQ;
        assert_eq!(r.key, if keyed { &b"k1"[..] } else { b"" });
    }
    // Misses: Not found; GetK echoes the key; the quiet ones say nothing.
    let r = c.call(&get(op::GET, b"nope"));
    assert_eq!((r.status, &r.value[..]), (1, &b"Not found"[..]));
    let r = c.call(&get(op::GETK, b"nope"));
    // GetK miss: the key, no value (memcached's key-length body).
    assert_eq!((r.status, &r.key[..], r.value.len()), (1, &b"nope"[..], 0));
    assert!(c
        .batch(&[get(op::GETQ, b"nope"), get(op::GETKQ, b"nope")])
        .is_empty());

    // add / replace
    assert_eq!(c.call(&set(op::ADD, b"k1", b"x", 0, 0)).status, 0x02);
    assert_eq!(c.call(&set(op::ADD, b"k2", b"two", 0, 0)).status, 0);
    assert_eq!(c.call(&set(op::REPLACE, b"k3", b"x", 0, 0)).status, 0x01);
    assert_eq!(c.call(&set(op::REPLACE, b"k2", b"2", 7, 0)).status, 0);
    let r = c.call(&get(op::GET, b"k2"));
    assert_eq!((r.flags(), &r.value[..]), (7, &b"2"[..]));

    // append / prepend
    let r = c.call(&Pkt::new(op::APPEND).key(b"k2").value(b"b"));
    assert_eq!(r.status, 0);
    assert_ne!(r.cas, 0);
    assert_eq!(
        c.call(&Pkt::new(op::PREPEND).key(b"k2").value(b"a")).status,
        0
    );
    let r = c.call(&get(op::GET, b"k2"));
    assert_eq!((r.flags(), &r.value[..]), (7, &b"a2b"[..]));
    let r = c.call(&Pkt::new(op::APPEND).key(b"none").value(b"b"));
    assert_eq!((r.status, &r.value[..]), (0x05, &b"Not stored."[..]));

    // delete
    let r = c.call(&get(op::DELETE, b"k2"));
    assert_eq!((r.status, r.cas), (0, 0));
    let r = c.call(&get(op::DELETE, b"k2"));
    assert_eq!(r.status, 0x01);

    // quiet variants: nothing on success, errors still answered
    let rs = c.batch(&[
        set(op::SETQ, b"q", b"1", 0, 0),
        set(op::ADDQ, b"q", b"1", 0, 0).opaque(1),
        set(op::REPLACEQ, b"q", b"2", 0, 0),
        Pkt::new(op::APPENDQ).key(b"q").value(b"0"),
        Pkt::new(op::PREPENDQ).key(b"q").value(b"1"),
        arith(op::INCRQ, b"q", 1, 0, 0),
        get(op::DELETEQ, b"missing").opaque(2),
        arith(op::DECRQ, b"q", 1, 0, 0),
        get(op::GETQ, b"q").opaque(3),
        get(op::DELETEQ, b"q"),
        get(op::GETQ, b"q"),
    ]);
    let got: Vec<_> = rs.iter().map(|r| (r.opcode, r.status, r.opaque)).collect();
    assert_eq!(
        got,
        vec![
            (op::ADDQ, 0x02, 1),
            (op::DELETEQ, 0x01, 2),
            (op::GETQ, 0, 3)
        ]
    );
    assert_eq!(rs[2].value, b"120");
}

#[test]
fn version_noop_verbosity_quit() {
    let s = server();
    let mut c = Client::connect(s.port);
    let r = c.call(&Pkt::new(op::VERSION).opaque(5));
    assert_eq!((r.status, r.opaque), (0, 5));
    assert!(r.value.starts_with(b"1.6.18"), "{:?}", r.value);
    let r = c.call(&Pkt::new(op::NOOP).opaque(6));
    assert_eq!(
        (r.opcode, r.status, r.opaque, r.value.len()),
        (op::NOOP, 0, 6, 0)
    );
    let r = c.call(&Pkt::new(op::VERBOSITY).extras(&1u32.to_be_bytes()));
    assert_eq!(r.status, 0);
    // Quit answers, then closes.
    let r = c.call(&Pkt::new(op::QUIT).opaque(9));
    assert_eq!((r.opcode, r.status, r.opaque), (op::QUIT, 0, 9));
    assert!(c.read().is_none());
    // QuitQ closes silently.
    let mut c = Client::connect(s.port);
    c.send(&Pkt::new(op::QUITQ));
    assert!(c.read().is_none());
}

#[test]
fn cas_compare_and_swap() {
    let s = server();
    let mut c = Client::connect(s.port);
    let cas = c.call(&set(op::SET, b"c", b"1", 0, 0)).cas;
    // wrong CAS: exists; missing key with a CAS: not found
    assert_eq!(
        c.call(&set(op::SET, b"c", b"2", 0, 0).cas(cas + 1)).status,
        0x02
    );
    assert_eq!(
        c.call(&set(op::SET, b"nokey", b"2", 0, 0).cas(1)).status,
        0x01
    );
    assert_eq!(
        c.call(&set(op::REPLACE, b"c", b"2", 0, 0).cas(cas + 1))
            .status,
        0x02
    );
    assert_eq!(
        c.call(&set(op::ADD, b"c", b"2", 0, 0).cas(cas + 1)).status,
        0x02
    );
    // right CAS: stored, new CAS
    let r = c.call(&set(op::SET, b"c", b"2", 0, 0).cas(cas));
    assert_eq!(r.status, 0);
    assert_ne!(r.cas, cas);
    let cas2 = r.cas;
    assert_eq!(c.call(&get(op::GET, b"c")).cas, cas2);
    // append / delete / incr with CAS
    assert_eq!(
        c.call(&Pkt::new(op::APPEND).key(b"c").value(b"0").cas(cas))
            .status,
        0x02
    );
    let r = c.call(&Pkt::new(op::APPEND).key(b"c").value(b"0").cas(cas2));
    assert_eq!(r.status, 0);
    let cas3 = r.cas;
    assert_eq!(
        c.call(&arith(op::INCR, b"c", 1, 0, 0).cas(cas2)).status,
        0x02
    );
    let r = c.call(&arith(op::INCR, b"c", 1, 0, 0).cas(cas3));
    assert_eq!((r.status, r.counter()), (0, 21));
    let cas4 = r.cas;
    assert_ne!(cas4, cas3);
    assert_eq!(c.call(&get(op::GET, b"c")).cas, cas4);
    assert_eq!(c.call(&get(op::DELETE, b"c").cas(cas3)).status, 0x02);
    assert_eq!(c.call(&get(op::DELETE, b"c").cas(cas4)).status, 0);
    // a CAS stat was counted
    assert!(c.stat("", "cas_hits").parse::<u64>().unwrap() >= 1);
    assert!(c.stat("", "cas_badval").parse::<u64>().unwrap() >= 1);
}

#[test]
fn incr_decr_initial_values() {
    let s = server();
    let mut c = Client::connect(s.port);
    // missing + 0xffffffff: not found, no item created
    let r = c.call(&arith(op::INCR, b"n", 5, 100, u32::MAX));
    assert_eq!((r.status, &r.value[..]), (1, &b"Not found"[..]));
    assert_eq!(c.call(&get(op::GET, b"n")).status, 1);
    // missing + initial: created with the initial value (delta not applied)
    let r = c.call(&arith(op::INCR, b"n", 5, 100, 0));
    assert_eq!((r.status, r.counter()), (0, 100));
    assert_ne!(r.cas, 0);
    let r = c.call(&get(op::GET, b"n"));
    assert_eq!((r.flags(), &r.value[..]), (0, &b"100"[..]));
    let r = c.call(&arith(op::INCR, b"n", 5, 0, 0));
    assert_eq!(r.counter(), 105);
    let r = c.call(&arith(op::DECR, b"n", 1000, 0, 0));
    assert_eq!(r.counter(), 0, "decr floors at 0");
    let r = c.call(&arith(op::DECR, b"d", 1, 7, 0));
    assert_eq!(r.counter(), 7);
    // incr wraps at 2^64
    c.call(&set(op::SET, b"w", b"18446744073709551615", 0, 0));
    assert_eq!(c.call(&arith(op::INCR, b"w", 2, 0, 0)).counter(), 1);
    // non-numeric
    c.call(&set(op::SET, b"s", b"abc", 0, 0));
    let r = c.call(&arith(op::INCR, b"s", 1, 0, 0));
    assert_eq!(r.status, 0x06);
    // initial value with a short expiry
    let r = c.call(&arith(op::INCR, b"e", 1, 42, 1));
    assert_eq!(r.counter(), 42);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.call(&get(op::GET, b"e")).status, 1);
}

#[test]
fn flush_now_and_with_delay() {
    let s = server();
    let mut c = Client::connect(s.port);
    c.call(&set(op::SET, b"a", b"1", 0, 0));
    let r = c.call(&Pkt::new(op::FLUSH).opaque(3));
    assert_eq!((r.opcode, r.status, r.opaque), (op::FLUSH, 0, 3));
    assert_eq!(c.call(&get(op::GET, b"a")).status, 1);
    // FlushQ: silent
    c.call(&set(op::SET, b"a", b"1", 0, 0));
    assert!(c.batch(&[Pkt::new(op::FLUSHQ)]).is_empty());
    assert_eq!(c.call(&get(op::GET, b"a")).status, 1);
    // delayed: still there now, gone after the delay
    c.call(&set(op::SET, b"b", b"1", 0, 0));
    let r = c.call(&Pkt::new(op::FLUSH).extras(&2u32.to_be_bytes()));
    assert_eq!(r.status, 0);
    assert_eq!(c.call(&get(op::GET, b"b")).status, 0);
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(c.call(&get(op::GET, b"b")).status, 1);
    assert!(c.stat("", "cmd_flush").parse::<u64>().unwrap() >= 3);
}

#[test]
fn touch_and_gat_family() {
    let s = server();
    let mut c = Client::connect(s.port);
    let cas = c.call(&set(op::SET, b"t", b"val", 5, 1)).cas;
    // Touch: flags and CAS, no value
    let r = c.call(&touch(op::TOUCH, b"t", 100));
    assert_eq!((r.status, r.cas, r.flags(), r.value.len()), (0, cas, 5, 0));
    assert_eq!(c.call(&touch(op::TOUCH, b"none", 100)).status, 1);
    // GAT family
    let r = c.call(&touch(op::GAT, b"t", 100));
    assert_eq!(
        (r.flags(), &r.value[..], &r.key[..]),
        (5, &b"val"[..], &b""[..])
    );
    let r = c.call(&touch(op::GATK, b"t", 100));
    assert_eq!((&r.key[..], &r.value[..]), (&b"t"[..], &b"val"[..]));
    let r = c.call(&touch(op::GATQ, b"t", 100));
    assert_eq!((r.opcode, &r.value[..]), (op::GATQ, &b"val"[..]));
    let r = c.call(&touch(op::GATKQ, b"t", 100));
    assert_eq!((r.opcode, &r.key[..]), (op::GATKQ, &b"t"[..]));
    let r = c.call(&touch(op::GATK, b"none", 1));
    assert_eq!((r.status, &r.key[..]), (1, &b"none"[..]));
    assert!(c
        .batch(&[touch(op::GATQ, b"none", 1), touch(op::GATKQ, b"none", 1)])
        .is_empty());
    // the touch moved the expiry past the original 1 s
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.call(&get(op::GET, b"t")).status, 0);
    // and GAT can shorten it again
    c.call(&touch(op::GAT, b"t", 1));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.call(&get(op::GET, b"t")).status, 1);
    assert!(c.stat("", "touch_hits").parse::<u64>().unwrap() >= 6);
    assert!(c.stat("", "touch_misses").parse::<u64>().unwrap() >= 3);
}

#[test]
fn stat_groups() {
    let s = server();
    let mut c = Client::connect(s.port);
    let general = c.stats("").unwrap();
    let names: Vec<&str> = general.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "pid",
        "uptime",
        "version",
        "cmd_get",
        "auth_cmds",
        "auth_errors",
        "curr_items",
    ] {
        assert!(names.contains(&want), "missing {want}");
    }
    let settings = c.stats("settings").unwrap();
    let get = |n: &str| settings.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("auth_enabled_sasl"), "no");
    assert_eq!(get("item_size_max"), "1048576");
    assert_eq!(get("binding_protocol"), "auto-negotiate");
    for g in ["items", "slabs", "sizes"] {
        assert!(c.stats(g).is_ok(), "{g}");
    }
    // memcached's binary Stat has no `conns` group: Not found
    assert_eq!(c.stats("conns").unwrap_err().status, 1);
    // reset: just the terminator, counters zeroed
    c.call(&get_pkt(b"x"));
    assert!(c.stats("reset").unwrap().is_empty());
    assert_eq!(c.stat("", "cmd_get"), "0");
    // unknown group: Not found
    let e = c.stats("bogus").unwrap_err();
    assert_eq!((e.opcode, e.status), (op::STAT, 1));
    // same names and order as the text protocol's `stats settings`
    let mut t = s.conn();
    t.send(b"stats settings\r\n");
    let text = String::from_utf8(t.read_end()).unwrap();
    let text_lines: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(text_lines, settings);
    // and the general block has the same names in the same order
    t.send(b"stats\r\n");
    let text = String::from_utf8(t.read_end()).unwrap();
    let text_names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let bin = c.stats("").unwrap();
    let bin_names: Vec<&str> = bin.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(text_names, bin_names);
}

fn get_pkt(k: &[u8]) -> Pkt {
    get(op::GET, k)
}

#[test]
fn quiet_pipeline_of_100k_sets_then_noop() {
    let s = server();
    let mut c = Client::connect(s.port);
    const N: usize = 100_000;
    let mut w = c.s.try_clone().unwrap();
    // Write from another thread: the server must keep reading while nothing
    // comes back (no reply is owed until the Noop).
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(1 << 20);
        for i in 0..N {
            let k = format!("key{i}");
            buf.extend(set(op::SETQ, k.as_bytes(), b"0123456789", 0, 0).bytes());
            if buf.len() > (1 << 20) - 100 {
                w.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        buf.extend(Pkt::new(op::NOOP).opaque(NOOP_OPAQUE).bytes());
        w.write_all(&buf).unwrap();
    });
    let r = c.read().unwrap();
    assert_eq!((r.opcode, r.opaque), (op::NOOP, NOOP_OPAQUE), "{r:?}");
    writer.join().unwrap();
    // every value is there; GetKQ misses are silent, hits come back in order
    let probes: Vec<Pkt> = (0..N)
        .step_by(997)
        .map(|i| get(op::GETKQ, format!("key{i}").as_bytes()))
        .chain(std::iter::once(get(op::GETKQ, b"absent")))
        .collect();
    let rs = c.batch(&probes);
    assert_eq!(rs.len(), probes.len() - 1);
    for (r, p) in rs.iter().zip(&probes) {
        assert_eq!((&r.key, &r.value[..]), (&p.key, &b"0123456789"[..]));
    }
    assert_eq!(c.stat("", "curr_items"), N.to_string());
}

#[test]
fn responses_of_one_batch_come_in_one_write() {
    // Not observable byte-exactly over TCP, but a batch of 1000 gets must
    // come back complete and in order without the client reading between.
    let s = server();
    let mut c = Client::connect(s.port);
    c.call(&set(op::SET, b"x", b"y", 0, 0));
    let ps: Vec<Pkt> = (0..1000).map(|i| get(op::GET, b"x").opaque(i)).collect();
    let rs = c.batch(&ps);
    assert_eq!(rs.len(), 1000);
    assert!(rs.iter().enumerate().all(|(i, r)| r.opaque == i as u32));
}

#[test]
fn malformed_headers() {
    let s = server();
    // wrong magic on a binary connection: closed without a reply
    // (a first byte other than 0x80 makes a text connection instead)
    let mut c = Client::connect(s.port);
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
    c.send(&Pkt::new(op::GET).key(b"k").magic(0x81));
    assert!(c.until_closed().is_empty());
    // a binary connection stays binary: text later is a bad magic
    let mut c = Client::connect(s.port);
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
    c.send_raw(b"get foo\r\n");
    assert!(c.until_closed().is_empty());
    // key + extras > body: Unknown command, then closed
    let mut c = Client::connect(s.port);
    c.send(&Pkt::new(op::GET).key(b"abc").bodylen(2).opaque(4));
    let rs = c.until_closed();
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].status, rs[0].opaque), (0x81, 4));
    // key over 250: Invalid arguments, then closed
    let mut c = Client::connect(s.port);
    c.send(&Pkt::new(op::GET).key(&[b'k'; 251]));
    let rs = c.until_closed();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![0x04]);
    // wrong extras for the opcode: Invalid arguments, then closed
    let mut c = Client::connect(s.port);
    c.send(&Pkt::new(op::SET).key(b"k").value(b"v").extras(&[0; 4]));
    let rs = c.until_closed();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![0x04]);
    // a 4 GiB length on a get: refused from the header, nothing allocated
    let mut c = Client::connect(s.port);
    c.send(&Pkt::new(op::GET).key(b"k").bodylen(u32::MAX));
    let rs = c.until_closed();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![0x04]);
    // value over -I: Too large, body swallowed, connection in sync
    let mut c = Client::connect(s.port);
    c.call(&set(op::SET, b"big", b"old", 0, 0));
    let big = vec![b'x'; 2 << 20];
    let r = c.call(&set(op::SET, b"big", &big, 0, 0).opaque(8));
    assert_eq!(
        (r.status, r.opaque, &r.value[..]),
        (0x03, 8, &b"Too large."[..])
    );
    // ...and like memcached the failed set removed the old value
    assert_eq!(c.call(&get(op::GET, b"big")).status, 1);
    let r = c.call(&set(op::SETQ, b"big", &big, 0, 0));
    assert_eq!(r.status, 0x03, "errors are answered even for quiet opcodes");
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
    // a large announced value (up to -I + 16 MiB) is swallowed as it
    // streams, never buffered (beyond that: answered, then closed -- see
    // tests/security_parse.rs)
    let r = c.call(&set(op::SET, b"huge", b"", 0, 0).bodylen(8 + 4 + 16 * 1024 * 1024));
    assert_eq!(r.status, 0x03);
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..16 {
        c.send_raw(&chunk);
    }
    assert_eq!(c.call(&Pkt::new(op::VERSION)).status, 0);
    // unknown opcode: Unknown command, body skipped, connection in sync
    let r = c.call(&Pkt::new(0x55).value(b"abcdef").opaque(10));
    assert_eq!((r.opcode, r.status, r.opaque), (0x55, 0x81, 10));
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
}

#[test]
fn sasl_opcodes_without_sasl() {
    let s = server();
    let mut c = Client::connect(s.port);
    for p in [
        Pkt::new(op::SASL_LIST),
        Pkt::new(op::SASL_AUTH).key(b"PLAIN").value(b"\0u\0p"),
        Pkt::new(op::SASL_STEP).key(b"PLAIN").value(b"\0u\0p"),
    ] {
        let r = c.call(&p);
        assert_eq!((r.status, &r.value[..]), (0x81, &b"Unknown command"[..]));
    }
    // a SASL body over -I is still "unknown command" (not out of memory)
    // when SASL is off, as memcached checks that first; the body is skipped
    let big = vec![b'x'; 2 << 20];
    let r = c.call(&Pkt::new(op::SASL_AUTH).key(b"PLAIN").value(&big));
    assert_eq!(r.status, 0x81);
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
}

fn pwdb() -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!(
        "corecached-binary-test-pwdb-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, "alice:wonderland\nbob:builder:comment\n").unwrap();
    let s = path.to_str().unwrap().to_string();
    (path, s)
}

fn auth(c: &mut Client, user: &str, pass: &str) -> Reply {
    let msg = format!("\0{user}\0{pass}");
    c.call(&Pkt::new(op::SASL_AUTH).key(b"PLAIN").value(msg.as_bytes()))
}

#[test]
fn sasl_plain() {
    let (path, p) = pwdb();
    let s = Server::corecached(&["-t", "2", "-S", "--sasl-pwdb", &p]);
    let mut c = Client::connect(s.port);
    // allowed before authenticating
    let r = c.call(&Pkt::new(op::SASL_LIST));
    assert_eq!((r.status, &r.value[..]), (0, &b"PLAIN"[..]));
    assert_eq!(c.call(&Pkt::new(op::VERSION)).status, 0);
    assert_eq!(c.call(&Pkt::new(op::NOOP)).status, 0);
    // bad password: Auth failure, connection stays
    let r = auth(&mut c, "alice", "wonderlan");
    assert_eq!((r.status, &r.value[..]), (0x20, &b"Auth failure."[..]));
    assert_eq!(auth(&mut c, "alice", "wonderlandx").status, 0x20);
    assert_eq!(auth(&mut c, "nobody", "wonderland").status, 0x20);
    let r = c.call(&Pkt::new(op::SASL_AUTH).key(b"CRAM-MD5").value(b"x"));
    assert_eq!(r.status, 0x20);
    let r = c.call(&Pkt::new(op::SASL_AUTH).key(&[b'M'; 33]).value(b"x"));
    assert_eq!(r.status, 0x04);
    // good password
    let r = auth(&mut c, "alice", "wonderland");
    assert_eq!((r.status, &r.value[..]), (0, &b"Authenticated"[..]));
    assert_eq!(c.call(&set(op::SET, b"k", b"v", 0, 0)).status, 0);
    assert_eq!(c.call(&get(op::GET, b"k")).value, b"v");
    // counted: five attempts, four failed (the 33-byte mechanism is no attempt)
    let st = c.stats("").unwrap();
    let v = |n: &str| st.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!((v("auth_cmds"), v("auth_errors")), ("5".into(), "4".into()));
    assert_eq!(c.stat("settings", "auth_enabled_sasl"), "yes");
    assert_eq!(c.stat("settings", "binding_protocol"), "binary");

    // unauthenticated commands: Auth failure, then closed (as memcached)
    for p in [
        get(op::GET, b"k"),
        set(op::SET, b"k", b"v", 0, 0),
        Pkt::new(op::STAT),
        Pkt::new(op::FLUSH),
        Pkt::new(0x55),
        get(op::GET, &[b'k'; 300]),
    ] {
        let mut c = Client::connect(s.port);
        c.send(&p.clone().opaque(77));
        let rs = c.until_closed();
        assert_eq!(rs.len(), 1, "{p:?}");
        assert_eq!((rs[0].status, rs[0].opaque), (0x20, 77));
    }
    // the data was not touched by the refused set/flush
    let mut c = Client::connect(s.port);
    assert_eq!(auth(&mut c, "bob", "builder").status, 0);
    assert_eq!(c.call(&get(op::GET, b"k")).value, b"v");

    // PLAIN in two steps: empty Auth → continue, credentials in a Step
    let mut c = Client::connect(s.port);
    let r = c.call(&Pkt::new(op::SASL_AUTH).key(b"PLAIN"));
    assert_eq!((r.status, r.value.len()), (0x21, 0));
    let r = c.call(
        &Pkt::new(op::SASL_STEP)
            .key(b"PLAIN")
            .value(b"\0alice\0wonderland"),
    );
    assert_eq!(r.status, 0);
    assert_eq!(c.call(&get(op::GET, b"k")).status, 0);
    // any failed attempt drops an earlier login (as memcached)
    let mut c = Client::connect(s.port);
    let r = c.call(
        &Pkt::new(op::SASL_AUTH)
            .key(b"plain")
            .value(b"\0alice\0wonderland"),
    );
    assert_eq!(r.status, 0, "mechanism names are case-insensitive");
    assert_eq!(c.call(&get(op::GET, b"k")).status, 0);
    assert_eq!(auth(&mut c, "alice", "bad").status, 0x20);
    c.send(&get(op::GET, b"k"));
    assert_eq!(
        c.until_closed()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![0x20]
    );
    // a Step with nothing started fails
    let mut c = Client::connect(s.port);
    let r = c.call(
        &Pkt::new(op::SASL_STEP)
            .key(b"PLAIN")
            .value(b"\0alice\0wonderland"),
    );
    assert_eq!(r.status, 0x20);

    // ASCII connections are refused: closed without a reply
    let mut t = s.conn();
    t.send(b"version\r\n");
    let got = t.read_to_close();
    assert!(got.is_empty(), "{:?}", common::show(&got));
    let _ = std::fs::remove_file(path);
}

#[test]
fn sasl_pwdb_from_environment() {
    let (path, p) = pwdb();
    let s = Server::corecached_env(&["-t", "1", "-S"], &[("MEMCACHED_SASL_PWDB", &p)]);
    let mut c = Client::connect(s.port);
    assert_eq!(auth(&mut c, "alice", "nope").status, 0x20);
    assert_eq!(auth(&mut c, "alice", "wonderland").status, 0);
    assert_eq!(c.call(&get(op::GET, b"k")).status, 1);
    let _ = std::fs::remove_file(path);
}

#[test]
fn sasl_needs_a_password_file() {
    let out = std::process::Command::new(crate::common::corecached_bin())
        .args(["-S", "-p", "0"])
        .env_remove("MEMCACHED_SASL_PWDB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password file"));
}
