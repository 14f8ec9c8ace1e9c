//! `stats`, `stats settings`, `stats reset`: format and counter movement.
use crate::common;
use common::*;
use std::time::{Duration, Instant};

/// General stats every monitoring client reads.
const REQUIRED: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "curr_connections",
    "total_connections",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "curr_items",
    "total_items",
    "bytes",
    "limit_maxbytes",
    "evictions",
    "threads",
];

#[test]
fn general_stats_fields_and_format() {
    let s = Server::with_args(&["-t", "2", "-m", "32"]);
    let mut c = s.conn();
    let st = c.stats("");
    for f in REQUIRED {
        assert!(st.contains_key(*f), "stats lacks {f}");
    }
    for f in REQUIRED {
        if *f != "version" {
            st[*f]
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("stat {f}={} is not an unsigned integer", st[*f]));
        }
    }
    assert_eq!(st["pid"], s.pid().to_string());
    assert_eq!(st["limit_maxbytes"], (32u64 << 20).to_string());
    assert_eq!(st["threads"], "2");
    let t: i64 = st["time"].parse().unwrap();
    assert!(
        (t - unix_now()).abs() <= 2,
        "stat time {t} is not the current unix time"
    );
    for f in [
        "curr_items",
        "total_items",
        "cmd_get",
        "cmd_set",
        "evictions",
        "bytes",
    ] {
        assert_eq!(st[f], "0", "{f} on a fresh server");
    }
    c.send("version\r\n");
    let v = c.line();
    assert_eq!(format!("VERSION {}", st["version"]), v);
    // "stats" followed by spaces is the same command
    let st2 = c.stats(" ");
    assert!(st2.contains_key("cmd_get"));
    // unknown sub-command
    c.req("stats bogus\r\n", "ERROR\r\n");
}

#[test]
fn counters_move() {
    let s = Server::start();
    let mut c = s.conn();
    c.req("get a b c\r\n", "END\r\n");
    c.req("set a 0 0 1\r\n1\r\n", "STORED\r\n");
    c.req(
        "get a a b\r\n",
        "VALUE a 0 1\r\n1\r\nVALUE a 0 1\r\n1\r\nEND\r\n",
    );
    let st = c.stats("");
    assert_eq!(st["cmd_get"], "6", "cmd_get counts keys");
    assert_eq!(st["get_hits"], "2");
    assert_eq!(st["get_misses"], "4");
    assert_eq!(st["cmd_set"], "1");
    assert_eq!(st["curr_items"], "1");
    assert_eq!(st["total_items"], "1");
    assert_ne!(st["bytes"], "0");

    // gat counts as touches, not gets
    c.req("gat 0 a b\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
    c.req("touch a 0\r\ntouch b 0\r\n", "TOUCHED\r\nNOT_FOUND\r\n");
    c.req(
        "incr a 1\r\nincr b 1\r\ndecr a 1\r\ndecr b 1\r\n",
        "2\r\nNOT_FOUND\r\n1\r\nNOT_FOUND\r\n",
    );
    c.req("delete a\r\ndelete a\r\n", "DELETED\r\nNOT_FOUND\r\n");
    let st = c.stats("");
    assert_eq!(st["cmd_get"], "6");
    assert_eq!(st["cmd_touch"], "4");
    assert_eq!(st["touch_hits"], "2");
    assert_eq!(st["touch_misses"], "2");
    assert_eq!(st["incr_hits"], "1");
    assert_eq!(st["incr_misses"], "1");
    assert_eq!(st["decr_hits"], "1");
    assert_eq!(st["decr_misses"], "1");
    assert_eq!(st["delete_hits"], "1");
    assert_eq!(st["delete_misses"], "1");
    assert_eq!(st["curr_items"], "0");

    // cas: every cas is a cmd_set
    c.set("a", 0, 0, b"1");
    let (_, _, cas) = c.gets("a").unwrap();
    c.req(format!("cas a 0 0 1 {}\r\n2\r\n", cas + 1), "EXISTS\r\n");
    c.req("cas b 0 0 1 1\r\n2\r\n", "NOT_FOUND\r\n");
    c.req(format!("cas a 0 0 1 {cas}\r\n3\r\n"), "STORED\r\n");
    // failed add/replace are still set commands
    c.req(
        "add a 0 0 1\r\n1\r\nreplace b 0 0 1\r\n1\r\n",
        "NOT_STORED\r\nNOT_STORED\r\n",
    );
    let st = c.stats("");
    assert_eq!(st["cas_hits"], "1");
    assert_eq!(st["cas_misses"], "1");
    assert_eq!(st["cas_badval"], "1");
    assert_eq!(st["cmd_set"], "7");
    assert_eq!(st["curr_items"], "1");

    c.req("flush_all\r\n", "OK\r\n");
    c.req("get a\r\n", "END\r\n");
    let st = c.stats("");
    assert_eq!(st["cmd_flush"], "1");
    assert_eq!(st["get_misses"], "5");
    assert_eq!(st["evictions"], "0");
}

#[test]
fn get_expired_counter() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("e", 0, 1, b"x");
    std::thread::sleep(Duration::from_millis(2200));
    c.req("get e\r\n", "END\r\n");
    let st = c.stats("");
    assert_eq!(st["get_misses"], "1");
    // get_expired counts a get that found the item expired; a background
    // reclaimer (memcached's LRU maintainer, a timing wheel) may remove it
    // first, making it a plain miss. Both are correct.
    assert!(["0", "1"].contains(&st["get_expired"].as_str()));
}

