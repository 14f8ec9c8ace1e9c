//! What monitoring reads: the Prometheus memcached_exporter's parse rules
//! (written from its public `pkg/exporter/exporter.go`: which keys it
//! requires, which it parses as floats, timevals or yes/no), and Debian's
//! memcached-tool `display`, `stats`, `settings` (its `dump`: `admin.rs`). The `STAT name
//! value` shape of every line is checked by `common::parse_stats`.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;

fn float(m: &BTreeMap<String, String>, k: &str) -> Option<f64> {
    m.get(k).map(|v| {
        v.parse::<f64>()
            .unwrap_or_else(|_| panic!("{k}={v:?} is not a number"))
    })
}

fn timeval(m: &BTreeMap<String, String>, k: &str) -> f64 {
    let v = &m[k];
    let parts: Vec<&str> = v.split('.').collect();
    assert_eq!(parts.len(), 2, "{k}={v:?} is not sec.usec");
    assert_eq!(parts[1].len(), 6, "{k}={v:?}: microseconds in six digits");
    parts[0].parse::<f64>().unwrap() + parts[1].parse::<f64>().unwrap() / 1e6
}

#[test]
fn prometheus_exporter_parses_everything() {
    let s = Server::corecached(&["-t", "2"]);
    let mut c = s.conn();
    c.set("a", 0, 0, b"x");
    c.send("gets a\r\n");
    c.read_end();
    c.req("cas a 0 0 1 1\r\ny\r\n", "EXISTS\r\n");
    c.req("cas nope 0 0 1 1\r\ny\r\n", "NOT_FOUND\r\n");
    let st = c.stats("");
    // Required: the set metric is cmd_set minus the three CAS counters.
    for k in ["cmd_set", "cas_misses", "cas_hits", "cas_badval"] {
        assert!(float(&st, k).is_some(), "stats lacks {k}");
    }
    assert_eq!(float(&st, "cas_misses"), Some(1.0));
    assert_eq!(float(&st, "cas_badval"), Some(1.0));
    assert!(timeval(&st, "rusage_user") >= 0.0);
    assert!(timeval(&st, "rusage_system") >= 0.0);
    for k in [
        "uptime",
        "time",
        "cmd_flush",
        "bytes",
        "limit_maxbytes",
        "curr_items",
        "total_items",
        "bytes_read",
        "bytes_written",
        "curr_connections",
        "total_connections",
        "rejected_connections",
        "conn_yields",
        "listen_disabled_num",
        "evictions",
        "reclaimed",
        "store_too_large",
        "store_no_memory",
        "accepting_conns",
        "get_hits",
        "get_misses",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
        "touch_hits",
        "touch_misses",
    ] {
        assert!(float(&st, k).is_some(), "stats lacks {k}");
    }
    let settings = c.stats("settings");
    assert_eq!(float(&settings, "maxconns"), Some(1024.0));
    if settings.get("lru_crawler").map(String::as_str) == Some("yes") {
        for k in ["lru_crawler_sleep", "lru_crawler_tocrawl"] {
            assert!(float(&settings, k).is_some(), "settings lacks {k}");
        }
        for k in [
            "hot_lru_pct",
            "warm_lru_pct",
            "hot_max_factor",
            "warm_max_factor",
        ] {
            float(&settings, k);
        }
        if let Some(v) = settings.get("lru_maintainer_thread") {
            assert!(v == "yes" || v == "no", "lru_maintainer_thread={v}");
        }
    }
    let items = c.stats("items");
    assert!(!items.is_empty());
    for (k, v) in &items {
        let parts: Vec<&str> = k.split(':').collect();
        assert!(parts.len() == 3 && parts[0] == "items", "items key {k}");
        parts[1].parse::<u32>().expect("class id");
        v.parse::<f64>().unwrap_or_else(|_| panic!("items {k}={v}"));
    }
    let slabs = c.stats("slabs");
    let mut classes = 0;
    for (k, v) in &slabs {
        if let Some((class, field)) = k.split_once(':') {
            class.parse::<u32>().expect("class id");
            v.parse::<f64>().unwrap_or_else(|_| panic!("slabs {k}={v}"));
            if field == "chunk_size" {
                classes += 1;
                // Per class, the exporter sums these: all must be there.
                for f in [
                    "cmd_set",
                    "cas_hits",
                    "cas_badval",
                    "get_hits",
                    "delete_hits",
                    "incr_hits",
                    "decr_hits",
                    "touch_hits",
                    "chunks_per_page",
                    "total_pages",
                    "total_chunks",
                    "used_chunks",
                    "free_chunks",
                    "free_chunks_end",
                ] {
                    assert!(
                        slabs.contains_key(&format!("{class}:{f}")),
                        "slabs lacks {class}:{f}"
                    );
                }
            }
        }
    }
    assert!(classes >= 1);
}

fn tool(port: u16, cmd: &str) -> String {
    let out = Command::new("perl")
        .arg("/usr/share/memcached/scripts/memcached-tool")
        .arg(format!("127.0.0.1:{port}"))
        .arg(cmd)
        .output()
        .expect("perl and memcached's memcached-tool (Debian package memcached)");
    assert!(out.status.success(), "memcached-tool {cmd}: {:?}", out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn memcached_tool_display_stats_settings() {
    let s = Server::corecached(&["-t", "2", "-m", "64"]);
    let mut c = s.conn();
    for i in 0..10 {
        c.set(&format!("k{i}"), 0, 0, b"0123456789");
    }
    c.set("big", 0, 0, &[b'b'; 5000]);
    let port = s.addr().port();
    let display = tool(port, "display");
    let rows: Vec<&str> = display.lines().skip(1).collect();
    // One row per class holding items: the 10 small ones and the big one.
    assert_eq!(rows.len(), 2, "{display}");
    let counts: u64 = rows
        .iter()
        .map(|r| r.split_whitespace().nth(4).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts, 11, "{display}");
    let stats = tool(port, "stats");
    let get = |text: &str, k: &str| -> String {
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(k)).then(|| w.next().unwrap_or("").to_string())
            })
            .unwrap_or_else(|| panic!("no {k} in {text}"))
    };
    assert_eq!(get(&stats, "curr_items"), "11");
    let settings = tool(port, "settings");
    assert_eq!(get(&settings, "maxbytes"), (64u64 << 20).to_string());
    assert_eq!(get(&settings, "maxconns"), "1024");
}
