//! The one mutation seam: every client mutation of a shard ends in one
//! commit point (`Shard::commit_*`, private) that hands the outcome to the
//! shard's [`Journal`], if one is set (replication sets one; without it the
//! commit point costs one branch and allocates nothing).
//!
//! What is recorded: post-images, not commands. After a store, append,
//! incr/decr, touch, `gat`, `mg` with `T` or `N`, `ms`, `md I`, `md x`,
//! `lease-set` ...: the item as it is now, read back from the arena
//! ([`Change::Item`]). After a delete, `md`, or the unlink of a set refused
//! as too large or for memory: [`Change::Removed`] with a fresh version.
//! After flush_all: [`Change::Flush`]. A command that changes nothing (a
//! miss, `add` over an existing item, a CAS mismatch, a plain read, a read
//! that only hands out a recache win) records nothing.
//!
//! What is never recorded: evictions, expiry and flush reclaims, page moves,
//! index growth (the engine's own work: a cache may drop an item on one host
//! and keep it on the other; expiry times travel with the items), and
//! changes applied from the partner with [`Shard::apply`](super::Shard::apply)
//! (applied copies are never forwarded again).
//!
//! Versions: an item's CAS is its version (a hybrid logical clock, see
//! `hlc.rs`). Client-given CAS values (meta `E`) and applied changes are
//! observed by the clock, so a later local write gets a larger version.
//!
//! Revisions: memcached's touch, `gat` and `mg T` do not change an item's
//! CAS, and neither does `md x` without `E`. Their post-image carries the
//! CAS the partner's copy already has, so it cannot win by CAS; it carries
//! a revision instead (`Change::Item::rev`, a fresh version from the same
//! clock) and `apply` takes it over an item of that same CAS. Which of two
//! revisions of one CAS wins is the caller's to decide (replication keeps
//! recent revisions per key; docs/REPLICATION.md, "Revisions").

/// A client mutation's outcome, as the shard's commit point sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The item as it is after the mutation (set/add/replace/append/prepend/cas/
    /// incr/decr/touch/gat/mg with T or N/ms/md I/md x/lease-set ...).
    Item {
        key: &'a [u8],
        value: &'a [u8],
        flags: u32,
        /// Relative time (`crate::time`), 0 = never.
        exptime: u32,
        cas: u64,
        stale: bool,
        /// 0: `cas` is the item's new version. Otherwise the change kept the
        /// item's CAS (touch, gat, `mg T`, `md x` without `E`) and `rev` is
        /// a fresh version that orders it among the revisions of `cas`.
        rev: u64,
    },
    /// A client removed the key (delete, md, a failed too-large set that
    /// unlinks); `cas` is a fresh version from the shard's clock.
    Removed { key: &'a [u8], cas: u64 },
    /// flush_all taking effect at relative time `at`, with a fresh version.
    Flush { at: u32, cas: u64 },
}

/// Where a shard's commit point sends its changes. Called under the shard
/// lock: keep it short, never block (copy the change into a buffer).
pub trait Journal: Send {
    fn record(&mut self, change: &Change<'_>);
}

/// What `Shard::apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Removed,
    Flushed,
    /// the local item has an equal or newer version: nothing changed
    Older,
    /// a revision (`rev` != 0) of the local item's own CAS was taken over
    Revised,
    OutOfMemory,
    TooLarge,
}

#[cfg(test)]
pub(crate) mod tests {
    //! The seam's contract: one change per client mutation, the post-image
    //! read back from the shard; nothing from the engine's own work or from
    //! applied changes; last writer wins by CAS in `apply`.
    use super::*;
    use crate::store::{
        ArithRequest, ArithResult, DeleteRequest, DeleteResult, MetaGet, Shard, Store, StoreConfig,
        StoreMode, StoreRequest, StoreResult,
    };
    use std::sync::{Arc, Mutex};

