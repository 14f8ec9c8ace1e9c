//! `watch` (issue 12): memcached 1.6.18's live log stream, side by side
//! with the real memcached: the replies to `watch` and its arguments, what a
//! watcher's connection does with commands, and the log lines (fields
//! compared after masking `ts`, `gid`, `cfd` and `rport`) for the same
//! actions on another connection; evictions; a slow watcher loses lines
//! with `skipped=N`, in bounded memory.

use crate::common::{parse_stats, rss_kib, Conn, Kind, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Read log lines (`\n`-terminated) until one satisfies `last`, or the
/// deadline passes (then panic with what came).
fn lines_until(w: &mut TcpStream, last: impl Fn(&str) -> bool, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    w.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let l: Vec<u8> = buf.drain(..=i).collect();
            let l = String::from_utf8_lossy(&l[..l.len() - 1]).into_owned();
            let done = last(&l);
            out.push(l);
            if done {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "no final line; got {out:#?}");
        let mut tmp = [0u8; 65536];
        match w.read(&mut tmp) {
            Ok(0) => panic!("watcher closed; got {out:#?}"),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// Everything that arrives within `quiet` of silence.
fn drain(w: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    w.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match w.read(&mut tmp) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(_) => return out,
        }
    }
}

/// A watcher: `watch <args>` answered `OK`.
fn watcher(s: &Server, args: &str) -> TcpStream {
    let mut w = s.tcp();
    w.write_all(format!("watch{args}\r\n").as_bytes()).unwrap();
    let mut ok = [0u8; 4];
    w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    w.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK\r\n", "{:?}", s.kind);
    w
}

/// One log line's fields, `ts` and `gid` checked for shape and dropped,
/// `cfd` and `rport` checked against the client and masked.
fn masked(line: &str, cfd: &mut Option<String>, rport: u16, last_gid: &mut u64) -> String {
    let mut out = Vec::new();
    for f in line.split(' ') {
        let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("field {f:?}"));
        match k {
            "ts" => {
                let (s, us) = v.split_once('.').expect("ts=sec.usec");
                assert!(s.parse::<u64>().is_ok() && us.parse::<u32>().unwrap() < 1_000_000);
            }
            "gid" => {
                let g: u64 = v.parse().unwrap();
                assert!(g > *last_gid, "gids increase: {line}");
                *last_gid = g;
            }
            "cfd" => {
                // the same client: the same cfd on every line
                let c = cfd.get_or_insert_with(|| v.to_string());
                assert_eq!(c, v, "{line}");
                out.push("cfd=*".to_string());
            }
            "rport" => {
                assert_eq!(v, rport.to_string(), "{line}");
                out.push("rport=*".to_string());
            }
            _ => out.push(f.to_string()),
        }
    }
    out.join(" ")
}

