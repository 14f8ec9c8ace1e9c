//! `cache_memlimit <MiB> [noreply]` (issue 12): memcached 1.6.18's replies
//! and `maxbytes` figures side by side; then what corecached does with the
//! new limit: shrinking a full cache releases pages (evicting) until the
//! store is within it, while serving; growing lets more items in.

use crate::common::{parse_stats, rss_kib, Conn, Kind, Server};
use std::time::{Duration, Instant};

/// Replies to a list of `cache_memlimit` lines (a silent one: nothing
/// before the next `version`), then `maxbytes` / `limit_maxbytes`.
fn replies(k: Kind) -> Vec<String> {
    let s = Server::start_kind(k, &["-t", "2"]);
    let mut c = s.conn();
    let mut out = Vec::new();
    for req in [
        "cache_memlimit",
        "cache_memlimit 7",
        "cache_memlimit 0",
        "cache_memlimit -1",
        "cache_memlimit abc",
        "cache_memlimit 8x",
        "cache_memlimit 16.5",
        "cache_memlimit 0x10",
        "cache_memlimit 1000000001",
        "cache_memlimit 1000000000 noreply",
        "cache_memlimit 7 noreply",
        "cache_memlimit noreply",
        "cache_memlimit 64 x y",
        "CACHE_MEMLIMIT 16",
        "cache_memlimit 64 x",
        "cache_memlimit +16",
        // strtoul: 2^32 + 8, kept to 32 bits: 8
        "cache_memlimit 4294967304",
        "cache_memlimit 12 noreply",
    ] {
        c.send(format!("{req}\r\nversion\r\n"));
        let mut lines = Vec::new();
        loop {
            let l = c.line();
            if l.starts_with("VERSION ") {
                break;
            }
            lines.push(l);
        }
        out.push(format!("{req} -> {lines:?}"));
    }
    c.send("stats settings\r\n");
    out.push(format!(
        "maxbytes {}",
        parse_stats(&c.read_end())["maxbytes"]
    ));
    c.send("stats\r\n");
    let st = parse_stats(&c.read_end());
    out.push(format!("limit_maxbytes {}", st["limit_maxbytes"]));
    out
}

#[test]
fn replies_match_memcached() {
    let want = replies(Kind::Memcached);
    assert!(want.last().unwrap().ends_with(&(12u64 << 20).to_string()));
    assert_eq!(replies(Kind::Corecached), want);
}

fn fill(c: &mut Conn, from: usize, n: usize) {
    let v = "x".repeat(1000);
    for j in (from..from + n).step_by(100) {
        let batch: String = (j..j + 100)
            .map(|i| format!("set k{i} 0 0 1000\r\n{v}\r\n"))
            .collect();
        c.send(batch);
        for _ in 0..100 {
            assert_eq!(c.line(), "STORED");
        }
    }
}

/// (`bytes`, `curr_items`, `total_malloced`).
fn figures(c: &mut Conn) -> (u64, u64, u64) {
    c.send("stats\r\n");
    let st = parse_stats(&c.read_end());
    c.send("stats slabs\r\n");
    let sl = parse_stats(&c.read_end());
    let n = |m: &std::collections::BTreeMap<String, String>, k: &str| m[k].parse::<u64>().unwrap();
    (
        n(&st, "bytes"),
        n(&st, "curr_items"),
        n(&sl, "total_malloced"),
    )
}

#[test]
fn shrinking_releases_memory_and_growing_admits_more() {
    let s = Server::corecached(&["-t", "2", "-m", "64"]);
    let mut c = s.conn();
    fill(&mut c, 0, 70_000);
    let (bytes, items, malloced) = figures(&mut c);
    assert!(malloced > 48 << 20, "filled: {malloced}");
    assert!(bytes > 48 << 20, "filled: {bytes}");
    let rss_full = rss_kib(s.pid());
    c.req("cache_memlimit 8\r\n", "OK\r\n");
    let t = Instant::now();
    // a second client keeps using the server meanwhile
    let mut other = s.conn();
    let small = loop {
        other.req("set probe 0 0 2\r\nhi\r\n", "STORED\r\n");
        other.req("get probe\r\n", "VALUE probe 0 2\r\nhi\r\nEND\r\n");
        let f = figures(&mut c);
        if f.2 <= 8 << 20 && f.0 <= 8 << 20 {
            break f;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still {f:?} after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "64 -> 8 MiB: {:?} for (bytes, items, total_malloced) {:?} -> {small:?}; RSS {rss_full} KiB -> {} KiB",
        t.elapsed(),
        (bytes, items, malloced),
        rss_kib(s.pid())
    );
    // it keeps serving within the new limit
    fill(&mut c, 100_000, 5_000);
    let after = figures(&mut c);
    assert!(after.2 <= 8 << 20 && after.0 <= 8 << 20, "{after:?}");
    c.send("get k104999\r\n");
    assert_eq!(c.line(), "VALUE k104999 0 1000");
    assert!(c.read_n(1007).ends_with(b"\r\nEND\r\n"));
    // growing: more items fit again
    c.req("cache_memlimit 64\r\n", "OK\r\n");
    fill(&mut c, 200_000, 40_000);
    let grown = figures(&mut c);
    assert!(grown.1 > 3 * after.1, "{after:?} -> {grown:?}");
    assert!(grown.2 > 32 << 20, "{grown:?}");
    c.send("stats settings\r\n");
    assert_eq!(
        parse_stats(&c.read_end())["maxbytes"],
        (64u64 << 20).to_string()
    );
}
