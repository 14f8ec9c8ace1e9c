//! The get/set path of a shard makes no heap allocation: items are bytes in
//! slab chunks, lookups walk the index in place, values are borrowed.
//!
//! A counting global allocator counts allocations made by this test's thread
//! while the measured section runs.

use corecached::store::StoreMode;
use corecached::store::{ArithResult, Shard, StoreConfig, StoreResult};
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
            assert!(stored(s.store(0, k, StoreMode::Set, 0, 0, &val, 0, 10)));
        }
        assert!(stored(s.store(
            0,
            b"ttl",
            StoreMode::Set,
            0,
            500,
            &val,
            0,
            10
        )));
        assert!(stored(s.store(
            0,
            b"n",
            StoreMode::Set,
            0,
            0,
            b"1000",
            0,
            10
        )));
    }
    let n = count(|| {
        for _ in 0..5 {
            for k in &keys {
                let r = s.store(0, k, StoreMode::Set, 7, 0, &val, 0, 10);
                assert!(stored(r));
                let it = s.get(0, k, 10, None).expect("hit");
                assert_eq!(it.value.len(), 100);
                assert_eq!(it.flags, 7);
            }
            assert!(s.get(0, b"missing", 10, None).is_none());
            assert!(stored(s.store(
                0,
                b"ttl",
                StoreMode::Set,
                0,
                500,
                &val,
                0,
                10
            )));
            assert!(s.touch(0, b"ttl", 500, 10).is_some());
            assert!(matches!(
                s.arith(0, b"n", false, 1, None, 0, 10),
                ArithResult::Value { .. }
            ));
            assert!(stored(s.store(
                0,
                b"n",
                StoreMode::Set,
                0,
                0,
                b"1000",
                0,
                10
            )));
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
        assert!(stored(s.store(0, k, StoreMode::Set, 0, 0, &val, 0, 10)));
    }
    while s.tick(10) {}
    assert!(s.stats().evictions > 0);
    let n = count(|| {
        for k in &keys {
            assert!(stored(s.store(0, k, StoreMode::Set, 0, 0, &val, 0, 10)));
            let _ = s.get(0, k, 10, None);
        }
    });
    assert_eq!(n, 0, "allocations while evicting");
}