/// The actions, one request at a time on a fresh client; the log lines
/// a `watch fetchers mutations connevents` saw, masked.
fn script_lines(k: Kind) -> Vec<String> {
    let s = Server::start_kind(k, &["-t", "2"]);
    let mut w = watcher(&s, " fetchers mutations connevents");
    let mut c = s.conn();
    let rport = c.s.local_addr().unwrap().port();
    for (req, reply) in [
        ("set a 5 0 3\r\nabc\r\n", "STORED\r\n"),
        ("get a\r\n", "VALUE a 5 3\r\nabc\r\nEND\r\n"),
        ("get b\r\n", "END\r\n"),
        ("add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        ("append a 0 0 1\r\nx\r\n", "STORED\r\n"),
        ("prepend zz 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        ("replace qq 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
        ("delete a\r\n", "DELETED\r\n"),
        ("delete a\r\n", "NOT_FOUND\r\n"),
        ("incr n 1\r\n", "NOT_FOUND\r\n"),
        ("set n 0 100 1\r\n5\r\n", "STORED\r\n"),
        ("incr n 1\r\n", "6\r\n"),
        ("touch n 100\r\n", "TOUCHED\r\n"),
        ("prepend n 7 0 2\r\nab\r\n", "STORED\r\n"),
        ("cas n 0 0 1 1\r\n1\r\n", "EXISTS\r\n"),
        ("cas nope 0 0 1 1\r\n1\r\n", "NOT_FOUND\r\n"),
        ("mg n v\r\n", "VA 3\r\nab6\r\n"),
        ("ms m 2\r\nhi\r\n", "HD\r\n"),
        ("md m\r\n", "HD\r\n"),
    ] {
        c.req(req, reply);
    }
    // a key with bytes the log URI-encodes, flags, a bigger class
    c.req(
        format!("set k%~_.-x 9 0 300\r\n{}\r\n", "v".repeat(300)),
        "STORED\r\n",
    );
    c.req(
        "get k%~_.-x\r\n",
        format!("VALUE k%~_.-x 9 300\r\n{}\r\nEND\r\n", "v".repeat(300)),
    );
    c.send("quit\r\n");
    drop(c);
    // our client's close; connection events of others (the harness's
    // readiness probe may close late, on another loop) are not ours
    let mine = format!(" rport={rport} ");
    let got = lines_until(
        &mut w,
        |l| l.contains("type=conn_close") && l.contains(&mine),
        Duration::from_secs(5),
    );
    let (mut cfd, mut gid) = (None, 0);
    got.iter()
        .filter(|l| !l.contains(" rport=") || l.contains(&mine))
        .map(|l| masked(l, &mut cfd, rport, &mut gid))
        .collect()
}

#[test]
fn log_lines_match_memcached() {
    let want = script_lines(Kind::Memcached);
    let got = script_lines(Kind::Corecached);
    assert!(want.len() > 30, "{want:#?}");
    assert_eq!(got, want);
}

/// The replies to `watch` and what the connection does afterwards, on
/// memcached and corecached alike.
fn replies(k: Kind, args: &[&str]) -> Vec<String> {
    let s = Server::start_kind(k, args);
    let mut out = Vec::new();
    for req in [
        "watch bogus\r\n",
        "watch fetchers bogus\r\n",
        "watch FETCHERS\r\n",
        "watch deletions\r\n",
        "watch noreply\r\n",
        "watch fetchers noreply\r\n",
        "get a\r\nwatch\r\n",
        "watch\r\nget a\r\n",
        "watch rawcmds sysevents proxyreqs proxyevents proxyuser\r\n",
        "watch  fetchers fetchers\r\n",
    ] {
        let mut c = s.tcp();
        c.write_all(req.as_bytes()).unwrap();
        let first = drain(&mut c, Duration::from_millis(300));
        // a watcher takes no more commands; the others still answer
        c.write_all(b"version\r\n").unwrap();
        let after = drain(&mut c, Duration::from_millis(300));
        let after = String::from_utf8_lossy(&after).replace("-corecached-0.1.0", "");
        out.push(format!(
            "{req:?} -> {:?} then {after:?}",
            String::from_utf8_lossy(&first)
        ));
    }
    out
}

#[test]
fn watch_replies_match_memcached() {
    for args in [&["-t", "2"][..], &["-t", "2", "-W"][..]] {
        let want = replies(Kind::Memcached, args);
        let got = replies(Kind::Corecached, args);
        assert_eq!(got, want, "{args:?}");
    }
}

/// memcached's limit: 20 watchers; the 21st gets its refusal. A watcher
/// that disconnects is gone (`log_watchers` counts down).
fn limit(k: Kind) -> (String, u64, u64) {
    let s = Server::start_kind(k, &["-t", "2"]);
    let ws: Vec<TcpStream> = (0..20).map(|_| watcher(&s, "")).collect();
    let mut c = s.conn();
    c.send("watch\r\n");
    let refused = c.line();
    let count = |c: &mut Conn| {
        c.send("stats\r\n");
        parse_stats(&c.read_end())["log_watchers"]
            .parse::<u64>()
            .unwrap()
    };
    let mut c = s.conn();
    let full = count(&mut c);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = count(&mut c);
    while left != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = count(&mut c);
    }
    (refused, full, left)
}

#[test]
fn watcher_limit_and_departure_match_memcached() {
    let want = limit(Kind::Memcached);
    assert_eq!(
        want,
        (
            "WATCHER_TOO_MANY log watcher limit reached".to_string(),
            20,
            0
        )
    );
    assert_eq!(limit(Kind::Corecached), want);
}

/// Fill a small cache with 1000-byte values; the eviction lines (masked
/// `la`) of the first few evictions.
fn evictions(k: Kind) -> Vec<String> {
    let s = Server::start_kind(k, &["-t", "2", "-m", "8"]);
    let mut w = watcher(&s, " evictions");
    let mut c = s.conn();
    let v = "x".repeat(1000);
    let mut n = 0;
    let mut got = Vec::new();
    while got.len() < 20 && n < 40_000 {
        let mut batch = String::new();
        for _ in 0..100 {
            batch.push_str(&format!("set k{n} 0 0 1000\r\n{v}\r\n"));
            n += 1;
        }
        c.send(batch);
        for _ in 0..100 {
            assert_eq!(c.line(), "STORED");
        }
        let raw = drain(&mut w, Duration::from_millis(20));
        got.extend(String::from_utf8_lossy(&raw).lines().map(|l| l.to_string()));
    }
    assert!(got.len() >= 20, "{k:?}: no evictions logged after {n} sets");
    got.truncate(20);
    got.iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 9, "{l}");
            assert_eq!(f[2], "type=eviction");
            let key = f[3].strip_prefix("key=k").expect(l);
            assert!(key.parse::<u32>().unwrap() < n);
            let la: u32 = f[6].strip_prefix("la=").expect(l).parse().unwrap();
            assert!(la < 60, "{l}");
            format!("{} {} {} {}", f[4], f[5], f[7], f[8])
        })
        .collect()
}

#[test]
fn eviction_lines_match_memcached() {
    let want = evictions(Kind::Memcached);
    assert_eq!(want[0], "fetch=no ttl=-1 clsid=12 size=1000");
    assert_eq!(evictions(Kind::Corecached), want);
}

