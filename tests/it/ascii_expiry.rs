//! Expiry with short real TTLs. One server, many keys, one sleep: keeps the
//! whole file at ~3.5 s. (memcached's clock ticks once a second, so a TTL of
//! N seconds lives between N-1 and N+1 seconds; the checks allow for that.)
use crate::common;
use common::*;
use std::time::Duration;

#[test]
fn relative_negative_and_absolute_exptimes() {
    let s = Server::start();
    let mut c = s.conn();
    let now = unix_now();
    c.set("ttl2", 0, 2, b"a");
    c.set("forever", 0, 0, b"b");
    c.set("neg", 0, -1, b"c");
    c.set("past_abs", 0, now - 10, b"d");
    c.set("future_abs", 0, now + 100, b"e");
    c.set("soon_abs", 0, now + 2, b"f");
    c.set("thirty_days", 0, 2_592_000, b"g"); // still relative
    c.set("abs_1970", 0, 2_592_001, b"h"); // absolute, long past
    c.set("touched_short", 0, 0, b"i");
    c.req("touch touched_short 2\r\n", "TOUCHED\r\n");
    c.set("touched_long", 0, 2, b"j");
    c.req("touch touched_long 100\r\n", "TOUCHED\r\n");
    c.set("touched_zero", 0, 2, b"k");
    c.req("touch touched_zero 0\r\n", "TOUCHED\r\n");
    c.set("gat_short", 0, 0, b"l");
    c.req("gat 2 gat_short\r\n", "VALUE gat_short 0 1\r\nl\r\nEND\r\n");
    c.set("gat_neg", 0, 0, b"m");
    // gat returns the item, then it is expired
    c.req("gat -1 gat_neg\r\n", "VALUE gat_neg 0 1\r\nm\r\nEND\r\n");
    c.set("touch_neg", 0, 0, b"n");
    c.req("touch touch_neg -1\r\n", "TOUCHED\r\n");
    c.set("incr_keeps_ttl", 0, 2, b"9");
    c.req("incr incr_keeps_ttl 1\r\n", "10\r\n");
    c.set("append_keeps_ttl", 0, 2, b"x");
    c.req("append append_keeps_ttl 0 0 1\r\ny\r\n", "STORED\r\n");
    c.req("add addable 0 -1 1\r\nz\r\n", "STORED\r\n");

    for k in [
        "neg",
        "past_abs",
        "abs_1970",
        "gat_neg",
        "touch_neg",
        "addable",
    ] {
        c.req(format!("get {k}\r\n"), "END\r\n");
    }
    // an expired key can be added again
    c.req("add neg 0 0 1\r\nC\r\n", "STORED\r\n");
    for k in [
        "ttl2",
        "forever",
        "future_abs",
        "thirty_days",
        "touched_short",
        "gat_short",
    ] {
        assert!(c.get(k).is_some(), "{k} expired too early");
    }
    assert_eq!(c.get("incr_keeps_ttl").unwrap().1, b"10");

    std::thread::sleep(Duration::from_millis(3300));
    for k in [
        "ttl2",
        "soon_abs",
        "touched_short",
        "gat_short",
        "incr_keeps_ttl",
        "append_keeps_ttl",
    ] {
        c.req(format!("get {k}\r\n"), "END\r\n");
    }
    for k in [
        "forever",
        "future_abs",
        "thirty_days",
        "touched_long",
        "touched_zero",
        "neg",
    ] {
        assert!(c.get(k).is_some(), "{k} must still be there");
    }
    // expired items cannot be touched, incremented, replaced or deleted
    c.req("touch ttl2 10\r\n", "NOT_FOUND\r\n");
    c.req("incr ttl2 1\r\n", "NOT_FOUND\r\n");
    c.req("replace ttl2 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.req("delete ttl2\r\n", "NOT_FOUND\r\n");
    c.req("add ttl2 0 0 1\r\nx\r\n", "STORED\r\n");
}
