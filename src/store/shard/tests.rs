//! Unit tests of the shard's command semantics.

use super::*;
use crate::store::{ArithRequest, DeleteRequest, MetaGet, StoreRequest};

fn shard() -> Shard {
    Shard::new(0, 1, &StoreConfig::default())
}

#[test]
fn set_get_delete() {
    let mut s = shard();
    assert!(matches!(
        s.store(
            &StoreRequest {
                flags: 5,
                ..StoreRequest::new(StoreMode::Set, b"k", b"v")
            },
            10
        ),
        StoreResult::Stored { .. }
    ));
    let it = s.get(b"k", 10, None).unwrap();
    assert_eq!((it.value, it.flags), (&b"v"[..], 5));
    assert_eq!(
        s.delete(&DeleteRequest::new(b"k"), 10),
        DeleteResult::Deleted
    );
    assert!(s.get(b"k", 10, None).is_none());
    assert_eq!(s.stats().bytes, 0);
}

#[test]
fn arith_pads_like_memcached() {
    let mut s = shard();
    s.store(&StoreRequest::new(StoreMode::Set, b"n", b"100"), 10);
    assert!(matches!(
        s.arith(&ArithRequest::new(b"n", false, 1), 10),
        ArithResult::Value { value: 99, .. }
    ));
    assert_eq!(s.get(b"n", 10, None).unwrap().value, b"99 ");
    assert!(matches!(
        s.arith(&ArithRequest::new(b"n", true, 901), 10),
        ArithResult::Value { value: 1000, .. }
    ));
    assert_eq!(s.get(b"n", 10, None).unwrap().value, b"1000");
    s.store(&StoreRequest::new(StoreMode::Set, b"x", b"abc"), 10);
    assert_eq!(
        s.arith(&ArithRequest::new(b"x", true, 1), 10),
        ArithResult::NonNumeric
    );
}

/// An item larger than the shard's share of memory is refused without
/// evicting what the shard holds.
#[test]
fn item_larger_than_the_shard_is_refused_without_flushing() {
    let cfg = StoreConfig {
        mem_limit: 4 << 20,
        max_item_size: 16 << 20,
        ..StoreConfig::default()
    };
    let mut s = Shard::new(0, 1, &cfg);
    for i in 0..100u32 {
        let k = format!("k{i}");
        assert!(matches!(
            s.store(&StoreRequest::new(StoreMode::Set, k.as_bytes(), b"v"), 10),
            StoreResult::Stored { .. }
        ));
    }
    let big = vec![b'x'; 5 << 20];
    assert_eq!(
        s.store(&StoreRequest::new(StoreMode::Set, b"big", &big), 10),
        StoreResult::OutOfMemory
    );
    assert_eq!(s.stats().curr_items, 100);
    assert!(s.get(b"k7", 10, None).is_some());
}

