//! `stats conns` (issue 12): every listener and connection with
//! memcached's fields, checked by one parser on both corecached and the
//! real memcached 1.6.18.

use crate::common::{parse_stats, Server};
use std::collections::BTreeMap;
use std::time::Duration;

/// fd → field → value, from `STAT <fd>:<field> <value>` lines (their
/// shape checked by `common::parse_stats`).
fn parse(raw: &[u8]) -> BTreeMap<u32, BTreeMap<String, String>> {
    let mut rows: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in parse_stats(raw) {
        let (fd, field) = name.split_once(':').expect("fd:field");
        rows.entry(fd.parse().expect("numeric fd"))
            .or_default()
            .insert(field.to_string(), value);
    }
    rows
}

fn check(s: &Server) {
    let port = s.port;
    // one client that spoke 2 s ago, one that never spoke, and the asker
    let mut idle = s.conn();
    idle.req("version\r\n", "");
    let _ = idle.line();
    let silent = s.tcp();
    std::thread::sleep(Duration::from_millis(2100));
    let mut me = s.conn();
    me.send("stats conns\r\n");
    let raw = me.read_until(b"END\r\n");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let rows = parse(&raw);
    let listen = format!("tcp:127.0.0.1:{port}");
    let listeners: Vec<_> = rows
        .values()
        .filter(|r| r["state"] == "conn_listening")
        .collect();
    assert!(
        !listeners.is_empty(),
        "{:?}: a listener row\n{text}",
        s.kind
    );
    for l in &listeners {
        assert_eq!(l["addr"], listen);
        assert!(!l.contains_key("listen_addr"));
    }
    let by_addr = |a: std::net::SocketAddr| {
        let want = format!("tcp:{a}");
        rows.values()
            .find(|r| r["addr"] == want)
            .unwrap_or_else(|| panic!("{:?}: no row for {want}\n{text}", s.kind))
    };
    let me_row = by_addr(me.s.local_addr().unwrap());
    let idle_row = by_addr(idle.s.local_addr().unwrap());
    let silent_row = by_addr(silent.local_addr().unwrap());
    for r in [me_row, idle_row, silent_row] {
        assert_eq!(r["listen_addr"], listen, "{:?}", s.kind);
        assert_eq!(r.len(), 4, "addr, listen_addr, state, secs: {r:?}");
    }
    assert_eq!(me_row["state"], "conn_parse_cmd", "{:?}", s.kind);
    assert_eq!(me_row["secs_since_last_cmd"], "0", "{:?}", s.kind);
    assert!(idle_row["state"].starts_with("conn_"), "{:?}", s.kind);
    let secs: u32 = idle_row["secs_since_last_cmd"].parse().unwrap();
    assert!((1..=4).contains(&secs), "{:?}: idle {secs} s", s.kind);
    assert_eq!(rows.len(), listeners.len() + 3, "{:?}\n{text}", s.kind);
    drop(silent);
}

#[test]
fn stats_conns_lists_every_connection() {
    check(&Server::memcached(&[]));
    check(&Server::corecached(&["-t", "2"]));
}

/// Each connection's `state` as memcached names it: one that never spoke
/// `conn_new_cmd`, one waiting for its next command `conn_read` (also
/// after part of a line), one in the middle of a value `conn_nread`, a
/// watcher `conn_watch`, the asker `conn_parse_cmd`.
fn states(k: crate::common::Kind) -> Vec<(String, String)> {
    use std::io::{Read, Write};
    let s = Server::start_kind(k, &["-t", "2"]);
    let silent = s.tcp();
    let mut spoke = s.conn();
    spoke.req("version\r\n", "");
    let _ = spoke.line();
    let mut partial = s.tcp();
    partial.write_all(b"get").unwrap();
    let mut value = s.tcp();
    value.write_all(b"set x 0 0 10\r\nab").unwrap();
    let mut watcher = s.tcp();
    watcher.write_all(b"watch\r\n").unwrap();
    let mut ok = [0u8; 4];
    watcher.read_exact(&mut ok).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut me = s.conn();
    me.send("stats conns\r\n");
    let rows = parse(&me.read_until(b"END\r\n"));
    let state = |a: std::net::SocketAddr| {
        let want = format!("tcp:{a}");
        rows.values().find(|r| r["addr"] == want).unwrap()["state"].clone()
    };
    [
        ("never spoke", silent.local_addr()),
        ("spoke", spoke.s.local_addr()),
        ("part of a line", partial.local_addr()),
        ("part of a value", value.local_addr()),
        ("watcher", watcher.local_addr()),
        ("asker", me.s.local_addr()),
    ]
    .into_iter()
    .map(|(what, a)| (what.to_string(), state(a.unwrap())))
    .collect()
}

#[test]
fn connection_states_match_memcached() {
    let want = states(crate::common::Kind::Memcached);
    assert_eq!(want[0].1, "conn_new_cmd");
    assert_eq!(states(crate::common::Kind::Corecached), want);
}
