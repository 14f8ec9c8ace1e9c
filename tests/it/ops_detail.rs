//! `stats detail on|off|dump` and `-D` (issue 12): per-prefix get, hit,
//! set and delete counters, compared with the real memcached 1.6.18 (dump
//! lines compared as sets: memcached lists them in hash order).

use crate::binary_wire::{op, set as bset, Client, Pkt};
use crate::common::Server;
use std::collections::BTreeSet;

fn dump(s: &Server) -> BTreeSet<String> {
    let mut c = s.conn();
    c.send("stats detail dump\r\n");
    let text = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    text.lines().map(str::to_string).collect()
}

/// The same traffic on both servers: text, binary and meta commands, with
/// recording switched on and off.
fn traffic(s: &Server, d: char) {
    let k = |p: &str, n: &str| format!("{p}{d}{n}");
    let mut c = s.conn();
    // off: nothing is recorded
    c.set(&k("early", "1"), 0, 0, b"v");
    c.req("stats detail on\r\n", "OK\r\n");
    c.set(&k("a", "1"), 0, 0, b"v");
    c.set(&k("a", "2"), 0, 0, b"v");
    c.set("nodelim", 0, 0, b"v");
    c.get(&k("a", "1"));
    c.get(&k("a", "9"));
    c.get("nodelim");
    c.send(format!(
        "get {} {} {}\r\n",
        k("a", "2"),
        k("b", "1"),
        k("", "x")
    ));
    let _ = c.read_until(b"END\r\n");
    c.req(format!("delete {}\r\n", k("a", "2")), "DELETED\r\n");
    c.req(format!("delete {}\r\n", k("c", "1")), "NOT_FOUND\r\n");
    c.store("add", &k("a", "1"), 0, 0, b"x", "NOT_STORED");
    c.req(format!("touch {} 0\r\n", k("a", "1")), "TOUCHED\r\n");
    // meta commands are not counted (memcached does not count them)
    c.req(format!("ms {} 1\r\nz\r\n", k("m", "1")), "HD\r\n");
    c.req(format!("mg {} v\r\n", k("m", "1")), "VA 1\r\nz\r\n");
    // binary get, set, delete
    let mut b = Client::connect(s.port);
    let bk = k("bin", "1");
    b.call(&bset(op::SET, bk.as_bytes(), b"v", 0, 0));
    b.call(&Pkt::new(op::GET).key(bk.as_bytes()));
    b.call(&Pkt::new(op::GET).key(k("bin", "2").as_bytes()));
    b.call(&Pkt::new(op::DELETE).key(bk.as_bytes()));
    c.req("stats detail off\r\n", "OK\r\n");
    c.get(&k("a", "1"));
    c.set(&k("late", "1"), 0, 0, b"v");
}

#[test]
fn detail_counts_like_memcached() {
    for (args, d) in [(&[][..], ':'), (&["-D", "/"][..], '/')] {
        let mc = Server::memcached(args);
        let cc = Server::corecached(&[&["-t", "2"][..], args].concat());
        if d == '/' {
            // -D alone turns recording on, as memcached's does
            for s in [&mc, &cc] {
                assert_eq!(s.conn().stats("settings")["detail_enabled"], "yes");
            }
        }
        for s in [&mc, &cc] {
            traffic(s, d);
        }
        let want = dump(&mc);
        assert!(want.len() > 3, "memcached recorded: {want:?}");
        assert_eq!(want, dump(&cc), "-D {d}");
        // stats reset clears the prefixes
        for s in [&mc, &cc] {
            s.conn().req("stats reset\r\n", "RESET\r\n");
            assert_eq!(dump(s), ["END".to_string()].into(), "{:?}", s.kind);
        }
    }
    let cc = Server::corecached(&["-t", "2"]);
    for bad in ["stats detail\r\n", "stats detail x\r\n"] {
        cc.conn()
            .req(bad, "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    }
}

/// A set refused as too large is still counted for its prefix (memcached
/// counts the set when it reads the command).
#[test]
fn too_large_set_is_counted_like_memcached() {
    let cc = Server::corecached(&["-t", "1"]);
    let mc = Server::memcached(&[]);
    for s in [&cc, &mc] {
        let mut c = s.conn();
        c.req("stats detail on\r\n", "OK\r\n");
        let big = vec![b'x'; 2 << 20];
        c.send(format!("set big:k 0 0 {}\r\n", big.len()));
        c.send(&big);
        c.send("\r\n");
        assert_eq!(c.line(), "SERVER_ERROR object too large for cache");
    }
    let (ours, theirs) = (dump(&cc), dump(&mc));
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("PREFIX big get 0 hit 0 set 1 del 0"),
        "{ours:?}"
    );
}