/// The meta stale/win state machine, at the store level (the contract
/// any shard implementation must keep).
#[test]
fn meta_win_and_stale_state_machine() {
    let mut s = shard();
    let peek = MetaGet::default();
    let bump = MetaGet {
        bump: true,
        claim_win: true,
        ..MetaGet::default()
    };
    // vivify on miss: created, won, empty, expiry set; then Z for others
    let viv = MetaGet {
        bump: true,
        claim_win: true,
        vivify: Some(40),
        new_cas: 77,
        ..MetaGet::default()
    };
    let (it, oc) = s.meta_get(b"k", 10, &viv).unwrap();
    assert_eq!(
        (oc.created, oc.won, it.win, it.value, it.cas),
        (true, true, false, &b""[..], 77)
    );
    let (it, oc) = s.meta_get(b"k", 10, &viv).unwrap();
    assert_eq!(
        (oc.created, oc.won, it.win, it.exptime, it.fetched),
        (false, false, true, 40, true)
    );
    // a store makes a fresh item: no win, not stale
    s.store(
        &StoreRequest {
            exptime: 30,
            ..StoreRequest::new(StoreMode::Set, b"k", b"v1")
        },
        10,
    );
    let (it, _) = s.meta_get(b"k", 10, &peek).unwrap();
    assert!(!it.win && !it.stale && !it.fetched);
    // recache: win below the threshold, once
    let r = MetaGet {
        recache: Some(50),
        ..bump
    };
    assert!(s.meta_get(b"k", 10, &r).unwrap().1.won);
    assert!(!s.meta_get(b"k", 10, &r).unwrap().1.won);
    // touch before recache moves the expiry the check sees
    s.store(
        &StoreRequest {
            exptime: 30,
            ..StoreRequest::new(StoreMode::Set, b"k", b"v1")
        },
        10,
    );
    let t = MetaGet {
        touch: Some(100),
        recache_after_touch: true,
        ..r
    };
    let (it, oc) = s.meta_get(b"k", 10, &t).unwrap();
    assert_eq!((it.exptime, oc.won), (30, false));
    // invalidate: stale, new CAS, win cleared; the first reader wins
    let cas0 = s.meta_get(b"k", 10, &peek).unwrap().0.cas;
    let inv = DeleteRequest {
        invalidate: true,
        touch: Some(60),
        ..DeleteRequest::new(b"k")
    };
    assert_eq!(s.delete(&inv, 10), DeleteResult::Deleted);
    // a probe (me, ma) sees the stale item but never takes its win
    let (it, oc) = s.meta_get(b"k", 10, &peek).unwrap();
    assert!(it.stale && !it.win && !oc.won);
    let (it, oc) = s.meta_get(b"k", 10, &bump).unwrap();
    assert!(it.stale && !it.win && oc.won && it.cas > cas0 && it.exptime == 60);
    let (it, oc) = s.meta_get(b"k", 10, &bump).unwrap();
    assert!(it.stale && it.win && !oc.won);
    // a CAS store with an older CAS: Exists, unless invalidate (stale store)
    let old = StoreRequest {
        cas: cas0,
        ..StoreRequest::new(StoreMode::Set, b"k", b"late")
    };
    let stale = StoreRequest {
        invalidate: true,
        ..old
    };
    assert_eq!(s.store(&old, 10), StoreResult::Exists);
    assert!(matches!(s.store(&stale, 10), StoreResult::Stored { .. }));
    let (it, _) = s.meta_get(b"k", 10, &peek).unwrap();
    assert!(it.stale && it.win && it.value == b"late" && it.exptime == 60);
    // x: empty value, kept item; E sets the CAS
    let x = DeleteRequest {
        remove_value: true,
        new_cas: 9,
        ..DeleteRequest::new(b"k")
    };
    assert_eq!(s.delete(&x, 10), DeleteResult::Deleted);
    let (it, _) = s.meta_get(b"k", 10, &peek).unwrap();
    assert_eq!(
        (it.value, it.cas, it.stale, it.win),
        (&b""[..], 9, false, false)
    );
    // append with N vivifies; append with a CAS on a miss is NotStored
    let av = StoreRequest {
        flags: 3,
        vivify: Some(70),
        ..StoreRequest::new(StoreMode::Append, b"a", b"ab")
    };
    let ac = StoreRequest {
        cas: 5,
        ..StoreRequest::new(StoreMode::Append, b"b", b"ab")
    };
    assert!(matches!(s.store(&av, 10), StoreResult::Stored { .. }));
    assert_eq!(s.store(&ac, 10), StoreResult::NotStored);
    // arith with an explicit CAS
    s.store(&StoreRequest::new(StoreMode::Set, b"n", b"5"), 10);
    assert_eq!(
        s.arith(
            &ArithRequest {
                new_cas: 1234,
                ..ArithRequest::new(b"n", true, 1)
            },
            10
        ),
        ArithResult::Value {
            value: 6,
            cas: 1234,
            created: false,
            exptime: 0,
        }
    );
}

#[test]
fn evicts_within_limit() {
    let cfg = StoreConfig {
        mem_limit: 100_000,
        ..Default::default()
    };
    let mut s = Shard::new(0, 1, &cfg);
    for i in 0..10_000u32 {
        let k = i.to_string();
        s.store(
            &StoreRequest::new(StoreMode::Set, k.as_bytes(), &[b'x'; 100]),
            10,
        );
        assert!(s.stats().bytes <= 100_000);
    }
    assert!(s.stats().evictions > 0);
}

