//! Memory figures of `stats` / `stats settings` / `stats slabs` that come
//! from the shared page budget, and an item larger than one shard's share.

use crate::common;
use common::*;

/// `slab_global_page_pool` counts the free pages waiting in the shared pool
/// (as memcached counts its global page pool), and `slab_chunk_max` is the
/// largest slab chunk: half the page size, which depends on `-m` per shard.
#[test]
fn page_pool_and_chunk_max_are_reported() {
    if skip_unless_corecached("slab_page_size and the pool are corecached's") {
        return;
    }
    let s = Server::with_args(&["-m", "64", "-t", "2"]);
    let mut c = s.conn();
    let slabs = c.stats("slabs");
    let page: u64 = slabs["slab_page_size"].parse().unwrap();
    assert_eq!(page, 64 << 10, "-m 64 over 2 shards: 64 KiB pages");
    assert_eq!(
        c.stats("settings")["slab_chunk_max"],
        (page / 2).to_string()
    );
    // Items whose memory is exactly one page go to the pool when deleted.
    let v = vec![b'a'; 63_000];
    for i in 0..100 {
        c.send(format!("set a{i} 0 0 {}\r\n", v.len()));
        c.send(&v);
        c.req("\r\n", "STORED\r\n");
    }
    for i in 0..100 {
        c.req(format!("delete a{i}\r\n"), "DELETED\r\n");
    }
    let pooled: u64 = c.stats("slabs")["shard_pages_pooled"].parse().unwrap();
    assert!(pooled >= 90, "{pooled} pages pooled");
    assert_eq!(c.stats("")["slab_global_page_pool"], pooled.to_string());
}

/// An item within `-I` but larger than one shard's share of `-m` (96 MiB
/// over 3 shards) is stored, as memcached stores it.
#[test]
fn an_item_larger_than_a_shard_share_is_stored() {
    let s = Server::with_args(&["-m", "96", "-t", "3", "-I", "48m"]);
    let mut c = s.conn();
    let v = vec![b'x'; 40 << 20];
    c.send("set big 0 0 41943040\r\n");
    c.send(&v);
    c.req("\r\n", "STORED\r\n");
    c.send("get big\r\n");
    assert_eq!(c.line(), "VALUE big 0 41943040");
    assert_eq!(c.read_n(v.len() + 2).len(), v.len() + 2);
    c.req("", "END\r\n");
}
