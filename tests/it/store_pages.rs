//! Page movement between size classes and between shards, driven the way
//! the server drives the store: several threads, each locking whatever shard
//! a key routes to for one operation, and each "owning" one shard whose
//! background work (`tick`) it runs between requests.
//!
//! What must hold throughout: a read never returns another key's bytes or a
//! wrong value; the shards together never claim more than `-m` plus the
//! bounded first-page credit; what the shards say they claim adds up to what
//! the shared budget says is claimed. And memory must flow: a shard that had
//! the whole budget to itself gives pages back when the others start
//! evicting, and a class that was starved (calcification) gets pages back.

use crate::keys;

use corecached::store::StoreMode;
use corecached::store::{DeleteRequest, Store, StoreConfig, StoreRequest};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// The value stored under key `k` at version `ver`: its length and bytes
/// are a function of both, so a wrong or torn value is detected.
fn value(k: u64, ver: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (k as u8) ^ (ver as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7);
    }
    if len >= 8 {
        v[..4].copy_from_slice(&(k as u32).to_le_bytes());
        v[4..8].copy_from_slice(&ver.to_le_bytes());
    }
    v
}

/// Check a value read for key `k`: it must be `value(k, ver, len)` for the
/// version and length it claims.
fn check(k: u64, got: &[u8], sizes: &dyn Fn(u64, u32) -> usize) {
    assert!(got.len() >= 8, "key {k}: value of {} bytes", got.len());
    let kk = u32::from_le_bytes(got[..4].try_into().unwrap());
    let ver = u32::from_le_bytes(got[4..8].try_into().unwrap());
    assert_eq!(kk, k as u32, "key {k} returned key {kk}'s value");
    assert_eq!(got.len(), sizes(k, ver), "key {k} v{ver}: length");
    assert_eq!(got, &value(k, ver, got.len())[..], "key {k} v{ver}: bytes");
}

fn key(buf: &mut Vec<u8>, k: u64) {
    buf.clear();
    keys::put_key(buf, b"pg:", k, 0);
}

/// The budget's invariants, checked from any thread at any time.
fn check_budget(store: &Store, slack: usize) {
    let b = store.budget();
    assert!(
        b.claimed() <= b.limit() + slack,
        "claimed {} over -m {} + credit {slack}",
        b.claimed(),
        b.limit()
    );
}

/// Shard `i`'s claimed bytes after its counters were refreshed.
fn shard_claimed(store: &Store, i: usize) -> u64 {
    let mut s = store.lock_shard(i);
    while s.tick(u32::MAX / 2) {}
    s.stats().mem_claimed
}

/// Four threads, four shards sharing 32 MiB. Phase 1: only keys of shard 0
/// are written, so shard 0 borrows most of the budget. Phase 2: every
/// thread writes keys of every shard; the other shards, below their share,
/// evict and become hungry, and shard 0 must give pages back until the
/// shares even out. Every read is checked all along.
#[test]
fn pages_flow_between_shards_under_concurrent_load() {
    let shards = 4;
    let mem = 32 << 20;
    let store = Arc::new(Store::new(StoreConfig {
        mem_limit: mem,
        shards,
        ..StoreConfig::default()
    }));
    let ps = store.budget().page_size;
    let slack = shards * 2 * ps;
    let share = (mem / shards) as u64;
    // Keys of shard 0, and keys of any shard.
    let mut buf = Vec::new();
    let shard0: Arc<Vec<u64>> = Arc::new(
        (0..2_000_000u64)
            .filter(|&k| {
                key(&mut buf, k);
                store.shard_of(store.hash(&buf)) == 0
            })
            .take(200_000)
            .collect(),
    );
    let sizes = |k: u64, ver: u32| 20 + ((k * 7919 + ver as u64 * 104_729) % 1500) as usize;
    let now = Arc::new(AtomicU32::new(10));
    let phase = Arc::new(AtomicU32::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..shards {
        let (store, shard0, now, phase, stop) = (
            store.clone(),
            shard0.clone(),
            now.clone(),
            phase.clone(),
            stop.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut rng = keys::Rng::new(t as u64 + 1);
            let mut buf = Vec::new();
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = if phase.load(Ordering::Relaxed) == 1 {
                    shard0[rng.below(shard0.len() as u64) as usize]
                } else {
                    rng.below(400_000)
                };
                key(&mut buf, k);
                let n = now.load(Ordering::Relaxed);
                let mut s = store.lock(&buf);
                if rng.below(3) == 0 {
                    let ver = rng.below(1000) as u32;
                    let v = value(k, ver, sizes(k, ver));
                    s.store(&StoreRequest::new(StoreMode::Set, &buf, &v), n);
                } else if let Some(it) = s.get(&buf, n, None) {
                    check(k, it.value, &sizes);
                }
                drop(s);
                ops += 1;
                if ops.is_multiple_of(200) {
                    // This thread's loop drives its own shard's background work.
                    store.lock_shard(t).tick(n);
                    check_budget(&store, slack);
                }
            }
            ops
        }));
    }
    // Phase 1: a second of clock time per 100 ms of wall time, 3 s of clock.
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now.fetch_add(1, Ordering::Relaxed);
    }
    let s0 = store.lock_shard(0).stats().mem_claimed;
    let borrowed = store.stats().pages_borrowed;
    eprintln!("phase 1: shard 0 claims {s0} of {mem} (share {share}), {borrowed} pages borrowed");
    assert!(s0 > 2 * share, "shard 0 used the others' memory: {s0}");
    assert!(borrowed > 0);
    phase.store(2, Ordering::Relaxed);
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now.fetch_add(1, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let claimed: Vec<u64> = (0..shards).map(|i| shard_claimed(&store, i)).collect();
    let st = store.stats();
    eprintln!(
        "phase 2: {ops} ops, shards claim {claimed:?}, {} pages returned, {} borrowed, pool {}",
        st.pages_returned,
        st.pages_borrowed,
        store.budget().pooled_pages()
    );
    assert!(st.pages_returned > 0, "shard 0 gave pages back");
    assert_eq!(
        claimed.iter().sum::<u64>() as usize,
        store.budget().claimed(),
        "the shards' claims add up to the budget's"
    );
    check_budget(&store, slack);
    for (i, &c) in claimed.iter().enumerate() {
        // Even load: every shard ends near its share (within 25%).
        assert!(
            c * 4 >= share * 3,
            "shard {i} holds {c}, share {share}: {claimed:?}"
        );
    }
}