/// mcrouter's `lease-set` in one shard call: stored only over an item
/// whose lease is out (stale here) and whose CAS is the token.
#[test]
fn lease_set_needs_an_outstanding_lease() {
    let mut s = shard();
    let set = |token| StoreRequest {
        cas: token,
        ..StoreRequest::new(StoreMode::Set, b"k", b"new")
    };
    assert_eq!(s.lease_set(&set(5), 10), StoreResult::NotStored, "missing");
    let StoreResult::Stored { cas, .. } =
        s.store(&StoreRequest::new(StoreMode::Set, b"k", b"v"), 10)
    else {
        panic!("stored")
    };
    assert_eq!(
        s.lease_set(&set(cas), 10),
        StoreResult::NotStored,
        "no lease out"
    );
    let inval = DeleteRequest {
        invalidate: true,
        ..DeleteRequest::new(b"k")
    };
    s.delete(&inval, 10);
    let cas = s.get(b"k", 10, None).unwrap().cas;
    assert_eq!(
        s.lease_set(&set(cas + 1), 10),
        StoreResult::NotStored,
        "wrong token"
    );
    assert!(matches!(
        s.lease_set(&set(cas), 10),
        StoreResult::Stored { .. }
    ));
    assert_eq!(s.get(b"k", 10, None).unwrap().value, b"new");
}

/// Each event loop keeps its own copy of the clock, refreshed every tick, so
/// near a second's turn one loop may say T while another still says T-1.
/// Neither a flush_all at T followed (in lock order) by a store at T-1, nor an
/// item stamped at T read at T-1, may lose the item. Found by difffuzz on
/// long-running servers: an `add` just after the sequence's flush_all, then
/// NOT_STORED/Not found where memcached had the item.
#[test]
fn a_loop_whose_clock_lags_a_second_keeps_what_it_stores_after_a_flush() {
    let mut s = shard();
    s.store(&StoreRequest::new(StoreMode::Set, b"old", b"v"), 99);
    s.flush_all(0, 100);
    assert!(
        s.get(b"old", 100, None).is_none(),
        "the flush took the old item"
    );
    // stored by a loop still at second 99, after the flush at 100
    s.store(&StoreRequest::new(StoreMode::Set, b"a", b"1"), 99);
    assert!(s.get(b"a", 99, None).is_some(), "read on the lagging loop");
    assert!(
        s.get(b"a", 100, None).is_some(),
        "read on the flushing loop"
    );
    // an add that fails, an incr and a get on the lagging loop re-stamp
    // the access time; none may date the item before the flush
    assert!(matches!(
        s.store(&StoreRequest::new(StoreMode::Add, b"a", b"2"), 99),
        StoreResult::NotStored
    ));
    assert!(s.get(b"a", 101, None).is_some());
    assert!(matches!(
        s.arith(&ArithRequest::new(b"a", true, 1), 99),
        ArithResult::Value { value: 2, .. }
    ));
    assert!(s.get(b"a", 101, None).is_some());
    // stamped at 105 by one loop, read at 104 by another (after the flush
    // at 100): the access time reads as 105, not as the far past
    s.store(&StoreRequest::new(StoreMode::Set, b"b", b"x"), 105);
    assert!(s.get(b"b", 104, None).is_some());
    assert!(s.get(b"b", 105, None).is_some());
}

/// A second flush_all on a loop a second behind the first must not move the
/// flush time back: an item with a client-chosen CAS above the flush's
/// version, last accessed before the first flush, stays flushed.
#[test]
fn a_later_flush_on_a_lagging_loop_does_not_bring_items_back() {
    let mut s = shard();
    let high = u64::MAX - 1;
    s.store(
        &StoreRequest {
            new_cas: high,
            ..StoreRequest::new(StoreMode::Set, b"e", b"v")
        },
        99,
    );
    s.flush_all(0, 100);
    s.flush_all(0, 99);
    assert!(s.get(b"e", 100, None).is_none());
}
