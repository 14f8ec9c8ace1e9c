//! With a small `-m`, fewer shards than event loops (each shard keeps at
//! least 32 MiB, docs/ARCHITECTURE.md "Storage"), said at start-up and in
//! `stats slabs`; a large enough `-m` gets one shard per loop. Every loop
//! still serves requests for every key.

use crate::common;

use common::{skip_unless_corecached, Server};

fn slabs_stat(s: &Server, name: &str) -> u64 {
    let mut c = s.conn();
    c.stats("slabs")
        .get(name)
        .unwrap_or_else(|| panic!("stats slabs has no {name}"))
        .parse()
        .unwrap()
}

#[test]
fn small_memory_uses_fewer_shards_and_says_so() {
    if skip_unless_corecached("shards are corecached's") {
        return;
    }
    let s = Server::corecached(&["-m", "64", "-t", "4"]);
    // Connections land on every loop; all of them reach every key.
    let mut conns: Vec<_> = (0..8).map(|_| s.conn()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.req(format!("set k{i} 0 0 1\r\n{i}\r\n"), "STORED\r\n");
    }
    for c in conns.iter_mut() {
        for i in 0..8 {
            c.req(
                format!("get k{i}\r\n"),
                format!("VALUE k{i} 0 1\r\n{i}\r\nEND\r\n"),
            );
        }
    }
    assert_eq!(slabs_stat(&s, "shards"), 2);
    assert_eq!(slabs_stat(&s, "slab_page_size"), 64 << 10);
    let log = s.stderr();
    assert!(
        log.contains("2 shard(s) for 4 event loops") && log.contains("-m 128 or more"),
        "start-up note: {log:?}"
    );

    let s = Server::corecached(&["-m", "2048", "-t", "4"]);
    assert_eq!(slabs_stat(&s, "shards"), 4);
    assert_eq!(slabs_stat(&s, "slab_page_size"), 512 << 10);
    assert!(!s.stderr().contains("note:"), "{}", s.stderr());
}