/// One shard, four threads: small items take all the memory, then only
/// large items are used. Pages must move from the small class to the large
/// one while the threads run (calcification), and reads stay exact.
#[test]
fn pages_move_between_classes_under_concurrent_load() {
    let store = Arc::new(Store::new(StoreConfig {
        mem_limit: 16 << 20,
        shards: 1,
        ..StoreConfig::default()
    }));
    let small = |_k: u64, _v: u32| 100usize;
    let large = |_k: u64, _v: u32| 1500usize;
    let mut buf = Vec::new();
    let mut now = 10;
    for k in 0..300_000u64 {
        key(&mut buf, k);
        let mut s = store.lock(&buf);
        s.store(
            &StoreRequest::new(StoreMode::Set, &buf, &value(k, 1, 100)),
            now,
        );
    }
    // Large working set: 8000 keys x ~1.5 KB = 12 MB, fits in 16 MiB.
    let base = 1_000_000u64;
    let nkeys = 8000u64;
    let mut ratio = 0.0;
    for _round in 0..30 {
        now += 1;
        let hits: u64 = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4u64)
                .map(|t| {
                    let store = &store;
                    sc.spawn(move || {
                        let mut buf = Vec::new();
                        let mut hits = 0;
                        for k in (base + t..base + nkeys).step_by(4) {
                            key(&mut buf, k);
                            let mut s = store.lock(&buf);
                            match s.get(&buf, now, None) {
                                Some(it) => {
                                    check(k, it.value, &large);
                                    hits += 1;
                                }
                                None => {
                                    let v = value(k, 1, 1500);
                                    s.store(&StoreRequest::new(StoreMode::Set, &buf, &v), now);
                                }
                            }
                            drop(s);
                            if t == 0 && k.is_multiple_of(64) {
                                store.lock_shard(0).tick(now);
                            }
                        }
                        hits
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        ratio = hits as f64 / nkeys as f64;
    }
    // The small items still there read back exactly.
    for k in (0..300_000u64).step_by(97) {
        key(&mut buf, k);
        let mut s = store.lock(&buf);
        if let Some(it) = s.get(&buf, now, None) {
            check(k, it.value, &small);
        }
    }
    let st = store.stats();
    eprintln!(
        "after 30 rounds: hit ratio {ratio:.3}, {} pages moved",
        st.slabs_moved
    );
    assert!(ratio > 0.95, "hit ratio after rebalancing: {ratio}");
    assert!(st.slabs_moved >= 100, "moved {}", st.slabs_moved);
    check_budget(&store, 2 * store.budget().page_size);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random stores, reads, deletes, clock steps and background slices on
    /// two or three shards sharing a small budget: reads are exact or
    /// misses, the budget holds, and the shards' claims add up to it.
    #[test]
    fn shared_budget_never_lies(
        shards in 2usize..4,
        ops in prop::collection::vec((0u64..600, 0u32..5000, 0u8..10), 1..1500),
    ) {
        let store = Store::new(StoreConfig {
            mem_limit: 2 << 20,
            shards,
            ..StoreConfig::default()
        });
        let slack = shards * 2 * store.budget().page_size;
        let sizes = |k: u64, ver: u32| 8 + ((k * 131 + ver as u64 * 17) % 6000) as usize;
        let mut model: std::collections::HashMap<u64, u32> = Default::default();
        let mut buf = Vec::new();
        let mut now = 10;
        for (k, ver, op) in ops {
            key(&mut buf, k);
            match op {
                0..=4 => {
                    let mut s = store.lock(&buf);
                    let v = value(k, ver, sizes(k, ver));
                    let r = s.store(&StoreRequest::new(StoreMode::Set, &buf, &v), now);
                    prop_assert!(matches!(r, corecached::store::StoreResult::Stored { .. }), "{:?}", r);
                    model.insert(k, ver);
                }
                5..=7 => {
                    let mut s = store.lock(&buf);
                    if let Some(it) = s.get(&buf, now, None) {
                        let want = model.get(&k).copied();
                        prop_assert_eq!(Some(it.value.to_vec()), want.map(|v| value(k, v, sizes(k, v))));
                    }
                }
                8 => {
                    let mut s = store.lock(&buf);
                    s.delete(&DeleteRequest::new(&buf), now);
                    model.remove(&k);
                }
                _ => {
                    now += 1;
                    for i in 0..shards {
                        while store.lock_shard(i).tick(now) {}
                    }
                }
            }
            let b = store.budget();
            prop_assert!(b.claimed() <= b.limit() + slack, "claimed {}", b.claimed());
        }
        let sum: u64 = (0..shards).map(|i| shard_claimed(&store, i)).sum();
        prop_assert_eq!(sum as usize, store.budget().claimed());
    }
}
