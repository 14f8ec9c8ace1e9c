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
//! Known limit of "last writer wins by CAS": memcached's touch, `gat` and
//! `mg T` do not change an item's CAS, and neither does `md x` without `E`;
//! their `Change::Item` carries the CAS the partner's copy already has, so
//! `apply` answers `Older` for them (see `apply`).

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
        ArithResult, DeleteOpts, DeleteResult, MetaGet, Shard, Store, StoreConfig, StoreMode,
        StoreOpts, StoreResult,
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
                } => Rec::Item {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    flags,
                    exptime,
                    cas,
                    stale,
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
        }
    }

    /// The only change recorded since the last call.
    fn one(r: &Recorder) -> Rec {
        let v = r.take();
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    fn stored(r: StoreResult) -> u64 {
        match r {
            StoreResult::Stored { cas } => cas,
            r => panic!("{r:?}"),
        }
    }

    fn cas_of(s: &mut Shard, k: &[u8]) -> u64 {
        s.meta_get(0, k, 10, &MetaGet::default()).unwrap().0.cas
    }

    #[test]
    fn every_client_mutation_records_its_post_image_once() {
        let (mut s, r) = recorded(&StoreConfig::default());
        let set = StoreMode::Set;
        // set / add / replace / cas
        let c = stored(s.store(0, b"k", set, 3, 50, b"v1", 0, 10));
        assert_eq!(one(&r), item(b"k", b"v1", 3, 50, c, false));
        assert_eq!(
            s.store(0, b"k", StoreMode::Add, 0, 0, b"x", 0, 10),
            StoreResult::NotStored
        );
        let c = stored(s.store(0, b"a", StoreMode::Add, 0, 0, b"x", 0, 10));
        assert_eq!(one(&r), item(b"a", b"x", 0, 0, c, false));
        let c = stored(s.store(0, b"k", StoreMode::Replace, 1, 0, b"v2", 0, 10));
        assert_eq!(one(&r), item(b"k", b"v2", 1, 0, c, false));
        assert_eq!(
            s.store(0, b"zz", StoreMode::Replace, 0, 0, b"x", 0, 10),
            StoreResult::NotStored
        );
        assert_eq!(
            s.store(0, b"k", StoreMode::Cas, 0, 0, b"x", c + 1, 10),
            StoreResult::Exists
        );
        let c = stored(s.store(0, b"k", StoreMode::Cas, 2, 0, b"v3", c, 10));
        assert_eq!(one(&r), item(b"k", b"v3", 2, 0, c, false));
        // append / prepend: the combined item, the old flags and expiry
        let c = stored(s.store(0, b"k", StoreMode::Append, 9, 0, b"+", 0, 10));
        assert_eq!(one(&r), item(b"k", b"v3+", 2, 0, c, false));
        let c = stored(s.store(0, b"k", StoreMode::Prepend, 9, 0, b"-", 0, 10));
        assert_eq!(one(&r), item(b"k", b"-v3+", 2, 0, c, false));
        // incr/decr: in place (padded), grown, created
        stored(s.store(0, b"n", set, 0, 0, b"100", 0, 10));
        r.take();
        let ArithResult::Value { cas, .. } = s.arith(0, b"n", false, 1, None, 0, 10) else {
            panic!()
        };
        assert_eq!(one(&r), item(b"n", b"99 ", 0, 0, cas, false));
        let ArithResult::Value { cas, .. } = s.arith(0, b"n", true, 901, None, 0, 10) else {
            panic!()
        };
        assert_eq!(one(&r), item(b"n", b"1000", 0, 0, cas, false));
        let ArithResult::Value { cas, .. } = s.arith(0, b"m", true, 1, Some((7, 40)), 0, 10) else {
            panic!()
        };
        assert_eq!(one(&r), item(b"m", b"7", 0, 40, cas, false));
        assert_eq!(
            s.arith(0, b"none", true, 1, None, 0, 10),
            ArithResult::NotFound
        );
        // touch / gat: new expiry, same CAS; a plain get records nothing
        let c = cas_of(&mut s, b"a");
        assert_eq!(s.touch(0, b"a", 70, 10), Some(c));
        assert_eq!(one(&r), item(b"a", b"x", 0, 70, c, false));
        assert!(s.get(0, b"a", 10, Some(80)).is_some());
        assert_eq!(one(&r), item(b"a", b"x", 0, 80, c, false));
        assert!(s.get(0, b"a", 10, None).is_some());
        assert!(s.touch(0, b"none", 5, 10).is_none());
        // mg: T records, N on a miss records the created item, a read that
        // only takes the win records nothing
        let t = MetaGet {
            touch: Some(90),
            bump: true,
            ..MetaGet::default()
        };
        s.meta_get(0, b"a", 10, &t).unwrap();
        assert_eq!(one(&r), item(b"a", b"x", 0, 90, c, false));
        let n = MetaGet {
            vivify: Some(30),
            claim_win: true,
            new_cas: 0,
            ..MetaGet::default()
        };
        let (it, _) = s.meta_get(0, b"v", 10, &n).unwrap();
        let vc = it.cas;
        assert_eq!(one(&r), item(b"v", b"", 0, 30, vc, false));
        s.meta_get(0, b"v", 10, &n).unwrap();
        s.meta_get(0, b"v", 10, &MetaGet::default()).unwrap();
        // ms I (stale store with an older CAS), ms MA with N
        let stale = StoreOpts {
            invalidate: true,
            ..StoreOpts::default()
        };
        let c = stored(s.store_with(0, b"v", set, 4, 0, b"late", vc - 1, 10, &stale));
        assert_eq!(one(&r), item(b"v", b"late", 4, 30, c, true));
        let viv = StoreOpts {
            vivify: Some(60),
            ..StoreOpts::default()
        };
        let c = stored(s.store_with(0, b"w", StoreMode::Append, 5, 0, b"ab", 0, 10, &viv));
        assert_eq!(one(&r), item(b"w", b"ab", 5, 60, c, false));
        // md I: stale, new CAS, new expiry; md x: emptied, flags and expiry
        let inv = DeleteOpts {
            invalidate: true,
            touch: Some(33),
            ..DeleteOpts::default()
        };
        assert_eq!(s.delete_with(0, b"w", 10, &inv), DeleteResult::Deleted);
        let c = cas_of(&mut s, b"w");
        assert_eq!(one(&r), item(b"w", b"ab", 5, 33, c, true));
        let x = DeleteOpts {
            remove_value: true,
            flags: 8,
            exptime: 44,
            ..DeleteOpts::default()
        };
        assert_eq!(s.delete_with(0, b"w", 10, &x), DeleteResult::Deleted);
        assert_eq!(one(&r), item(b"w", b"", 8, 44, c, false));
        // delete: a removal with a fresh version; a miss or a CAS mismatch
        // records nothing
        assert_eq!(s.delete(0, b"w", c + 1, 10), DeleteResult::Exists);
        assert_eq!(s.delete(0, b"w", 0, 10), DeleteResult::Deleted);
        let rm = one(&r);
        assert!(matches!(&rm, Rec::Removed { key, cas } if key == b"w" && *cas > c));
        assert_eq!(s.delete(0, b"w", 0, 10), DeleteResult::NotFound);
        // too large for -I: nothing
        let big = vec![0u8; 2 << 20];
        assert_eq!(
            s.store(0, b"k", set, 0, 0, &big, 0, 10),
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
        stored(s.store(0, b"k", StoreMode::Set, 0, 0, b"old", 0, 10));
        let v = vec![b'x'; 1000];
        let mut i = 0;
        while matches!(
            s.store(
                0,
                format!("f{i}").as_bytes(),
                StoreMode::Set,
                0,
                0,
                &v,
                0,
                10
            ),
            StoreResult::Stored { .. }
        ) {
            i += 1;
        }
        r.take();
        assert_eq!(
            s.store(0, b"k", StoreMode::Set, 0, 0, &v, 0, 10),
            StoreResult::OutOfMemory
        );
        assert!(matches!(one(&r), Rec::Removed { key, .. } if key == b"k"));
        assert!(s.get(0, b"k", 10, None).is_none());
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
                0,
                format!("k{n}").as_bytes(),
                StoreMode::Set,
                0,
                0,
                &v,
                0,
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
                0,
                format!("e{i}").as_bytes(),
                StoreMode::Set,
                0,
                12,
                b"x",
                0,
                10,
            ));
        }
        r.take();
        assert!(s.get(0, b"e0", 12, None).is_none());
        while s.tick(12) {}
        assert!(s.stats().reclaimed > 0);
        // page moves
        let src = s.class_info().max_by_key(|c| c.total_pages).unwrap().id;
        let _ = s.reassign(src as i64, src as i64 + 5);
        while s.tick(13) {}
        // flush: one record for the command, none for the sweep
        s.flush_all(13, 13);
        assert!(matches!(one(&r), Rec::Flush { .. }));
        assert!(s.get(0, b"k0", 13, None).is_none());
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
        let e = StoreOpts {
            new_cas: big,
            ..StoreOpts::default()
        };
        let c = stored(s.store_with(0, b"k", StoreMode::Set, 0, 0, b"1", 0, 10, &e));
        assert_eq!(c, big);
        let c2 = stored(s.store(0, b"k", StoreMode::Set, 0, 0, b"2", 0, 10));
        assert!(c2 > big, "{c2} <= {big}");
        // the same for md I E, ma E, mg N E
        let inv = DeleteOpts {
            invalidate: true,
            new_cas: big + 1_000_000,
            ..DeleteOpts::default()
        };
        s.delete_with(0, b"k", 10, &inv);
        assert!(stored(s.store(0, b"j", StoreMode::Set, 0, 0, b"2", 0, 10)) > big + 1_000_000);
        s.store(0, b"n", StoreMode::Set, 0, 0, b"1", 0, 10);
        s.arith_with(0, b"n", true, 1, None, 0, 10, big + 2_000_000);
        assert!(stored(s.store(0, b"j", StoreMode::Set, 0, 0, b"2", 0, 10)) > big + 2_000_000);
        let n = MetaGet {
            vivify: Some(0),
            new_cas: big + 3_000_000,
            ..MetaGet::default()
        };
        s.meta_get(0, b"viv", 10, &n);
        assert!(stored(s.store(0, b"j", StoreMode::Set, 0, 0, b"2", 0, 10)) > big + 3_000_000);
    }

    #[test]
    fn apply_is_last_writer_wins_by_cas_and_never_recorded() {
        let (mut s, r) = recorded(&StoreConfig::default());
        let c = stored(s.store(0, b"k", StoreMode::Set, 0, 0, b"local", 0, 10));
        r.take();
        let theirs = |value: &'static [u8], cas: u64| Change::Item {
            key: b"k",
            value,
            flags: 7,
            exptime: 0,
            cas,
            stale: false,
        };
        // older or equal: nothing changes
        assert_eq!(s.apply(&theirs(b"old", c - 1), 10), Applied::Older);
        assert_eq!(s.apply(&theirs(b"same", c), 10), Applied::Older);
        assert_eq!(s.get(0, b"k", 10, None).unwrap().value, b"local");
        // newer: stored with its CAS, flags, and the clock moves past it
        let newer = c + (1 << 30);
        assert_eq!(s.apply(&theirs(b"remote", newer), 10), Applied::Stored);
        let it = s.get(0, b"k", 10, None).unwrap();
        assert_eq!((it.value, it.flags, it.cas), (&b"remote"[..], 7, newer));
        assert!(stored(s.store(0, b"x", StoreMode::Set, 0, 0, b"1", 0, 10)) > newer);
        r.take();
        // a stale post-image stays stale; a new key is created
        let st = Change::Item {
            key: b"s",
            value: b"v",
            flags: 0,
            exptime: 99,
            cas: newer,
            stale: true,
        };
        assert_eq!(s.apply(&st, 10), Applied::Stored);
        let (it, _) = s.meta_get(0, b"s", 10, &MetaGet::default()).unwrap();
        assert!(it.stale && it.exptime == 99);
        // removals: older ones change nothing, newer ones remove
        let rm = |cas| Change::Removed { key: b"k", cas };
        assert_eq!(s.apply(&rm(newer), 10), Applied::Older);
        assert_eq!(s.apply(&rm(newer + 1), 10), Applied::Removed);
        assert!(s.get(0, b"k", 10, None).is_none());
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
        };
        assert_eq!(s.apply(&tl, 10), Applied::TooLarge);
        assert!(r.take().is_empty());
        // flush by version: items up to it go, later ones stay
        let later = stored(s.store(0, b"after", StoreMode::Set, 0, 0, b"1", 0, 10));
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
        assert!(s.get(0, b"s", 10, None).is_none());
        assert!(s.get(0, b"after", 10, None).is_some());
        // applied changes are never recorded
        assert!(r.take().is_empty());
    }
}