/// A watcher that does not read: the server keeps serving, its memory
/// stays bounded (two 256 KiB buffers per watcher plus the socket's), and
/// when the watcher reads again it sees `skipped=N` for the lines it lost.
fn slow(k: Kind) -> (bool, u64) {
    let s = Server::start_kind(k, &["-t", "2"]);
    let w = watcher(&s, "");
    let mut c = s.conn();
    c.req("set hot 0 0 1\r\nx\r\n", "STORED\r\n");
    let base = rss_kib(s.pid());
    // 200k logged gets, ~90 bytes of log each: 18 MB of lines
    let batch = "get hot\r\n".repeat(1000);
    let one = "VALUE hot 0 1\r\nx\r\nEND\r\n".repeat(1000);
    for _ in 0..200 {
        c.req(&batch, &one);
    }
    let grown = rss_kib(s.pid()).saturating_sub(base);
    let mut w = w;
    let raw = drain(&mut w, Duration::from_millis(500));
    let text = String::from_utf8_lossy(&raw);
    let skipped = text.lines().any(|l| {
        l.strip_prefix("skipped=")
            .is_some_and(|n| n.parse::<u64>().unwrap() > 0)
    });
    c.send("stats\r\n");
    let st = parse_stats(&c.read_end());
    assert!(
        st["log_watcher_skipped"].parse::<u64>().unwrap() > 0,
        "{k:?}"
    );
    (skipped, grown)
}

#[test]
fn slow_watcher_skips_in_bounded_memory() {
    let (skipped, _) = slow(Kind::Memcached);
    assert!(skipped, "memcached announces skipped lines");
    let (skipped, grown) = slow(Kind::Corecached);
    eprintln!("corecached RSS growth with a stalled watcher: {grown} KiB");
    assert!(skipped, "corecached announces skipped lines");
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");
}

/// memcached refuses `watch` and `lru_crawler metadump` while a reply of the
/// same read is still on its response stack: after a `noreply` set or any
/// reply but a get's, `mn`'s or `quit`'s (those it writes out at once). We
/// refused a metadump after `get` and never refused `watch`.
fn pipelined(k: Kind) -> Vec<String> {
    let s = Server::start_kind(k, &["-t", "2"]);
    let mut out = Vec::new();
    for pre in [
        "set k 0 0 1 noreply\r\nx\r\n",
        "set k 0 0 1\r\nx\r\n",
        "get a\r\n",
        "gat 0 k\r\n",
        "mn\r\n",
        "mg k v\r\n",
        "version\r\n",
        "set k 0 0 1 noreply\r\nx\r\nget k\r\n",
    ] {
        for cmd in ["lru_crawler metadump all", "watch", "watch noreply"] {
            let mut c = s.tcp();
            // after a refused watch the connection still answers; after a
            // dump memcached answers what followed only later (its crawler
            // thread hands the connection back), so nothing follows a dump
            let after = if cmd.starts_with("watch") {
                "version\r\n"
            } else {
                ""
            };
            c.write_all(format!("{pre}{cmd}\r\n{after}").as_bytes())
                .unwrap();
            let got = drain(&mut c, Duration::from_millis(300));
            let got = String::from_utf8_lossy(&got)
                .replace("-corecached-0.1.0", "")
                .split(' ')
                .filter(|w| !w.starts_with("la=") && !w.starts_with("cas="))
                .collect::<Vec<_>>()
                .join(" ");
            out.push(format!("{pre:?} {cmd:?} -> {got:?}"));
        }
    }
    out
}

#[test]
fn watch_and_metadump_after_pipelined_replies_like_memcached() {
    let want = pipelined(Kind::Memcached);
    assert!(
        want.iter()
            .any(|l| l.contains("cannot pipeline other commands before watch")),
        "{want:#?}"
    );
    assert_eq!(pipelined(Kind::Corecached), want);
}

/// `lease-set` (mcrouter's) is a store like any other for `watch
/// mutations`: refused (no lease outstanding) or stored, one line each.
#[test]
fn lease_set_is_logged_stored_or_refused() {
    let s = Server::corecached(&["-t", "1"]);
    let mut w = watcher(&s, " mutations");
    let mut c = s.conn();
    c.send("lease-set lk 12345 0 0 1\r\nx\r\n");
    assert_eq!(c.line(), "NOT_STORED");
    let l = lines_until(&mut w, |l| l.contains("key=lk"), Duration::from_secs(5));
    assert!(l.last().unwrap().contains("status=not_stored"), "{l:#?}");
    c.send("lease-get lk\r\n");
    let lease = c.line();
    let token = lease.split(' ').nth(2).expect("LVALUE lk <token> ...");
    assert_eq!(c.line(), "");
    assert_eq!(c.line(), "END");
    c.send(format!("lease-set lk {token} 0 0 1\r\ny\r\n"));
    assert_eq!(c.line(), "STORED");
    let l = lines_until(
        &mut w,
        |l| l.contains("key=lk") && l.contains("status=stored"),
        Duration::from_secs(5),
    );
    assert!(!l.is_empty());
}
