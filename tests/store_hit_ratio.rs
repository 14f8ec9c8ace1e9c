//! The hit ratio of the store itself, in process (no sockets), on the stream
//! of issue 15: Zipf 0.99 gets over 400k keys, a value of 50–4000 bytes fixed
//! per key, set on miss, `-m 64`, with the store built as the server builds
//! it for 1, 2 and 8 event loops. Background work runs as the server's ticker
//! runs it (one slice per shard every ~1 ms of requests while busy, else
//! every ~100 ms), and the clock advances one second per 300k requests (about
//! the rate corecached-bench reaches here), so automove gets the windows it
//! gets in a real run.
//!
//! memcached 1.6.18 reaches 0.743 on this stream at every `-t` (issue 15,
//! and `scripts/hit-ratio`); the store must not fall below 0.74 at any loop
//! count. Before the shared page budget and small pages it reached 0.715 /
//! 0.234 / 0.112 over the network (0.727 / 0.178 / 0.065 here at 1 / 2 / 8
//! loops).

#[path = "../bench/loadgen/keys.rs"]
#[allow(dead_code)]
mod keys;

use corecached::store::StoreMode;
use corecached::store::{Store, StoreConfig};

const KEYS: u64 = 400_000;
const REQUESTS: u64 = 2_000_000;
const PER_SECOND: u64 = 300_000;

/// The value size of key `k`: fixed per key, uniform in 50..=4000 over keys
/// (the same rule as corecached-bench's --value-per-key).
fn vsize(k: u64) -> usize {
    let mut x = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    50 + (x % 3951) as usize
}

/// Hit ratio over the second half of the stream, and (items, bytes) held.
fn run(loops: usize, mem_mib: usize) -> (f64, u64, u64) {
    run_stream(loops, mem_mib, true, REQUESTS)
}

/// Zipf gets with set on miss, or (`zipf` false) uniform keys with one set
/// per three gets.
fn run_stream(loops: usize, mem_mib: usize, zipf: bool, requests: u64) -> (f64, u64, u64) {
    let cfg = StoreConfig::for_server(mem_mib << 20, loops, 1 << 20, false, 48, 1.25);
    let store = Store::new(cfg);
    let z = keys::Zipf::new(KEYS, 0.99);
    let mut rng = keys::Rng::new(42);
    let value = vec![b'v'; 4000];
    let mut key = Vec::with_capacity(32);
    let (mut hits, mut gets) = (0u64, 0u64);
    let mut now = 10u32;
    let mut busy = vec![true; store.shard_count()];
    for i in 0..requests {
        let k = if zipf {
            z.sample(&mut rng)
        } else {
            rng.below(KEYS)
        };
        key.clear();
        keys::put_key(&mut key, b"key:", k, 0);
        let (mut s, h) = store.lock(&key);
        let set = !zipf && rng.below(4) == 0;
        let hit = !set && s.get(h, &key, now, None).is_some();
        if set || (zipf && !hit) {
            s.store(h, &key, StoreMode::Set, 0, 0, &value[..vsize(k)], 0, now);
        }
        drop(s);
        if i >= requests / 2 && !set {
            gets += 1;
            hits += hit as u64;
        }
        if i % PER_SECOND == 0 {
            now += 1;
        }
        for (id, b) in busy.iter_mut().enumerate() {
            let period = if *b { 300 } else { 30_000 };
            if i % period == 0 {
                *b = store.lock_shard(id).tick(now);
            }
        }
    }
    let st = store.stats();
    (hits as f64 / gets as f64, st.curr_items, st.bytes)
}

#[test]
fn zipf_hit_ratio_does_not_depend_on_loops() {
    let mut worst = 1.0f64;
    for loops in [1, 2, 4, 8] {
        let (r, items, bytes) = run(loops, 64);
        eprintln!("-m 64, {loops} loop(s): hit ratio {r:.3}, {items} items, {bytes} bytes");
        worst = worst.min(r);
    }
    assert!(
        worst >= 0.74,
        "hit ratio {worst:.3} below memcached's 0.743"
    );
}

/// Uniform keys, same sizes, 1:3 sets to gets at `-m 64` on 2 loops: the
/// store holds at least the items and bytes memcached 1.6.18 held on that
/// stream over the network (45,453 items, 57.9 MB in `scripts/hit-ratio`'s
/// 30 s uniform run; corecached held 44,444 / 63.2 MB there while pages
/// hopped between classes within one background slice).
#[test]
fn uniform_stream_holds_as_many_items_as_memcached() {
    let (r, items, bytes) = run_stream(2, 64, false, 4_000_000);
    eprintln!("uniform, -m 64, 2 loops: hit ratio {r:.3}, {items} items, {bytes} bytes");
    assert!(items >= 45_453, "{items} items");
    assert!(bytes >= 57_910_217, "{bytes} bytes");
}
