//! Mixed value sizes at small `-m` with several loops: memory must not be
//! stranded in per-shard, per-class pages (issue 15). The server starts at
//! `-m 32 -t 4`, gets ~3x its memory of items with values of 50–4000 bytes
//! (a fixed size per key), and `stats` must then show `bytes` (the sum of the
//! items' sizes) at most of `-m`.
//!
//! The fraction comes from memcached 1.6.18 on the same fill
//! (`CORECACHED_TEST_SERVER=memcached cargo test --release --test it
//! memory_fill_mixed:: -- --nocapture`): it holds 0.73 of `-m` in `bytes`
//! (1 MiB pages, 42-byte-larger headers, up to 25% slab rounding), and under
//! that variable this test asks memcached for 0.70. corecached must hold at
//! least 0.85 (it holds ~0.90). Before the shared budget (4 shards of 8 MiB,
//! 1 MiB pages for ~60 busy classes) it held 0.003: the classes without a
//! page stole each other's only page on every store.

use crate::common;

use common::Server;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// corecached's floor; memcached's own run is held to `MEMCACHED_FRACTION`.
const MIN_FRACTION: f64 = 0.85;
const MEMCACHED_FRACTION: f64 = 0.70;

fn mix64(k: u64) -> u64 {
    let mut x = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[test]
fn mixed_sizes_fill_most_of_memory_with_four_loops() {
    let mem_mib = 32u64;
    let srv = Server::with_args(&["-m", &mem_mib.to_string(), "-t", "4"]);
    let mut c = srv.tcp();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let val = vec![b'v'; 4000];
    let mut buf = Vec::with_capacity(1 << 20);
    let mut sync = [0u8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut key = 0u64;
    // ~3x the memory: every class fills, then evicts.
    while sent < 3 * (mem_mib << 20) {
        buf.clear();
        for _ in 0..200 {
            let n = 50 + (mix64(key) % 3951) as usize;
            write!(buf, "set mix:{key} 0 0 {n} noreply\r\n").unwrap();
            buf.extend_from_slice(&val[..n]);
            buf.extend_from_slice(b"\r\n");
            sent += n as u64;
            key += 1;
        }
        buf.extend_from_slice(b"version\r\n");
        c.write_all(&buf).unwrap();
        let mut got = 0;
        while !sync[..got].ends_with(b"\r\n") {
            got += c.read(&mut sync[got..]).unwrap();
        }
        assert!(sync.starts_with(b"VERSION"), "{:?}", &sync[..got]);
        assert!(start.elapsed() < Duration::from_secs(120), "fill too slow");
    }
    // Let background page moves settle (a few ticker windows).
    std::thread::sleep(Duration::from_secs(3));
    let mut conn = srv.conn();
    let st = conn.stats("");
    let n = |k: &str| st.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (bytes, limit, items) = (n("bytes"), n("limit_maxbytes"), n("curr_items"));
    let slabs = conn.stats("slabs");
    let frac = bytes as f64 / limit as f64;
    eprintln!(
        "{:?} -m {mem_mib} -t 4: {key} sets, {items} items held, bytes {bytes} = {frac:.3} of -m, \
         evictions {}, slabs_moved {}, total_malloced {}, shards {:?}, pages borrowed/returned {:?}/{:?}",
        srv.kind,
        n("evictions"),
        n("slabs_moved"),
        slabs.get("total_malloced").map_or("-", |v| v.as_str()),
        slabs.get("shards"),
        slabs.get("shard_pages_borrowed"),
        slabs.get("shard_pages_returned"),
    );
    assert!(n("evictions") > 0, "filled past capacity");
    assert_eq!(limit, mem_mib << 20);
    let want = if common::is_memcached() {
        MEMCACHED_FRACTION
    } else {
        MIN_FRACTION
    };
    assert!(
        frac >= want,
        "bytes held {bytes} = {frac:.3} of -m, want >= {want}"
    );
}