    /// An owned copy of a change.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Rec {
        Item {
            key: Vec<u8>,
            value: Vec<u8>,
            flags: u32,
            exptime: u32,
            cas: u64,
            stale: bool,
            rev: u64,
        },
        Removed {
            key: Vec<u8>,
            cas: u64,
        },
        Flush {
            at: u32,
            cas: u64,
        },
    }

    impl Rec {
        pub fn cas(&self) -> u64 {
            match *self {
                Rec::Item { cas, .. } | Rec::Removed { cas, .. } | Rec::Flush { cas, .. } => cas,
            }
        }
    }

    /// A journal that keeps every change it is given.
    #[derive(Clone, Default)]
    pub struct Recorder(pub Arc<Mutex<Vec<Rec>>>);

    impl Recorder {
        /// The changes recorded since the last call.
        pub fn take(&self) -> Vec<Rec> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl Journal for Recorder {
        fn record(&mut self, c: &Change<'_>) {
            let r = match *c {
                Change::Item {
                    key,
                    value,
                    flags,
                    exptime,
                    cas,
                    stale,
                    rev,
                } => Rec::Item {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    flags,
                    exptime,
                    cas,
                    stale,
                    rev,
                },
                Change::Removed { key, cas } => Rec::Removed {
                    key: key.to_vec(),
                    cas,
                },
                Change::Flush { at, cas } => Rec::Flush { at, cas },
            };
            self.0.lock().unwrap().push(r);
        }
    }

    fn recorded(cfg: &StoreConfig) -> (Shard, Recorder) {
        let mut s = Shard::new(0, 1, cfg);
        let r = Recorder::default();
        s.set_journal(Some(Box::new(r.clone())));
        (s, r)
    }

    fn item(key: &[u8], value: &[u8], flags: u32, exptime: u32, cas: u64, stale: bool) -> Rec {
        Rec::Item {
            key: key.to_vec(),
            value: value.to_vec(),
            flags,
            exptime,
            cas,
            stale,
            rev: 0,
        }
    }

    /// A revision of the item at `cas` (its CAS kept); returns its `rev`,
    /// which must be newer than `after`.
    #[track_caller]
    fn revision(r: Rec, want: Rec, after: u64) -> u64 {
        let Rec::Item { rev, .. } = r else {
            panic!("{r:?}")
        };
        assert!(rev > after, "revision {rev} not after {after}");
        let Rec::Item {
            key,
            value,
            flags,
            exptime,
            cas,
            stale,
            ..
        } = want
        else {
            unreachable!()
        };
        assert_eq!(
            r,
            Rec::Item {
                key,
                value,
                flags,
                exptime,
                cas,
                stale,
                rev
            }
        );
        rev
    }

    /// The only change recorded since the last call.
    fn one(r: &Recorder) -> Rec {
        let v = r.take();
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    fn stored(r: StoreResult) -> u64 {
        match r {
            StoreResult::Stored { cas, .. } => cas,
            r => panic!("{r:?}"),
        }
    }

    fn cas_of(s: &mut Shard, k: &[u8]) -> u64 {
        s.meta_get(k, 10, &MetaGet::default()).unwrap().0.cas
    }

    #[test]
    fn every_client_mutation_records_its_post_image_once() {
        let (mut s, r) = recorded(&StoreConfig::default());
        let set = StoreMode::Set;
        // set / add / replace / cas
        let c = stored(s.store(
            &StoreRequest {
                flags: 3,
                exptime: 50,
                ..StoreRequest::new(set, b"k", b"v1")
            },
            10,
        ));
        assert_eq!(one(&r), item(b"k", b"v1", 3, 50, c, false));
        assert_eq!(
            s.store(&StoreRequest::new(StoreMode::Add, b"k", b"x"), 10),
            StoreResult::NotStored
        );
        let c = stored(s.store(&StoreRequest::new(StoreMode::Add, b"a", b"x"), 10));
        assert_eq!(one(&r), item(b"a", b"x", 0, 0, c, false));
        let c = stored(s.store(
            &StoreRequest {
                flags: 1,
                ..StoreRequest::new(StoreMode::Replace, b"k", b"v2")
            },
            10,
        ));
        assert_eq!(one(&r), item(b"k", b"v2", 1, 0, c, false));
        assert_eq!(
            s.store(&StoreRequest::new(StoreMode::Replace, b"zz", b"x"), 10),
            StoreResult::NotStored
        );
        assert_eq!(
            s.store(
                &StoreRequest {
                    cas: c + 1,
                    ..StoreRequest::new(StoreMode::Cas, b"k", b"x")
                },
                10
            ),
            StoreResult::Exists
        );
        let c = stored(s.store(
            &StoreRequest {
                flags: 2,
                cas: c,
                ..StoreRequest::new(StoreMode::Cas, b"k", b"v3")
            },
            10,
        ));
        assert_eq!(one(&r), item(b"k", b"v3", 2, 0, c, false));
        // append / prepend: the combined item, the old flags and expiry
        let c = stored(s.store(
            &StoreRequest {
                flags: 9,
                ..StoreRequest::new(StoreMode::Append, b"k", b"+")
            },
            10,
        ));
        assert_eq!(one(&r), item(b"k", b"v3+", 2, 0, c, false));
        let c = stored(s.store(
            &StoreRequest {
                flags: 9,
                ..StoreRequest::new(StoreMode::Prepend, b"k", b"-")
            },
            10,
        ));
        assert_eq!(one(&r), item(b"k", b"-v3+", 2, 0, c, false));
        // incr/decr: in place (padded), grown, created
        stored(s.store(&StoreRequest::new(set, b"n", b"100"), 10));
        r.take();
        let ArithResult::Value { cas, .. } = s.arith(&ArithRequest::new(b"n", false, 1), 10) else {
            panic!()
        };
        assert_eq!(one(&r), item(b"n", b"99 ", 0, 0, cas, false));
        let ArithResult::Value { cas, .. } = s.arith(&ArithRequest::new(b"n", true, 901), 10)
        else {
            panic!()
        };
        assert_eq!(one(&r), item(b"n", b"1000", 0, 0, cas, false));
        let ArithResult::Value { cas, .. } = s.arith(
            &ArithRequest {
                initial: Some((7, 40)),
                ..ArithRequest::new(b"m", true, 1)
            },
            10,
        ) else {
            panic!()
        };
        assert_eq!(one(&r), item(b"m", b"7", 0, 40, cas, false));
        assert_eq!(
            s.arith(&ArithRequest::new(b"none", true, 1), 10),
            ArithResult::NotFound
        );
        // touch / gat: new expiry, same CAS, each a newer revision of it; a
        // plain get records nothing
        let c = cas_of(&mut s, b"a");
        assert_eq!(s.touch(b"a", 70, 10), Some(c));
        let r1 = revision(one(&r), item(b"a", b"x", 0, 70, c, false), c);
        assert!(s.get(b"a", 10, Some(80)).is_some());
        let r2 = revision(one(&r), item(b"a", b"x", 0, 80, c, false), r1);
        assert!(s.get(b"a", 10, None).is_some());
        assert!(s.touch(b"none", 5, 10).is_none());
        // mg: T records, N on a miss records the created item, a read that
        // only takes the win records nothing
        let t = MetaGet {
            touch: Some(90),
            bump: true,
            ..MetaGet::default()
        };
        s.meta_get(b"a", 10, &t).unwrap();
        revision(one(&r), item(b"a", b"x", 0, 90, c, false), r2);
        let n = MetaGet {
            vivify: Some(30),
            claim_win: true,
            new_cas: 0,
            ..MetaGet::default()
        };
        let (it, _) = s.meta_get(b"v", 10, &n).unwrap();
        let vc = it.cas;
        assert_eq!(one(&r), item(b"v", b"", 0, 30, vc, false));
        s.meta_get(b"v", 10, &n).unwrap();
        s.meta_get(b"v", 10, &MetaGet::default()).unwrap();
        // ms I (stale store with an older CAS), ms MA with N
        let stale = StoreRequest {
            flags: 4,
            cas: vc - 1,
            invalidate: true,
            ..StoreRequest::new(set, b"v", b"late")
        };
        let c = stored(s.store(&stale, 10));
        assert_eq!(one(&r), item(b"v", b"late", 4, 30, c, true));
        let viv = StoreRequest {
            flags: 5,
            vivify: Some(60),
            ..StoreRequest::new(StoreMode::Append, b"w", b"ab")
        };
        let c = stored(s.store(&viv, 10));
        assert_eq!(one(&r), item(b"w", b"ab", 5, 60, c, false));
        // md I: stale, new CAS, new expiry; md x: emptied, flags and expiry
        let inv = DeleteRequest {
            invalidate: true,
            touch: Some(33),
            ..DeleteRequest::new(b"w")
        };
        assert_eq!(s.delete(&inv, 10), DeleteResult::Deleted);
        let c = cas_of(&mut s, b"w");
        assert_eq!(one(&r), item(b"w", b"ab", 5, 33, c, true));
        let x = DeleteRequest {
            remove_value: true,
            flags: 8,
            exptime: 44,
            ..DeleteRequest::new(b"w")
        };
        assert_eq!(s.delete(&x, 10), DeleteResult::Deleted);
        revision(one(&r), item(b"w", b"", 8, 44, c, false), c);
        // delete: a removal with a fresh version; a miss or a CAS mismatch
        // records nothing
        assert_eq!(
            s.delete(
                &DeleteRequest {
                    cas: c + 1,
                    ..DeleteRequest::new(b"w")
                },
                10
            ),
            DeleteResult::Exists
        );
        assert_eq!(
            s.delete(&DeleteRequest::new(b"w"), 10),
            DeleteResult::Deleted
        );
        let rm = one(&r);
        assert!(matches!(&rm, Rec::Removed { key, cas } if key == b"w" && *cas > c));
        assert_eq!(
            s.delete(&DeleteRequest::new(b"w"), 10),
            DeleteResult::NotFound
        );
        // too large for -I: nothing
        let big = vec![0u8; 2 << 20];
        assert_eq!(
            s.store(&StoreRequest::new(set, b"k", &big), 10),
            StoreResult::TooLarge
        );
        // flush_all: one Flush, now or later
        s.flush_all(10, 10);
        let f = one(&r);
        assert!(matches!(f, Rec::Flush { at: 10, cas } if cas > rm.cas()));
        s.flush_all(20, 10);
        assert!(matches!(one(&r), Rec::Flush { at: 20, .. }));
        assert!(r.take().is_empty());
    }

    /// A set that fails for memory drops the key's old value (memcached):
    /// that removal is a client change.
    #[test]
    fn a_set_refused_for_memory_records_the_removal() {
        let cfg = StoreConfig {
            mem_limit: 1 << 20,
            no_evict: true,
            ..StoreConfig::default()
        };
        let (mut s, r) = recorded(&cfg);
        stored(s.store(&StoreRequest::new(StoreMode::Set, b"k", b"old"), 10));
        let v = vec![b'x'; 1000];
        let mut i = 0;
        while matches!(
            s.store(
                &StoreRequest::new(StoreMode::Set, format!("f{i}").as_bytes(), &v),
                10
            ),
            StoreResult::Stored { .. }
        ) {
            i += 1;
        }
        r.take();
        assert_eq!(
            s.store(&StoreRequest::new(StoreMode::Set, b"k", &v), 10),
            StoreResult::OutOfMemory
        );
        assert!(matches!(one(&r), Rec::Removed { key, .. } if key == b"k"));
        assert!(s.get(b"k", 10, None).is_none());
    }

    /// Evictions, expiry, flush sweeps and page moves are the engine's own
    /// work: they record nothing.
    #[test]
    fn engine_work_records_nothing() {
        let cfg = StoreConfig {
            mem_limit: 1 << 20,
            ..StoreConfig::default()
        };
        let (mut s, r) = recorded(&cfg);
        let v = [b'v'; 100];
        let mut n = 0;
        while s.stats().evictions < 1000 {
            stored(s.store(
                &StoreRequest::new(StoreMode::Set, format!("k{n}").as_bytes(), &v),
                10,
            ));
            n += 1;
        }
        let recs = r.take();
        assert_eq!(recs.len(), n, "one Item per set, no eviction recorded");
        assert!(recs.iter().all(|c| matches!(c, Rec::Item { .. })));
        // expiry: lazily on read and by the wheel
        for i in 0..100 {
            stored(s.store(
                &StoreRequest {
                    exptime: 12,
                    ..StoreRequest::new(StoreMode::Set, format!("e{i}").as_bytes(), b"x")
                },
                10,
            ));
        }
        r.take();
        assert!(s.get(b"e0", 12, None).is_none());
        while s.tick(12) {}
        assert!(s.stats().reclaimed > 0);
        // page moves
        let src = s.class_info().max_by_key(|c| c.total_pages).unwrap().id;
        let _ = s.reassign(src as i64, src as i64 + 5);
        while s.tick(13) {}
        // flush: one record for the command, none for the sweep
        s.flush_all(13, 13);
        assert!(matches!(one(&r), Rec::Flush { .. }));
        assert!(s.get(b"k0", 13, None).is_none());
        while s.tick(14) {}
        assert_eq!(s.stats().curr_items, 0);
        assert!(r.take().is_empty());
    }

    #[test]
    fn store_flush_all_records_a_flush_per_shard() {
        let store = Store::new(StoreConfig {
            shards: 3,
            ..StoreConfig::default()
        });
        let recs: Vec<Recorder> = (0..3)
            .map(|i| {
                let r = Recorder::default();
                store.lock_shard(i).set_journal(Some(Box::new(r.clone())));
                r
            })
            .collect();
        store.flush_all(10, 10);
        for r in &recs {
            assert!(matches!(one(r), Rec::Flush { at: 10, .. }));
        }
    }

    /// Meta `E` sets a client-chosen CAS: a later local write must still get
    /// a larger one (the clock observes given versions).
    #[test]
    fn a_later_write_is_newer_than_a_client_given_cas() {
        let mut s = Shard::new(0, 1, &StoreConfig::default());
        let big = 10_000_000_000_000_000_000u64;
        let e = StoreRequest {
            new_cas: big,
            ..StoreRequest::new(StoreMode::Set, b"k", b"1")
        };
        let c = stored(s.store(&e, 10));
        assert_eq!(c, big);
        let c2 = stored(s.store(&StoreRequest::new(StoreMode::Set, b"k", b"2"), 10));
        assert!(c2 > big, "{c2} <= {big}");
        // the same for md I E, ma E, mg N E
        let inv = DeleteRequest {
            invalidate: true,
            new_cas: big + 1_000_000,
            ..DeleteRequest::new(b"k")
        };
        s.delete(&inv, 10);
        assert!(
            stored(s.store(&StoreRequest::new(StoreMode::Set, b"j", b"2"), 10)) > big + 1_000_000
        );
        s.store(&StoreRequest::new(StoreMode::Set, b"n", b"1"), 10);
        let e = ArithRequest {
            new_cas: big + 2_000_000,
            ..ArithRequest::new(b"n", true, 1)
        };
        s.arith(&e, 10);
        assert!(
            stored(s.store(&StoreRequest::new(StoreMode::Set, b"j", b"2"), 10)) > big + 2_000_000
        );
        let n = MetaGet {
            vivify: Some(0),
            new_cas: big + 3_000_000,
            ..MetaGet::default()
        };
        s.meta_get(b"viv", 10, &n);
        assert!(
            stored(s.store(&StoreRequest::new(StoreMode::Set, b"j", b"2"), 10)) > big + 3_000_000
        );
    }

    #[test]
    fn apply_is_last_writer_wins_by_cas_and_never_recorded() {
        let (mut s, r) = recorded(&StoreConfig::default());
        let c = stored(s.store(&StoreRequest::new(StoreMode::Set, b"k", b"local"), 10));
        r.take();
        let theirs = |value: &'static [u8], cas: u64| Change::Item {
            key: b"k",
            value,
            flags: 7,
            exptime: 0,
            cas,
            stale: false,
            rev: 0,
        };
        // older, or the same item again: nothing changes
        assert_eq!(s.apply(&theirs(b"old", c - 1), 10), Applied::Older);
        let same = Change::Item {
            key: b"k",
            value: b"local",
            flags: 0,
            exptime: 0,
            cas: c,
            stale: false,
            rev: 0,
        };
        assert_eq!(s.apply(&same, 10), Applied::Older);
        // the same CAS for another item (made on both hosts): the larger
        // content wins, on either host, so both keep the same item
        assert_eq!(s.apply(&theirs(b"lesser", c), 10), Applied::Older);
        assert_eq!(s.get(b"k", 10, None).unwrap().value, b"local");
        assert_eq!(s.apply(&theirs(b"mine", c), 10), Applied::Stored);
        let it = s.get(b"k", 10, None).unwrap();
        assert_eq!((it.value, it.flags, it.cas), (&b"mine"[..], 7, c));
        assert_eq!(s.apply(&same, 10), Applied::Older);
        assert_eq!(s.get(b"k", 10, None).unwrap().value, b"mine");
        // newer: stored with its CAS, flags, and the clock moves past it
        let newer = c + (1 << 30);
        assert_eq!(s.apply(&theirs(b"remote", newer), 10), Applied::Stored);
        let it = s.get(b"k", 10, None).unwrap();
        assert_eq!((it.value, it.flags, it.cas), (&b"remote"[..], 7, newer));
        assert!(stored(s.store(&StoreRequest::new(StoreMode::Set, b"x", b"1"), 10)) > newer);
        r.take();
        // a stale post-image stays stale; a new key is created
        let st = Change::Item {
            key: b"s",
            value: b"v",
            flags: 0,
            exptime: 99,
            cas: newer,
            stale: true,
            rev: 0,
        };
        assert_eq!(s.apply(&st, 10), Applied::Stored);
        let (it, _) = s.meta_get(b"s", 10, &MetaGet::default()).unwrap();
        assert!(it.stale && it.exptime == 99);
        // removals: older ones change nothing, newer ones remove
        let rm = |cas| Change::Removed { key: b"k", cas };
        assert_eq!(s.apply(&rm(newer), 10), Applied::Older);
        assert_eq!(s.apply(&rm(newer + 1), 10), Applied::Removed);
        assert!(s.get(b"k", 10, None).is_none());
        assert_eq!(s.apply(&rm(newer + 2), 10), Applied::Removed);
        // too large for -I
        let big = vec![0u8; 2 << 20];
        let tl = Change::Item {
            key: b"t",
            value: &big,
            flags: 0,
            exptime: 0,
            cas: newer + 3,
            stale: false,
            rev: 0,
        };
        assert_eq!(s.apply(&tl, 10), Applied::TooLarge);
        assert!(r.take().is_empty());
        // flush by version: items up to it go, later ones stay
        let later = stored(s.store(&StoreRequest::new(StoreMode::Set, b"after", b"1"), 10));
        assert_eq!(r.take().len(), 1);
        assert_eq!(
            s.apply(
                &Change::Flush {
                    at: 10,
                    cas: later - 1
                },
                10
            ),
            Applied::Flushed
        );
        assert!(s.get(b"s", 10, None).is_none());
        assert!(s.get(b"after", 10, None).is_some());
        // applied changes are never recorded
        assert!(r.take().is_empty());
    }

    /// A received item whose key is longer than a client's (the wire
    /// allows 65535 bytes) is refused as too large: the item header holds
    /// one length byte, and a 256-byte key once overflowed into the value
    /// length (a panic copying the value; found by the `replication` fuzz
    /// target, tests/fuzz/regressions/replication/). Nothing is stored or
    /// recorded; the store answers as before.
    #[test]
    fn apply_refuses_a_key_longer_than_a_clients() {
        let (mut s, r) = recorded(&StoreConfig::default());
        for len in [251, 255, 256, 300, 65535] {
            let key = vec![b'k'; len];
            for rev in [0, 5] {
                let c = Change::Item {
                    key: &key,
                    value: b"22",
                    flags: 7,
                    exptime: 0,
                    cas: 11,
                    stale: false,
                    rev,
                };
                assert_eq!(s.apply(&c, 10), Applied::TooLarge, "key of {len}");
            }
        }
        let longest = [b'k'; 250];
        let c = Change::Item {
            key: &longest,
            value: b"22",
            flags: 7,
            exptime: 0,
            cas: 12,
            stale: false,
            rev: 0,
        };
        assert_eq!(s.apply(&c, 10), Applied::Stored);
        assert_eq!(s.get(&longest, 10, None).unwrap().value, b"22");
        assert!(r.take().is_empty());
    }

    /// A revision (a change that kept the CAS: touch, gat, `mg T`, `md x`)
    /// is taken over an item of that same CAS, never over a newer or an
    /// older one; a whole item at a newer CAS replaces the item as always.
    /// Its `rev` is observed by the clock like any version.
    #[test]
    fn apply_takes_a_revision_of_the_same_cas() {
        let (mut s, r) = recorded(&StoreConfig::default());
        let c = stored(s.store(
            &StoreRequest {
                flags: 2,
                exptime: 50,
                ..StoreRequest::new(StoreMode::Set, b"k", b"v")
            },
            10,
        ));
        r.take();
        let revk =
            |key: &'static [u8], flags, cas, value: &'static [u8], exptime, rev| Change::Item {
                key,
                value,
                flags,
                exptime,
                cas,
                stale: false,
                rev,
            };
        let rev = |cas, value, exptime, rev| revk(b"k", 2, cas, value, exptime, rev);
        let exp = |s: &mut Shard| s.meta_get(b"k", 10, &MetaGet::default()).unwrap().0.exptime;
        // a touch of this CAS: the new expiry, the CAS kept, in place
        assert_eq!(s.apply(&rev(c, b"v", 500, c + 10), 10), Applied::Revised);
        assert_eq!(exp(&mut s), 500);
        assert_eq!(cas_of(&mut s, b"k"), c);
        // an md x of this CAS: value and flags too
        let x = revk(b"k", 9, c, b"", 600, c + 20);
        assert_eq!(s.apply(&x, 10), Applied::Revised);
        let it = s.get(b"k", 10, None).unwrap();
        assert_eq!(
            (it.value, it.flags, it.cas, it.exptime),
            (&b""[..], 9, c, 600)
        );
        // a revision of an older CAS changes nothing
        assert_eq!(s.apply(&rev(c - 1, b"v", 700, c + 30), 10), Applied::Older);
        assert_eq!(exp(&mut s), 600);
        // a revision of a newer CAS than ours is that whole item
        let n = c + (1 << 30);
        assert_eq!(s.apply(&rev(n, b"new", 800, n + 5), 10), Applied::Stored);
        let it = s.get(b"k", 10, None).unwrap();
        assert_eq!((it.value, it.cas, it.exptime), (&b"new"[..], n, 800));
        // and of a missing key: created
        let m = revk(b"m", 2, n, b"m", 0, n + 6);
        assert_eq!(s.apply(&m, 10), Applied::Stored);
        // the clock observed the revision
        let far = n + (1 << 40);
        assert_eq!(s.apply(&rev(n, b"new", 900, far), 10), Applied::Revised);
        assert!(stored(s.store(&StoreRequest::new(StoreMode::Set, b"j", b"1"), 10)) > far);
        r.take();
        // a local touch after it: a newer revision again
        s.touch(b"k", 30, 10);
        revision(one(&r), item(b"k", b"new", 2, 30, n, false), far);
        assert!(r.take().is_empty());
    }
}