fn wait_stat(c: &mut Conn, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = c.stat_u64(name);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed {v}, want {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connection_counters() {
    let s = Server::start();
    let mut c = s.conn();
    // let the harness's readiness probe (connect + close) be fully accounted
    std::thread::sleep(Duration::from_millis(300));
    let cur = c.stat_u64("curr_connections");
    let total = c.stat_u64("total_connections");
    let mut more: Vec<Conn> = (0..3).map(|_| s.conn()).collect();
    for m in more.iter_mut() {
        m.req("get x\r\n", "END\r\n");
    }
    wait_stat(&mut c, "curr_connections", cur + 3);
    wait_stat(&mut c, "total_connections", total + 3);
    drop(more);
    wait_stat(&mut c, "curr_connections", cur);
}

#[test]
fn stats_settings_format() {
    let s = Server::with_args(&["-t", "2", "-m", "32", "-c", "500", "-I", "2m"]);
    let mut c = s.conn();
    let st = c.stats("settings");
    assert_eq!(st["maxbytes"], (32u64 << 20).to_string());
    assert_eq!(st["maxconns"], "500");
    assert_eq!(st["tcpport"], s.port.to_string());
    assert_eq!(st["num_threads"], "2");
    assert_eq!(st["item_size_max"], (2u64 << 20).to_string());
    assert_eq!(st["cas_enabled"], "yes");
    assert_eq!(st["evictions"], "on");
    assert_eq!(st["flush_enabled"], "yes");
    assert!(st.contains_key("verbosity"));
    c.req("verbosity 1\r\n", "OK\r\n");
    assert_eq!(c.stats("settings")["verbosity"], "1");
}

#[test]
fn stats_reset() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("a", 0, 0, b"1");
    c.req("get a b\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
    c.req("incr a 1\r\n", "2\r\n");
    c.req("stats reset\r\n", "RESET\r\n");
    let st = c.stats("");
    for f in [
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "incr_hits",
        "total_items",
    ] {
        assert_eq!(st[f], "0", "{f} after stats reset");
    }
    // the cache itself is untouched
    assert_eq!(st["curr_items"], "1");
    c.req("get a\r\n", "VALUE a 0 1\r\n2\r\nEND\r\n");
    assert_eq!(c.stat_u64("get_hits"), 1);
}

#[test]
fn stats_items_and_slabs_are_well_formed() {
    let s = Server::start();
    let mut c = s.conn();
    c.set("a", 0, 0, b"1");
    let items = c.stats("items");
    assert!(!items.is_empty());
    for k in items.keys() {
        assert!(k.starts_with("items:"), "stats items line {k}");
    }
    let slabs = c.stats("slabs");
    assert!(slabs.contains_key("active_slabs"));
    assert!(slabs.contains_key("total_malloced"));
}
