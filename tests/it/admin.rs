//! memcached's admin commands (issue 12), compared with the real memcached
//! 1.6.18: `stats cachedump`, `lru_crawler metadump|crawl|enable|disable|
//! sleep|tocrawl`, `stats extstore`, `slabs automove`, and the tools that
//! use them: libmemcached's `memcdump` and memcached-tool's `dump`.
//!
//! Dumps are compared as sets of lines (memcached lists LRU order, we list
//! hash order) with CAS and last-access masked (different clocks) and
//! expiry times compared within 2 s (the two processes started at
//! different times).

use crate::common;

use common::Server;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

/// Send `script` on a fresh connection and read until `done` (a final
/// line) or the read times out.
fn call(s: &Server, script: &[u8], lines: usize) -> String {
    let mut c = s.conn();
    c.send(script);
    let mut out = String::new();
    for _ in 0..lines {
        out.push_str(&c.line());
        out.push('\n');
    }
    c.expect_silence(Duration::from_millis(100));
    out
}

/// A dump reply (through `END\r\n`), as text.
fn dump(s: &Server, cmd: &str) -> String {
    let mut c = s.conn();
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.send(cmd);
    String::from_utf8(c.read_until(b"END\r\n")).unwrap()
}

fn both() -> (Server, Server) {
    (Server::memcached(&[]), Server::corecached(&["-t", "2"]))
}

