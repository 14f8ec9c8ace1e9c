//! The get/set path of a shard makes no heap allocation: items are bytes in
//! slab chunks, lookups walk the index in place, values are borrowed. With
//! replication's journal attached (a host with `--partner`), every client
//! mutation is also framed into the stream's backlog ring: no allocation
//! either.
//!
//! A counting global allocator counts allocations made by this test's thread
//! while the measured section runs.

use corecached::config::{ReplicationConfig, ReplicationMode, Secret};
use corecached::replication::Replication;
use corecached::store::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, MetaGet, Shard, Store, StoreConfig,
    StoreMode, StoreRequest, StoreResult,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if ON.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the only addition is a counter bump.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Run `f` and return how many allocations this thread made in it.
fn count<F: FnOnce()>(f: F) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    ON.with(|c| c.set(true));
    f();
    ON.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

fn stored(r: StoreResult) -> bool {
    matches!(r, StoreResult::Stored { .. })
}

#[test]
fn get_and_set_make_no_heap_allocation() {
    let cfg = StoreConfig {
        mem_limit: 64 << 20,
        ..Default::default()
    };
    let mut s = Shard::new(0, 1, &cfg);
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let val = [b'x'; 100];
    // Warm up: keys stored, index grown, wheel slot has room.
    for _ in 0..2 {
        for k in &keys {
            assert!(stored(
                s.store(&StoreRequest::new(StoreMode::Set, k, &val), 10)
            ));
        }
        assert!(stored(s.store(
            &StoreRequest {
                exptime: 500,
                ..StoreRequest::new(StoreMode::Set, b"ttl", &val)
            },
            10
        )));
        assert!(stored(
            s.store(&StoreRequest::new(StoreMode::Set, b"n", b"1000"), 10)
        ));
    }
    let n = count(|| {
        for _ in 0..5 {
            for k in &keys {
                let r = s.store(
                    &StoreRequest {
                        flags: 7,
                        ..StoreRequest::new(StoreMode::Set, k, &val)
                    },
                    10,
                );
                assert!(stored(r));
                let it = s.get(k, 10, None).expect("hit");
                assert_eq!(it.value.len(), 100);
                assert_eq!(it.flags, 7);
            }
            assert!(s.get(b"missing", 10, None).is_none());
            assert!(stored(s.store(
                &StoreRequest {
                    exptime: 500,
                    ..StoreRequest::new(StoreMode::Set, b"ttl", &val)
                },
                10
            )));
            assert!(s.touch(b"ttl", 500, 10).is_some());
            assert!(matches!(
                s.arith(&ArithRequest::new(b"n", false, 1), 10),
                ArithResult::Value { .. }
            ));
            assert!(stored(
                s.store(&StoreRequest::new(StoreMode::Set, b"n", b"1000"), 10)
            ));
        }
    });
    assert_eq!(n, 0, "allocations on the get/set path");
}

#[test]
fn evicting_sets_make_no_heap_allocation() {
    let cfg = StoreConfig {
        mem_limit: 8 << 20,
        ..Default::default()
    };
    let mut s = Shard::new(0, 1, &cfg);
    let keys: Vec<Vec<u8>> = (0..200_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let val = [b'x'; 100];
    // Fill past capacity once so the index has reached its size.
    for k in &keys {
        assert!(stored(
            s.store(&StoreRequest::new(StoreMode::Set, k, &val), 10)
        ));
    }
    while s.tick(10) {}
    assert!(s.stats().evictions > 0);
    let n = count(|| {
        for k in &keys {
            assert!(stored(
                s.store(&StoreRequest::new(StoreMode::Set, k, &val), 10)
            ));
            let _ = s.get(k, 10, None);
        }
    });
    assert_eq!(n, 0, "allocations while evicting");
}

/// The journal path: with replication's journal on the shard (as on a host
/// with `--partner`; no link is started, so the ring only fills and wraps,
/// evicting its oldest records), set, delete, touch, gat, `mg T`, incr, `md
/// I` and flush_all each frame a record into the backlog ring without a heap
/// allocation.
#[test]
fn the_replication_journal_makes_no_heap_allocation() {
    let store = Store::new(StoreConfig {
        shards: 1,
        mem_limit: 64 << 20,
        ..Default::default()
    });
    let cfg = ReplicationConfig {
        partner: Some("127.0.0.1:9".parse().unwrap()),
        listen: None,
        mode: ReplicationMode::Async,
        timeout_ms: 1000,
        secret: Secret(Vec::new()),
        // The smallest ring (64 KiB per stream): it wraps many times below.
        backlog: 64 << 10,
        backlog_age_secs: 60,
        rejoin_wait_secs: 0,
        tls: false,
        partner_name: None,
    };
    let r = Replication::start(&cfg, &store).expect("replication without a listener");
    let journaled = || r.streams[0].journaled.load(Ordering::Relaxed);
    let mut s = store.lock_shard(0);
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let val = [b'x'; 100];
    let round = |s: &mut Shard| {
        for k in &keys {
            assert!(stored(
                s.store(&StoreRequest::new(StoreMode::Set, k, &val), 10)
            ));
            assert!(s.touch(k, 500, 10).is_some());
            assert!(s.get(k, 10, Some(600)).is_some());
            assert_eq!(s.delete(&DeleteRequest::new(k), 10), DeleteResult::Deleted);
            assert!(stored(
                s.store(&StoreRequest::new(StoreMode::Set, k, &val), 10)
            ));
        }
        let t = MetaGet {
            touch: Some(700),
            ..MetaGet::default()
        };
        assert!(s.meta_get(&keys[0], 10, &t).is_some());
        assert!(stored(
            s.store(&StoreRequest::new(StoreMode::Set, b"n", b"1000"), 10)
        ));
        assert!(matches!(
            s.arith(&ArithRequest::new(b"n", false, 1), 10),
            ArithResult::Value { .. }
        ));
        let inv = DeleteRequest {
            invalidate: true,
            ..DeleteRequest::new(&keys[1])
        };
        assert_eq!(s.delete(&inv, 10), DeleteResult::Deleted);
        s.flush_all(10, 10);
        while s.tick(10) {}
    };
    // Warm up: index grown, slab pages taken, the ring wrapped.
    round(&mut s);
    round(&mut s);
    let before = journaled();
    let n = count(|| {
        for _ in 0..3 {
            round(&mut s);
        }
    });
    let records = journaled() - before;
    assert_eq!(records, 3 * (20_000 * 5 + 5), "one record per mutation");
    assert_eq!(n, 0, "allocations on the journal path");
}