/// Every error and status reply of the admin commands, byte for byte.
#[test]
fn admin_replies_like_memcached() {
    let (mc, cc) = both();
    let scripts: &[&str] = &[
        "lru_crawler\r\nlru_crawler foo\r\nlru_crawler crawl\r\nlru_crawler crawl x\r\nlru_crawler crawl 0\r\nlru_crawler crawl 64\r\nlru_crawler crawl 1,x\r\nlru_crawler crawl 1 2\r\n",
        "lru_crawler metadump\r\nlru_crawler metadump x\r\nlru_crawler metadump 200\r\nlru_crawler metadump 0\r\nlru_crawler metadump 1 2\r\nlru_crawler mgdump all\r\n",
        "lru_crawler sleep x\r\nlru_crawler sleep 2000000\r\nlru_crawler sleep 1000000\r\nlru_crawler sleep 100\r\nlru_crawler sleep\r\nlru_crawler tocrawl x\r\nlru_crawler tocrawl 5\r\nlru_crawler tocrawl 0\r\nlru_crawler enable\r\n",
        "stats cachedump\r\nstats cachedump 1\r\nstats cachedump x 1\r\nstats cachedump 1 x\r\nstats cachedump 64 1\r\nstats cachedump 63 1\r\nstats cachedump 0 1\r\nstats cachedump 1 0\r\nstats extstore\r\n",
        "slabs automove x\r\nslabs automove 3\r\nslabs automove\r\nslabs automove 1\r\nslabs automove 0\r\nslabs automove -1\r\n",
        "set foo 5 0 3\r\nbar\r\nbget foo\r\nbget foo nope\r\nbget\r\nrefresh_certs\r\n",
        "slabs reassign\r\nslabs reassign 1\r\nslabs reassign 1 2 3\r\nslabs reassign x y\r\nslabs reassign 1 1\r\nslabs\r\nslabs foo 1\r\n",
    ];
    let counts = [8, 6, 9, 9, 6, 9, 7];
    for (sc, n) in scripts.iter().zip(counts) {
        let want = call(&mc, sc.as_bytes(), n);
        let got = call(&cc, sc.as_bytes(), n);
        assert_eq!(want, got, "script {sc:?}");
    }
    // A crawl is accepted (memcached may be BUSY with the previous one).
    for cmd in ["lru_crawler crawl all\r\n", "lru_crawler crawl 1,2\r\n"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = loop {
            let r = call(&mc, cmd.as_bytes(), 1);
            if !r.starts_with("BUSY") || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(want, "OK\n");
        assert_eq!(call(&cc, cmd.as_bytes(), 1), want, "{cmd}");
    }
    // sleep and tocrawl show in `stats settings`
    for s in [&mc, &cc] {
        let mut c = s.conn();
        c.req("lru_crawler sleep 2500\r\n", "OK\r\n");
        c.req("lru_crawler tocrawl 77\r\n", "OK\r\n");
        let st = c.stats("settings");
        assert_eq!(st["lru_crawler_sleep"], "2500", "{:?}", s.kind);
        assert_eq!(st["lru_crawler_tocrawl"], "77", "{:?}", s.kind);
    }
    // metadump of an empty cache
    for s in [&mc, &cc] {
        s.conn().req("flush_all\r\n", "OK\r\n");
        assert_eq!(dump(s, "lru_crawler metadump all\r\n"), "END\r\n");
    }
}

/// `lru_crawler disable` switches crawl and metadump off until `enable`
/// (memcached's replies while its crawler thread is stopped).
#[test]
fn crawler_switch() {
    let cc = Server::corecached(&["-t", "2"]);
    let mut c = cc.conn();
    c.req("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.req(
        "lru_crawler enable\r\n",
        "ERROR failed to start lru crawler thread\r\n",
    );
    c.req("lru_crawler disable\r\n", "OK\r\n");
    c.req("lru_crawler disable\r\n", "OK\r\n");
    c.req(
        "lru_crawler crawl all\r\n",
        "ERROR an unknown error happened\r\n",
    );
    c.req(
        "lru_crawler metadump all\r\n",
        "ERROR an unknown error happened\r\n",
    );
    c.req("lru_crawler enable\r\n", "OK\r\n");
    c.req("lru_crawler crawl all\r\n", "OK\r\n");
    c.send("lru_crawler metadump all\r\n");
    let d = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    assert!(d.starts_with("key=k exp=-1 "), "{d}");
}

/// The same items in both servers: keys with bytes memcached URL-encodes,
/// flags, TTLs, sizes across several classes, one fetched.
fn fill(s: &Server) -> Vec<String> {
    fill_keys(s, true)
}

/// `utf8`: include keys with non-ASCII bytes (libmemcached's `memcdump`
/// cuts a key at its first non-ASCII byte, for memcached as for us).
fn fill_keys(s: &Server, utf8: bool) -> Vec<String> {
    let mut c = s.conn();
    let mut keys = Vec::new();
    for i in 0..30 {
        let key = match i % 5 {
            0 => format!("plain{i}"),
            1 => format!("a%20b/{i}"),
            2 => format!("k:{i}:x~y.z_-"),
            3 if utf8 => format!("utf\u{e9}{i}"),
            3 => format!("ascii{i}"),
            _ => format!("q?{i}&=#"),
        };
        let len = [1, 50, 200, 700, 3000][i % 5];
        let flags = if i % 3 == 0 { 0 } else { i as u32 * 7 };
        let exp = if i % 4 == 0 { 1000 } else { 0 };
        c.set(&key, flags, exp, &vec![b'v'; len]);
        keys.push(key);
    }
    assert!(c.get(&keys[3]).is_some());
    keys
}

/// Normalized `lru_crawler metadump` lines: cas and la masked, exp rounded.
fn norm_metadump(d: &str) -> BTreeSet<String> {
    assert!(d.ends_with("END\r\n"), "{d:?}");
    let body = &d[..d.len() - 5];
    assert!(!body.contains('\r'), "metadump lines end with a bare \\n");
    body.split_terminator('\n')
        .map(|l| {
            l.split(' ')
                .map(|f| match f.split_once('=') {
                    Some(("cas", _)) => "cas=#".to_string(),
                    Some(("la", v)) => {
                        let la: i64 = v.parse().unwrap();
                        assert!((la - common::unix_now()).abs() < 30, "{l}");
                        "la=#".to_string()
                    }
                    Some(("exp", v)) if v != "-1" => {
                        let e: i64 = v.parse().unwrap();
                        let left = e - common::unix_now();
                        assert!((990..=1001).contains(&left), "{l}");
                        "exp=+1000".to_string()
                    }
                    _ => f.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `stats cachedump` lines of every class, exptime rounded.
fn cachedump_all(s: &Server) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for cls in 1..64 {
        let d = dump(s, &format!("stats cachedump {cls} 0\r\n"));
        for l in d.split_terminator("\r\n").filter(|l| *l != "END") {
            let (head, tail) = l.rsplit_once("; ").unwrap();
            let exp: i64 = tail.trim_end_matches(" s]").parse().unwrap();
            let exp = if exp == 0 {
                "0".to_string()
            } else {
                let left = exp - common::unix_now();
                assert!((990..=1001).contains(&left), "{l}");
                "+1000".into()
            };
            all.insert(format!("{cls} {head}; {exp} s]"));
        }
    }
    all
}

#[test]
fn cachedump_and_metadump_list_what_memcached_lists() {
    let (mc, cc) = both();
    let keys = fill(&mc);
    assert_eq!(fill(&cc), keys);
    // memcached dumps only its COLD LRU: wait until its maintainer has
    // moved every item there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = loop {
        let w = cachedump_all(&mc);
        if w.len() == keys.len() || Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        want.len(),
        keys.len(),
        "memcached lists every item: {want:?}"
    );
    let got = cachedump_all(&cc);
    assert_eq!(got, want);
    // a limit
    let d = dump(&cc, "stats cachedump 1 2\r\n");
    assert_eq!(d.matches("ITEM ").count(), 2, "{d}");

    for sel in ["all", "hash", "1,2,3", "5", "1,13"] {
        let cmd = format!("lru_crawler metadump {sel}\r\n");
        let want = norm_metadump(&dump(&mc, &cmd));
        let got = norm_metadump(&dump(&cc, &cmd));
        assert_eq!(got, want, "metadump {sel}");
        if sel == "all" {
            assert_eq!(got.len(), keys.len());
            assert!(got.iter().any(|l| l.contains("fetch=yes")));
        }
    }
}

/// libmemcached's `memcdump` lists exactly the keys we stored.
#[test]
fn memcdump_lists_the_keys() {
    let (mc, cc) = both();
    let keys = fill_keys(&cc, false);
    fill_keys(&mc, false);
    let run = |s: &Server| -> BTreeSet<String> {
        let out = Command::new("timeout")
            .args(["20", "memcdump", &format!("--servers=127.0.0.1:{}", s.port)])
            .output()
            .expect("memcdump (Debian libmemcached-tools) must be installed");
        assert!(
            out.status.success(),
            "memcdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    let want: BTreeSet<String> = keys.into_iter().collect();
    assert_eq!(run(&cc), want);
    // memcached lists its COLD LRU only: the same once every item is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while run(&mc) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(run(&mc), want);
}

/// memcached-tool's `dump` (Debian's memcached package) prints the same
/// `add` records for both servers.
#[test]
fn memcached_tool_dump() {
    let tool = "/usr/share/memcached/scripts/memcached-tool";
    assert!(
        std::path::Path::new(tool).exists(),
        "{tool} (Debian's memcached package) must be installed"
    );
    let (mc, cc) = both();
    fill(&cc);
    fill(&mc);
    let run = |s: &Server| -> BTreeMap<String, String> {
        let out = Command::new("timeout")
            .args(["30", "perl", tool, &format!("127.0.0.1:{}", s.port), "dump"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut recs = BTreeMap::new();
        let mut lines = text.split("\r\n");
        while let Some(l) = lines.next() {
            if l.is_empty() {
                continue;
            }
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[0], "add", "{l}");
            let exp: i64 = f[3].parse().unwrap();
            let exp = if exp == 0 { "0" } else { "+1000" };
            let value = lines.next().unwrap().to_string();
            recs.insert(f[1].to_string(), format!("{} {exp} {} {value}", f[2], f[4]));
        }
        recs
    };
    let want = run(&mc);
    assert_eq!(want.len(), 30);
    assert_eq!(run(&cc), want);
}

/// A metadump of many items is written a slice at a time, like a multi-get:
/// while the client does not read, the server holds a bounded output buffer
/// (`response_obj_bytes`), not the whole dump; read in full, it lists every
/// item once, then `END`.
#[test]
fn metadump_of_many_items_is_streamed() {
    if common::skip_unless_corecached("corecached's output-buffer counter") {
        return;
    }
    const ITEMS: usize = 300_000;
    let s = Server::corecached(&["-m", "512", "-t", "2"]);
    let mut c = s.conn();
    let mut batch = Vec::new();
    for i in 0..ITEMS {
        batch.extend_from_slice(
            format!("set metadump-key-{i:08} 0 0 1 noreply\r\nx\r\n").as_bytes(),
        );
        if batch.len() > 1 << 20 || i + 1 == ITEMS {
            batch.extend_from_slice(b"version\r\n");
            c.send(&batch);
            assert!(c.line().starts_with("VERSION"));
            batch.clear();
        }
    }
    assert_eq!(c.stat_u64("curr_items"), ITEMS as u64);

    // Ask for the dump (about 28 MB) and do not read it yet.
    let mut d = s.conn();
    d.send("lru_crawler metadump all\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    let held = c.stat_u64("response_obj_bytes");
    assert!(
        held < 2 << 20,
        "the dumping connection holds {held} bytes of output while its client does not read"
    );

    // Now read it all.
    d.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !all.ends_with(b"END\r\n") {
        let n = std::io::Read::read(&mut d.s, &mut buf).expect("read the dump");
        assert!(n > 0, "connection closed after {} bytes", all.len());
        all.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(all).unwrap();
    let keys: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("key="))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        text.lines().count(),
        ITEMS + 1,
        "one line per item, then END"
    );
    assert_eq!(keys.len(), ITEMS, "every item listed once");
    assert!(keys.contains("metadump-key-00000000") && keys.contains("metadump-key-00299999"));
}
