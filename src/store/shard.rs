//! One shard: the items of the keys that hash to it, with memcached's
//! command semantics on top of the storage engine (`engine`: slab arena,
//! hash index, CLOCK eviction, timing-wheel expiry, slab rebalancing).

use super::engine::{Engine, Reassign};
use super::journal::{Applied, Change, Journal};
use super::slab::{item_size, ref_access, Budget, ClassStats, B_FETCHED, B_STALE, B_WIN, NONE};
use super::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, ItemRef, MetaGet, MetaGetOutcome,
    ShardStats, StoreConfig, StoreMode, StoreRequest, StoreResult, SEEDS,
};
use crate::digits::{fmt_u64, strtoull};
use crate::item::item_fits;

/// Per-class figures for `stats slabs` / `stats items`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassInfo {
    /// memcached-style class id (1-based).
    pub id: u32,
    pub chunk_size: u64,
    pub chunks_per_page: u64,
    pub total_pages: u64,
    pub total_chunks: u64,
    pub used_chunks: u64,
    pub free_chunks: u64,
    pub free_chunks_end: u64,
    /// Seconds since the last access of the item under the CLOCK hand.
    pub age: u64,
    pub st: ClassStats,
}

impl ClassInfo {
    /// Add another shard's figures for the same class.
    pub fn add(&mut self, o: &ClassInfo) {
        self.total_pages += o.total_pages;
        self.total_chunks += o.total_chunks;
        self.used_chunks += o.used_chunks;
        self.free_chunks += o.free_chunks;
        self.free_chunks_end += o.free_chunks_end;
        self.age = self.age.max(o.age);
        let (a, b) = (&mut self.st, &o.st);
        a.items += b.items;
        a.mem_requested += b.mem_requested;
        a.evicted += b.evicted;
        a.evicted_nonzero += b.evicted_nonzero;
        a.evicted_time = a.evicted_time.max(b.evicted_time);
        a.outofmemory += b.outofmemory;
        a.reclaimed += b.reclaimed;
        a.expired_unfetched += b.expired_unfetched;
        a.evicted_unfetched += b.evicted_unfetched;
        a.evicted_active += b.evicted_active;
        a.get_hits += b.get_hits;
        a.cmd_set += b.cmd_set;
        a.delete_hits += b.delete_hits;
        a.incr_hits += b.incr_hits;
        a.decr_hits += b.decr_hits;
        a.cas_hits += b.cas_hits;
        a.cas_badval += b.cas_badval;
        a.touch_hits += b.touch_hits;
    }
}

/// One shard of the key space.
pub struct Shard {
    e: Engine,
    /// Where client mutations are recorded (replication); None: nowhere.
    journal: Option<Box<dyn Journal>>,
}

/// A new item's header fields, for `write_new`.
#[derive(Clone, Copy)]
struct Fresh<'k> {
    key: &'k [u8],
    flags: u32,
    /// Relative expiry (0 = never).
    exptime: u32,
    /// Version (see `Shard::version`: 0 = the clock's next).
    cas: u64,
}

/// What a client mutation left, for the commit point.
#[derive(Clone, Copy)]
enum Commit<'k> {
    /// The item at this handle is the post-image.
    Item(u32),
    /// The key was removed.
    Removed(&'k [u8]),
    /// flush_all at `at` with this version.
    Flush { at: u32, cas: u64 },
}

impl Shard {
    /// Shard `id` of `shards`, with a budget of its own: its share of
    /// `cfg.mem_limit` (tests and tools; the server's shards share one).
    pub fn new(id: usize, shards: usize, cfg: &StoreConfig) -> Shard {
        let share = cfg.mem_limit / shards.max(1);
        Self::with_budget(id, std::sync::Arc::new(Budget::new(share, 1)), cfg)
    }

    /// Shard `id` drawing pages from a budget shared with other shards.
    pub fn with_budget(id: usize, budget: std::sync::Arc<Budget>, cfg: &StoreConfig) -> Shard {
        let hasher = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
        Shard {
            e: Engine::new(id, budget, cfg, hasher),
            journal: None,
        }
    }

    /// Record every client mutation in `journal` from now on (None: stop).
    pub fn set_journal(&mut self, journal: Option<Box<dyn Journal>>) {
        self.journal = journal;
    }

    /// The commit point: every client mutation ends here, once, after the
    /// change is made (see `journal.rs`). Without a journal: one branch.
    #[inline]
    fn commit(&mut self, c: Commit<'_>) {
        if self.journal.is_none() {
            return;
        }
        let change = match c {
            Commit::Item(h) => {
                let a = &self.e.a;
                let (key, value) = a.key_value(h);
                Change::Item {
                    key,
                    value,
                    flags: a.flags(h),
                    exptime: a.exptime(h),
                    cas: a.cas(h),
                    stale: a.bits(h) & B_STALE != 0,
                }
            }
            Commit::Removed(key) => Change::Removed {
                key,
                cas: self.e.hlc.next(),
            },
            Commit::Flush { at, cas } => Change::Flush { at, cas },
        };
        if let Some(j) = self.journal.as_mut() {
            j.record(&change);
        }
    }

    /// The one version function: a given version (a client's meta `E`, a
    /// partner's change) is used as is and observed by the clock, so later
    /// local versions are larger; 0 takes the clock's next value.
    fn version(&mut self, given: u64) -> u64 {
        if given != 0 {
            self.e.hlc.observe(given);
            given
        } else {
            self.e.hlc.next()
        }
    }

    pub fn stats(&self) -> &ShardStats {
        &self.e.stats
    }

    /// Zero the counters `stats reset` clears (gauges such as curr_items and
    /// bytes, and the per-class item counts, stay).
    pub fn reset_stats(&mut self) {
        let s = &mut self.e.stats;
        s.total_items = 0;
        s.evictions = 0;
        s.evicted_unfetched = 0;
        s.evicted_active = 0;
        s.expired_unfetched = 0;
        s.reclaimed = 0;
        s.get_expired = 0;
        s.get_flushed = 0;
        s.slabs_moved = 0;
        s.slab_reassign_rescues = 0;
        s.slab_reassign_evictions_nomem = 0;
        s.pages_borrowed = 0;
        s.pages_returned = 0;
        self.e.a.borrowed = 0;
        for c in self.e.a.classes.iter_mut() {
            c.st = ClassStats {
                items: c.st.items,
                mem_requested: c.st.mem_requested,
                ..ClassStats::default()
            };
        }
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        // The shard hashes keys itself (callers' hashes are for routing, and
        // tests pass 0): one short ahash.
        self.e.ix.hash(key)
    }

    /// Fetch a live item, marking it accessed; `touch` sets a new expiry.
    pub fn get<'a>(
        &'a mut self,
        key: &'a [u8],
        now: u32,
        touch: Option<u32>,
    ) -> Option<ItemRef<'a>> {
        let hash = self.hash(key);
        let Ok(h) = self.e.lookup(hash, key, now) else {
            return None;
        };
        let fetched = self.e.touch_access(h, now);
        match touch {
            Some(exp) => {
                self.e.set_exptime(h, exp);
                self.e.class_stats(h).touch_hits += 1;
                self.commit(Commit::Item(h));
            }
            None => self.e.note_hit(h),
        }
        let a = &self.e.a;
        let (key, value) = a.key_value(h);
        let bits = a.bits(h);
        Some(ItemRef {
            key,
            value,
            flags: a.flags(h),
            cas: a.cas(h),
            exptime: a.exptime(h),
            atime: now,
            fetched,
            stale: bits & B_STALE != 0,
            win: bits & B_WIN != 0,
        })
    }

    /// Allocate and write a new item of `vlen` value bytes (not linked),
    /// evicting if needed but never the item `protect`. None: out of memory.
    fn write_new(&mut self, it: &Fresh<'_>, vlen: usize, protect: u32, now: u32) -> Option<u32> {
        let size = item_size(it.key.len(), vlen, it.flags);
        let h = self.e.alloc(size, protect, now)?;
        self.e
            .a
            .init_item(h, it.key, vlen, it.flags, it.exptime, now);
        let cas = self.version(it.cas);
        self.e.a.set_cas(h, cas);
        Some(h)
    }

    /// Store `data` as a fresh item (replacing any under its key). On
    /// out-of-memory with `unlink_on_oom` (a set) no stale item is left.
    fn put(
        &mut self,
        it: &Fresh<'_>,
        hash: u64,
        data: &[u8],
        now: u32,
        unlink_on_oom: bool,
    ) -> Result<u32, StoreResult> {
        let Some(h) = self.write_new(it, data.len(), NONE, now) else {
            if unlink_on_oom {
                // memcached: a failed set must not leave stale data.
                let old = self.e.ix.find(&self.e.a, hash, it.key);
                if old != NONE {
                    self.e.unlink(old, hash);
                    self.commit(Commit::Removed(it.key));
                }
            }
            return Err(StoreResult::OutOfMemory);
        };
        self.e.a.value_mut(h).copy_from_slice(data);
        self.install(h, hash);
        Ok(h)
    }

    /// Link `h` under its key, replacing whatever item the key has now.
    fn install(&mut self, h: u32, hash: u64) -> u64 {
        let cur = self.e.ix.find(&self.e.a, hash, self.e.a.key(h));
        if cur == NONE {
            self.e.link(h, hash);
        } else {
            self.e.relink(cur, h, hash);
        }
        self.e.a.cas(h)
    }

    /// set/add/replace/append/prepend/cas, meta `ms`, `lease-set`:
    /// memcached's full CAS rules (see [`StoreRequest`]) plus the meta
    /// extras. A successful store makes a fresh item (not stale, no win
    /// handed out) unless `invalidate` stored it stale.
    pub fn store(&mut self, req: &StoreRequest<'_>, now: u32) -> StoreResult {
        let StoreRequest {
            mode,
            key,
            flags,
            exptime,
            data,
            cas,
            new_cas,
            invalidate,
            vivify,
        } = *req;
        let hash = self.hash(key);
        self.e
            .class_stats_for(item_size(key.len(), data.len(), flags))
            .cmd_set += 1;
        if !item_fits(key.len(), flags, data.len(), self.e.max_item) {
            return StoreResult::TooLarge;
        }
        let set = mode == StoreMode::Set;
        let cas_mode = mode == StoreMode::Cas
            || (cas != 0 && matches!(mode, StoreMode::Set | StoreMode::Replace));
        let fresh = Fresh {
            key,
            flags,
            exptime,
            cas: new_cas,
        };
        let Ok(old) = self.e.lookup(hash, key, now) else {
            let r = match mode {
                _ if cas_mode => return StoreResult::NotFound,
                StoreMode::Set | StoreMode::Add => self.put(&fresh, hash, data, now, set),
                StoreMode::Append | StoreMode::Prepend => match vivify {
                    Some(exptime) => self.put(&Fresh { exptime, ..fresh }, hash, data, now, false),
                    None => return StoreResult::NotStored,
                },
                _ => return StoreResult::NotStored,
            };
            return self.stored(r);
        };
        if cas_mode {
            let item_cas = self.e.a.cas(old);
            if item_cas == cas {
                // match: store below
            } else if invalidate && cas < item_cas {
                // Stale store: new value, old expiry, marked stale, win kept.
                let exptime = self.e.a.exptime(old);
                let win = self.e.a.bits(old) & B_WIN;
                let r = self.put(&Fresh { exptime, ..fresh }, hash, data, now, false);
                if let Ok(h) = r {
                    let b = self.e.a.bits(h);
                    self.e.a.set_bits(h, b | B_STALE | win);
                }
                return self.stored(r);
            } else {
                self.e.class_stats(old).cas_badval += 1;
                return StoreResult::Exists;
            }
        }
        let r = match mode {
            StoreMode::Add => {
                self.e.a.set_atime(old, now);
                return StoreResult::NotStored;
            }
            StoreMode::Append | StoreMode::Prepend => {
                if cas != 0 && self.e.a.cas(old) != cas {
                    return StoreResult::Exists;
                }
                let old_len = self.e.a.vlen(old);
                let total = old_len + data.len();
                let (flags, exptime) = (self.e.a.flags(old), self.e.a.exptime(old));
                if !item_fits(key.len(), flags, total, self.e.max_item) {
                    // memcached: the combined item cannot be allocated, so
                    // nothing is stored (NOT_STORED, not "too large").
                    return StoreResult::NotStored;
                }
                let combined = Fresh {
                    flags,
                    exptime,
                    ..fresh
                };
                let Some(h) = self.write_new(&combined, total, old, now) else {
                    return StoreResult::OutOfMemory;
                };
                if mode == StoreMode::Append {
                    self.e.a.copy_value(old, h, 0);
                    self.e.a.value_mut(h)[old_len..].copy_from_slice(data);
                } else {
                    self.e.a.copy_value(old, h, data.len());
                    self.e.a.value_mut(h)[..data.len()].copy_from_slice(data);
                }
                self.e.relink(old, h, hash);
                Ok(h)
            }
            _ => self.put(&fresh, hash, data, now, set),
        };
        if let Ok(h) = r {
            if cas_mode {
                self.e.class_stats(h).cas_hits += 1;
            }
        }
        self.stored(r)
    }

    /// The end of every store: commit the stored item.
    fn stored(&mut self, r: Result<u32, StoreResult>) -> StoreResult {
        match r {
            Ok(h) => {
                self.commit(Commit::Item(h));
                StoreResult::Stored {
                    cas: self.e.a.cas(h),
                    len: self.e.a.vlen(h),
                }
            }
            Err(e) => e,
        }
    }

    /// delete, binary Delete, meta `md` (see [`DeleteRequest`]): compare
    /// CAS, then remove, or empty the value (`x`), and/or mark stale (`I`).
    pub fn delete(&mut self, req: &DeleteRequest<'_>, now: u32) -> DeleteResult {
        let key = req.key;
        let opts = req;
        let hash = self.hash(key);
        let Ok(mut h) = self.e.lookup(hash, key, now) else {
            return DeleteResult::NotFound;
        };
        let old_cas = self.e.a.cas(h);
        if opts.cas != 0 && old_cas != opts.cas {
            return DeleteResult::Exists;
        }
        self.e.class_stats(h).delete_hits += 1;
        if opts.remove_value {
            let empty = Fresh {
                key,
                flags: opts.flags,
                exptime: opts.exptime,
                cas: if opts.new_cas != 0 {
                    opts.new_cas
                } else {
                    old_cas
                },
            };
            let Some(nh) = self.write_new(&empty, 0, h, now) else {
                return DeleteResult::NotFound;
            };
            self.e.relink(h, nh, hash);
            h = nh;
        }
        if opts.invalidate {
            let cas = self.version(opts.new_cas);
            if let Some(exp) = opts.touch {
                self.e.set_exptime(h, exp);
            }
            let b = self.e.a.bits(h);
            self.e.a.set_bits(h, (b | B_STALE) & !B_WIN);
            self.e.a.set_cas(h, cas);
        } else if !opts.remove_value {
            self.e.unlink(h, hash);
            self.commit(Commit::Removed(key));
            return DeleteResult::Deleted;
        }
        self.commit(Commit::Item(h));
        DeleteResult::Deleted
    }

    /// Meta read (`mg`): look up `key` and apply `op` atomically: vivify on
    /// a miss, update the expiry, hand out the recache win, bump.
    ///
    /// The returned item's `fetched`, `atime`, `exptime`, `stale` and `win`
    /// are as they were *before* this request (a vivified item reads as
    /// never fetched, accessed now, expiry 0, no win); key, value, flags and
    /// CAS are current. The win rule (memcached's): the caller wins if it
    /// vivified the item, or no win was handed out yet and either the item
    /// is stale or `recache` applies; winning sets the item's win bit.
    pub fn meta_get<'a>(
        &'a mut self,
        key: &'a [u8],
        now: u32,
        op: &MetaGet,
    ) -> Option<(ItemRef<'a>, MetaGetOutcome)> {
        let hash = self.hash(key);
        let mut out = MetaGetOutcome::default();
        let h = match self.e.lookup(hash, key, now) {
            Ok(h) => h,
            Err(_) => {
                let empty = Fresh {
                    key,
                    flags: 0,
                    exptime: op.vivify?,
                    cas: op.new_cas,
                };
                let h = self.write_new(&empty, 0, NONE, now)?;
                self.install(h, hash);
                out.created = true;
                h
            }
        };
        let bits = self.e.a.bits(h);
        let before = if out.created {
            (false, now, 0, false, false)
        } else {
            (
                bits & B_FETCHED != 0,
                self.e.a.atime(h, now),
                self.e.a.exptime(h),
                bits & B_STALE != 0,
                bits & B_WIN != 0,
            )
        };
        if out.created {
            out.won = true;
        } else {
            let old_exp = before.2;
            if let Some(exp) = op.touch {
                self.e.set_exptime(h, exp);
                self.e.class_stats(h).touch_hits += 1;
            }
            let cmp_exp = if op.recache_after_touch {
                self.e.a.exptime(h)
            } else {
                old_exp
            };
            let recache = op.recache.is_some_and(|r| cmp_exp != 0 && cmp_exp < r);
            out.won = op.claim_win && !before.4 && (before.3 || recache);
        }
        let mut bits = self.e.a.bits(h);
        if out.won {
            bits |= B_WIN;
        }
        if op.bump {
            bits = ref_access(bits) | B_FETCHED;
            self.e.a.set_atime(h, now);
            self.e.note_hit(h);
        }
        self.e.a.set_bits(h, bits);
        if out.created || op.touch.is_some() {
            self.commit(Commit::Item(h));
        }
        let a = &self.e.a;
        let (key, value) = a.key_value(h);
        Some((
            ItemRef {
                key,
                value,
                flags: a.flags(h),
                cas: a.cas(h),
                exptime: before.2,
                atime: before.1,
                fetched: before.0,
                stale: before.3,
                win: before.4,
            },
            out,
        ))
    }

    /// incr/decr, binary Increment/Decrement, meta `ma` (see
    /// [`ArithRequest`]): one update, its touch included.
    pub fn arith(&mut self, req: &ArithRequest<'_>, now: u32) -> ArithResult {
        let key = req.key;
        let hash = self.hash(key);
        let mut digits = [0u8; 20];
        let Ok(h) = self.e.lookup(hash, key, now) else {
            let Some((value, exptime)) = req.initial else {
                return ArithResult::NotFound;
            };
            let d = fmt_u64(value, &mut digits);
            let created = Fresh {
                key,
                flags: 0,
                exptime,
                cas: req.new_cas,
            };
            let Some(h) = self.write_new(&created, d.len(), NONE, now) else {
                return ArithResult::OutOfMemory;
            };
            self.e.a.value_mut(h).copy_from_slice(d);
            let cas = self.install(h, hash);
            self.commit(Commit::Item(h));
            return ArithResult::Value {
                value,
                cas,
                created: true,
                exptime,
            };
        };
        // memcached: an empty value is non-numeric before any CAS compare.
        if self.e.a.vlen(h) == 0 {
            return ArithResult::NonNumeric;
        }
        if req.cas != 0 && self.e.a.cas(h) != req.cas {
            return ArithResult::Exists;
        }
        let Some(cur) = strtoull(self.e.a.value(h)) else {
            return ArithResult::NonNumeric;
        };
        let value = if req.incr {
            cur.wrapping_add(req.delta)
        } else {
            cur.saturating_sub(req.delta)
        };
        {
            let st = self.e.class_stats(h);
            if req.incr {
                st.incr_hits += 1;
            } else {
                st.decr_hits += 1;
            }
        }
        let d = fmt_u64(value, &mut digits);
        self.e.a.set_atime(h, now);
        let exptime = self.e.a.exptime(h);
        let h = if d.len() <= self.e.a.vlen(h) {
            // memcached rewrites in place, padding with spaces.
            let n = d.len();
            let v = self.e.a.value_mut(h);
            v[..n].copy_from_slice(d);
            v[n..].fill(b' ');
            let cas = self.version(req.new_cas);
            self.e.a.set_cas(h, cas);
            h
        } else {
            let grown = Fresh {
                key,
                flags: self.e.a.flags(h),
                exptime,
                cas: req.new_cas,
            };
            let Some(nh) = self.write_new(&grown, d.len(), h, now) else {
                return ArithResult::OutOfMemory;
            };
            self.e.a.value_mut(nh).copy_from_slice(d);
            self.e.relink(h, nh, hash);
            nh
        };
        if let Some(exp) = req.touch {
            self.e.set_exptime(h, exp);
            self.e.class_stats(h).touch_hits += 1;
        }
        self.commit(Commit::Item(h));
        ArithResult::Value {
            value,
            cas: self.e.a.cas(h),
            created: false,
            exptime,
        }
    }

    /// touch: new expiry; returns the item's CAS when it exists.
    pub fn touch(&mut self, key: &[u8], exptime: u32, now: u32) -> Option<u64> {
        self.get(key, now, Some(exptime)).map(|it| it.cas)
    }

    /// flush_all: items stored before `at` die once `at` is reached.
    pub fn flush_all(&mut self, at: u32, now: u32) {
        let cas = self.version(0);
        // Now: this version; later: the clock's value at that time.
        let version = if at <= now { cas } else { 0 };
        self.e.flush_all(at, now, version, true);
        self.commit(Commit::Flush { at, cas });
    }

    /// Apply a change received from the partner: last writer wins by CAS
    /// (an item or removal whose cas is <= the local item's cas changes
    /// nothing → Older); the item is stored with the given cas; the clock
    /// observes the cas; never passes through the journal.
    ///
    /// A removal of a missing key is `Removed` (idempotent; no tombstone is
    /// kept). An item that cannot be stored (too large, no memory) unlinks
    /// the older local copy. A flush goes by version only: items with a CAS
    /// up to `cas` die at `at` (the local flush_all's rule by access time is
    /// not applied). Note: touch, `gat`, `mg T` and `md x` without `E` keep
    /// the item's CAS (as memcached does), so their changes arrive with the
    /// CAS the local copy already has and are `Older` here.
    pub fn apply(&mut self, change: &Change<'_>, now: u32) -> Applied {
        match *change {
            Change::Item {
                key,
                value,
                flags,
                exptime,
                cas,
                stale,
            } => {
                let hash = self.hash(key);
                self.version(cas);
                let old = self.e.lookup(hash, key, now).ok();
                if old.is_some_and(|h| self.e.a.cas(h) >= cas) {
                    return Applied::Older;
                }
                let fits = item_fits(key.len(), flags, value.len(), self.e.max_item);
                let new = if fits {
                    let it = Fresh {
                        key,
                        flags,
                        exptime,
                        cas,
                    };
                    self.write_new(&it, value.len(), old.unwrap_or(NONE), now)
                } else {
                    None
                };
                let Some(h) = new else {
                    // Never leave the older version behind a failed apply.
                    if let Some(old) = old {
                        self.e.unlink(old, hash);
                    }
                    return if fits {
                        Applied::OutOfMemory
                    } else {
                        Applied::TooLarge
                    };
                };
                self.e.a.value_mut(h).copy_from_slice(value);
                if stale {
                    let b = self.e.a.bits(h);
                    self.e.a.set_bits(h, b | B_STALE);
                }
                self.install(h, hash);
                Applied::Stored
            }
            Change::Removed { key, cas } => {
                let hash = self.hash(key);
                self.version(cas);
                match self.e.lookup(hash, key, now) {
                    Ok(h) if self.e.a.cas(h) >= cas => Applied::Older,
                    Ok(h) => {
                        self.e.unlink(h, hash);
                        Applied::Removed
                    }
                    Err(_) => Applied::Removed,
                }
            }
            Change::Flush { at, cas } => {
                self.version(cas);
                self.e.flush_all(at, now, cas, false);
                Applied::Flushed
            }
        }
    }

    /// Background work on the owner core (expiry, index growth, flush
    /// sweep, slab moves), one bounded slice. True if more work is waiting
    /// (call again soon).
    pub fn tick(&mut self, now: u32) -> bool {
        self.e.tick(now)
    }

    /// `slabs reassign` (1-based class ids; src -1 = any).
    pub fn reassign(&mut self, src: i64, dst: i64) -> Reassign {
        self.e.reassign(src, dst)
    }

    pub fn set_automove(&mut self, level: u8) {
        self.e.automove = level;
    }

    pub fn automove(&self) -> u8 {
        self.e.automove
    }

    /// Per-class figures of the classes that have pages or items.
    pub fn class_info(&self) -> impl Iterator<Item = ClassInfo> + '_ {
        let a = &self.e.a;
        let now = crate::time::now();
        (0..a.classes.len()).filter_map(move |c| {
            let cl = &a.classes[c];
            if cl.pages.is_empty() && cl.st.items == 0 && cl.st.evicted == 0 {
                return None;
            }
            let large = c == a.large;
            let total_pages = cl.pages.len() as u64;
            let (free, end) = if large { (0, 0) } else { a.free_chunks(c) };
            let total_chunks = if large {
                total_pages
            } else {
                total_pages * cl.per_page as u64
            };
            let used: u64 = cl
                .pages
                .iter()
                .map(|&p| a.page(p as usize).used as u64)
                .sum();
            let age = a
                .hand(c)
                .filter(|&h| a.bits(h) & super::slab::B_LINKED != 0)
                .map_or(0, |h| now.saturating_sub(a.atime(h, now)) as u64);
            Some(ClassInfo {
                id: c as u32 + 1,
                chunk_size: if large {
                    a.page_size as u64
                } else {
                    cl.size as u64
                },
                chunks_per_page: cl.per_page as u64,
                total_pages,
                total_chunks,
                used_chunks: used,
                free_chunks: free,
                free_chunks_end: end,
                age,
                st: cl.st,
            })
        })
    }
}

#[cfg(test)]
mod tests {
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
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use crate::store::slab::PAGE_SIZE;

    fn cfg(mem: usize) -> StoreConfig {
        StoreConfig {
            mem_limit: mem,
            ..Default::default()
        }
    }

    fn set(s: &mut Shard, k: &str, v: &[u8], exp: u32, now: u32) -> StoreResult {
        s.store(
            &StoreRequest {
                exptime: exp,
                ..StoreRequest::new(StoreMode::Set, k.as_bytes(), v)
            },
            now,
        )
    }

    fn has(s: &mut Shard, k: &str, now: u32) -> bool {
        s.get(k.as_bytes(), now, None).is_some()
    }

    fn tick_all(s: &mut Shard, now: u32) {
        for _ in 0..100_000 {
            if !s.tick(now) {
                return;
            }
        }
        panic!("background work does not finish");
    }

    #[test]
    fn clock_spares_referenced_items() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let v = [b'v'; 100];
        let mut i = 0u32;
        // fill to the first eviction
        while s.stats().evictions == 0 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        let cap = i;
        for h in 0..1000 {
            assert!(has(&mut s, &format!("k{h}"), 10) || h < 2);
        }
        // twice the capacity of new keys, re-reading the hot set now and then
        for n in 0..2 * cap {
            set(&mut s, &format!("new{n}"), &v, 0, 10);
            if n % 5000 == 0 {
                for h in 2..1000 {
                    has(&mut s, &format!("k{h}"), 10);
                }
            }
        }
        let hot = (2..1000)
            .filter(|h| has(&mut s, &format!("k{h}"), 10))
            .count();
        let cold = (5000..cap)
            .filter(|c| has(&mut s, &format!("k{c}"), 10))
            .count();
        assert_eq!(hot, 998, "referenced items survive");
        assert_eq!(cold, 0, "unreferenced old items are the victims");
        assert!(s.stats().evicted_unfetched > 0);
        // a second class got its first page on credit; background work repays it
        tick_all(&mut s, 10);
        assert!(s.stats().mem_claimed as usize <= 8 * PAGE_SIZE);
    }

    #[test]
    fn expired_items_are_reclaimed_without_reads() {
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        for i in 0..20_000 {
            set(&mut s, &format!("t{i}"), b"xyz", 102, 100);
        }
        set(&mut s, "forever", b"1", 0, 100);
        set(&mut s, "later", b"1", 5000, 100);
        tick_all(&mut s, 101);
        assert_eq!(s.stats().curr_items, 20_002);
        tick_all(&mut s, 102);
        assert_eq!(s.stats().curr_items, 2);
        assert_eq!(s.stats().reclaimed, 20_000);
        assert_eq!(s.stats().expired_unfetched, 20_000);
        let info: Vec<ClassInfo> = s.class_info().collect();
        assert_eq!(info.iter().map(|c| c.used_chunks).sum::<u64>(), 2);
        assert!(has(&mut s, "later", 4999));
        tick_all(&mut s, 5000);
        assert!(!has(&mut s, "later", 5000));
        assert_eq!(s.stats().curr_items, 1);
    }

    #[test]
    fn touch_moves_an_item_in_the_wheel() {
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        set(&mut s, "a", b"1", 105, 100);
        set(&mut s, "b", b"1", 105, 100);
        set(&mut s, "c", b"1", 200, 100);
        assert!(s.touch(b"a", 300, 101).is_some());
        assert!(s.touch(b"b", 0, 101).is_some());
        assert!(s.get(b"c", 101, Some(103)).is_some());
        tick_all(&mut s, 110);
        assert_eq!(s.stats().curr_items, 2, "c expired at its new time");
        assert_eq!(s.stats().reclaimed, 1);
        tick_all(&mut s, 1000);
        assert!(has(&mut s, "b", 1000));
        assert!(!has(&mut s, "a", 1000));
        assert_eq!(s.stats().curr_items, 1);
    }

    #[test]
    fn delayed_flush_all() {
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        for i in 0..1000 {
            set(&mut s, &format!("k{i}"), b"v", 0, 10);
        }
        s.flush_all(12, 10);
        assert!(has(&mut s, "k1", 11));
        set(&mut s, "k2", b"new", 0, 11);
        // at 12 everything stored before is gone, without a walk on the request path
        assert!(!has(&mut s, "k1", 12));
        assert!(!has(&mut s, "k2", 12));
        assert_eq!(s.stats().get_flushed, 2);
        set(&mut s, "after", b"v", 0, 12);
        assert!(has(&mut s, "after", 12));
        tick_all(&mut s, 12);
        assert_eq!(s.stats().curr_items, 1);
        assert_eq!(s.stats().bytes as usize, item_size(5, 1, 0));
        // immediate flush
        s.flush_all(13, 13);
        assert!(!has(&mut s, "after", 13));
        set(&mut s, "x", b"v", 0, 13);
        assert!(has(&mut s, "x", 13));
    }

    #[test]
    fn no_evict_returns_out_of_memory() {
        let mut c = cfg(8 * PAGE_SIZE);
        c.no_evict = true;
        let mut s = Shard::new(0, 1, &c);
        let v = [b'v'; 100];
        let mut stored = 0;
        for i in 0..200_000 {
            match set(&mut s, &format!("k{i}"), &v, 0, 10) {
                StoreResult::Stored { .. } => stored += 1,
                StoreResult::OutOfMemory => break,
                r => panic!("{r:?}"),
            }
        }
        assert!(stored > 50_000);
        assert_eq!(s.stats().evictions, 0);
        assert!(has(&mut s, "k0", 10));
        assert!(has(&mut s, &format!("k{}", stored - 1), 10));
        let oom: u64 = s.class_info().map(|c| c.st.outofmemory).sum();
        assert!(oom >= 1);
        // deleting makes room again
        assert_eq!(
            s.delete(&DeleteRequest::new(b"k0"), 10),
            DeleteResult::Deleted
        );
        assert!(matches!(
            set(&mut s, "fresh", &v, 0, 10),
            StoreResult::Stored { .. }
        ));
    }

    #[test]
    fn large_items_and_chained_append() {
        let mut c = cfg(16 * PAGE_SIZE);
        c.max_item_size = 4 << 20;
        let mut s = Shard::new(0, 1, &c);
        let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
        assert!(matches!(
            set(&mut s, "big", &big, 0, 10),
            StoreResult::Stored { .. }
        ));
        assert_eq!(s.get(b"big", 10, None).unwrap().value, &big[..]);
        assert!(matches!(
            s.store(&StoreRequest::new(StoreMode::Append, b"big", b"tail"), 10),
            StoreResult::Stored { .. }
        ));
        assert!(matches!(
            s.store(&StoreRequest::new(StoreMode::Prepend, b"big", b"head"), 10),
            StoreResult::Stored { .. }
        ));
        let got = s.get(b"big", 10, None).unwrap().value.to_vec();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..900_004], &big[..]);
        assert_eq!(&got[900_004..], b"tail");
        let claimed = s.stats().mem_claimed;
        s.delete(&DeleteRequest::new(b"big"), 10);
        s.e.refresh_stats();
        assert!(s.stats().mem_claimed < claimed);
        // too large for -I
        let huge = vec![0u8; (4 << 20) + 1];
        assert_eq!(set(&mut s, "huge", &huge, 0, 10), StoreResult::TooLarge);
        // many large items: memory stays within the budget (evicting)
        for i in 0..40 {
            assert!(matches!(
                set(&mut s, &format!("b{i}"), &big, 0, 10),
                StoreResult::Stored { .. }
            ));
            s.e.refresh_stats();
            assert!(s.stats().mem_claimed as usize <= 16 * PAGE_SIZE);
        }
        assert!(has(&mut s, "b39", 10));
        assert!(!has(&mut s, "b0", 10));
    }

    #[test]
    fn reassign_moves_a_page_keeping_items_reachable() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let v = [b'v'; 100];
        for i in 0..30_000 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
        }
        let src = s.class_info().find(|c| c.total_pages > 1).unwrap();
        let dst = src.id + 10;
        assert_eq!(s.reassign(src.id as i64, src.id as i64), Reassign::Same);
        assert_eq!(s.reassign(0, dst as i64), Reassign::BadClass);
        assert_eq!(s.reassign(dst as i64, src.id as i64), Reassign::NoSpare);
        assert_eq!(s.reassign(src.id as i64, dst as i64), Reassign::Ok);
        assert_eq!(s.reassign(src.id as i64, dst as i64), Reassign::Busy);
        tick_all(&mut s, 10);
        let after: Vec<ClassInfo> = s.class_info().collect();
        let a = after.iter().find(|c| c.id == src.id).unwrap();
        let b = after.iter().find(|c| c.id == dst).unwrap();
        assert_eq!(a.total_pages, src.total_pages - 1);
        assert_eq!(b.total_pages, 1);
        assert_eq!(s.stats().slabs_moved, 1);
        // every item is still either reachable or was counted as evicted
        let alive = (0..30_000)
            .filter(|i| has(&mut s, &format!("k{i}"), 10))
            .count() as u64;
        assert_eq!(alive, s.stats().curr_items);
        assert_eq!(
            alive + s.stats().slab_reassign_evictions_nomem,
            src.st.items
        );
    }

    #[test]
    fn automove_recovers_from_calcification() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let small = [b's'; 100];
        let large = [b'L'; 1000];
        let mut now = 10;
        // phase 1: small items take all the memory
        for i in 0..100_000 {
            set(&mut s, &format!("s{i}"), &small, 0, now);
        }
        tick_all(&mut s, now);
        // phase 2: a working set of large items that fits in memory
        let keys: Vec<String> = (0..4000).map(|i| format!("L{i}")).collect();
        let mut ratio = 0.0;
        for _round in 0..40 {
            now += 1;
            let mut hits = 0;
            for k in &keys {
                if has(&mut s, k, now) {
                    hits += 1;
                } else {
                    set(&mut s, k, &large, 0, now);
                }
            }
            ratio = hits as f64 / keys.len() as f64;
            for _ in 0..200 {
                if !s.tick(now) {
                    break;
                }
            }
        }
        assert!(ratio > 0.95, "hit ratio after rebalancing: {ratio}");
        assert!(s.stats().slabs_moved >= 3);
        s.e.refresh_stats();
        assert!(
            s.stats().mem_claimed as usize <= 8 * PAGE_SIZE,
            "debt repaid"
        );
    }

    /// Background work comes in short slices: 1M items expiring in the same
    /// second, plus index growth, never hold the shard for long.
    #[test]
    fn background_slices_are_short() {
        use std::time::{Duration, Instant};
        let mut s = Shard::new(0, 1, &cfg(256 << 20));
        for i in 0..1_000_000 {
            set(&mut s, &format!("e{i}"), b"0123456789", 12, 10);
        }
        // The slice's length is measured in this thread's CPU time: on a
        // loaded machine a slice may be preempted, and wall time would then
        // count other processes' work (a 68 ms "slice" was seen at load 7).
        fn thread_cpu() -> Duration {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec into the local we pass.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        }
        let mut worst = Duration::ZERO;
        let mut slices = 0;
        let start = Instant::now();
        loop {
            let t = thread_cpu();
            let more = s.tick(12);
            worst = worst.max(thread_cpu() - t);
            slices += 1;
            if !more {
                break;
            }
        }
        eprintln!(
            "reclaimed 1M expired items in {slices} slices, {:?} total, longest slice {:?} CPU",
            start.elapsed(),
            worst
        );
        assert_eq!(s.stats().curr_items, 0);
        assert_eq!(s.stats().reclaimed, 1_000_000);
        // Typically ~0.2-0.4 ms here; the bound is loose for noisy machines.
        assert!(worst < Duration::from_millis(20), "slice of {worst:?}");
    }

    #[test]
    fn cas_values_increase_and_differ_across_shards() {
        let c = cfg(64 << 20);
        let mut a = Shard::new(0, 2, &c);
        let mut b = Shard::new(1, 2, &c);
        let mut last = 0;
        for i in 0..1000 {
            let StoreResult::Stored { cas, .. } = set(&mut a, &format!("k{i}"), b"1", 0, 10) else {
                panic!()
            };
            assert!(cas > last);
            last = cas;
            let StoreResult::Stored { cas: cb, .. } = set(&mut b, &format!("k{i}"), b"1", 0, 10)
            else {
                panic!()
            };
            assert_ne!(cb, cas);
        }
        // incr changes the CAS
        set(&mut a, "n", b"5", 0, 10);
        let c1 = a.get(b"n", 10, None).unwrap().cas;
        let ArithResult::Value { cas: c2, .. } = a.arith(&ArithRequest::new(b"n", true, 1), 10)
        else {
            panic!()
        };
        assert!(c2 > c1);
    }

    #[test]
    fn cas_and_delete_compare() {
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        let StoreResult::Stored { cas, .. } = set(&mut s, "k", b"v", 0, 10) else {
            panic!()
        };
        assert_eq!(
            s.store(
                &StoreRequest {
                    cas: cas + 1,
                    ..StoreRequest::new(StoreMode::Cas, b"k", b"w")
                },
                10
            ),
            StoreResult::Exists
        );
        assert_eq!(
            s.store(
                &StoreRequest {
                    cas,
                    ..StoreRequest::new(StoreMode::Cas, b"nope", b"w")
                },
                10
            ),
            StoreResult::NotFound
        );
        assert!(matches!(
            s.store(
                &StoreRequest {
                    flags: 3,
                    cas,
                    ..StoreRequest::new(StoreMode::Cas, b"k", b"w")
                },
                10
            ),
            StoreResult::Stored { .. }
        ));
        let it = s.get(b"k", 10, None).unwrap();
        assert_eq!((it.value, it.flags), (&b"w"[..], 3));
        let c2 = it.cas;
        assert_eq!(
            s.delete(
                &DeleteRequest {
                    cas: c2 + 1,
                    ..DeleteRequest::new(b"k")
                },
                10
            ),
            DeleteResult::Exists
        );
        assert_eq!(
            s.delete(
                &DeleteRequest {
                    cas: c2,
                    ..DeleteRequest::new(b"k")
                },
                10
            ),
            DeleteResult::Deleted
        );
        assert_eq!(
            s.delete(&DeleteRequest::new(b"k"), 10),
            DeleteResult::NotFound
        );
        // add on an existing key, replace on a missing one
        set(&mut s, "a", b"1", 0, 10);
        assert_eq!(
            s.store(&StoreRequest::new(StoreMode::Add, b"a", b"2"), 10),
            StoreResult::NotStored
        );
        assert_eq!(
            s.store(&StoreRequest::new(StoreMode::Replace, b"zz", b"2"), 10),
            StoreResult::NotStored
        );
        let cs: Vec<ClassInfo> = s.class_info().collect();
        assert_eq!(cs.iter().map(|c| c.st.cas_badval).sum::<u64>(), 1);
        assert_eq!(cs.iter().map(|c| c.st.cas_hits).sum::<u64>(), 1);
        assert_eq!(cs.iter().map(|c| c.st.delete_hits).sum::<u64>(), 1);
    }
}

#[cfg(test)]
mod model_tests {
    //! Property tests: the shard agrees with a model HashMap with TTLs.
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, Vec<u8>, u8, u32),
        Add(u8, Vec<u8>, u8),
        Replace(u8, Vec<u8>),
        Append(u8, Vec<u8>),
        Prepend(u8, Vec<u8>),
        Cas(u8, Vec<u8>, bool),
        Delete(u8),
        Incr(u8, u64),
        Decr(u8, u64),
        Touch(u8, u8),
        Get(u8),
        Advance(u8),
        Tick,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = 0u8..24;
        let val = prop::collection::vec(prop::sample::select(b"0123456789 ab".to_vec()), 0..40);
        prop_oneof![
            4 => (key.clone(), val.clone(), 0u8..4, 0u32..3).prop_map(|(k, v, t, f)| Op::Set(k, v, t, f)),
            1 => (key.clone(), val.clone(), 0u8..4).prop_map(|(k, v, t)| Op::Add(k, v, t)),
            1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Replace(k, v)),
            1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Append(k, v)),
            1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Prepend(k, v)),
            1 => (key.clone(), val.clone(), any::<bool>()).prop_map(|(k, v, g)| Op::Cas(k, v, g)),
            2 => key.clone().prop_map(Op::Delete),
            1 => (key.clone(), 0u64..1000).prop_map(|(k, d)| Op::Incr(k, d)),
            1 => (key.clone(), 0u64..1000).prop_map(|(k, d)| Op::Decr(k, d)),
            1 => (key.clone(), 0u8..4).prop_map(|(k, t)| Op::Touch(k, t)),
            4 => key.prop_map(Op::Get),
            2 => (0u8..3).prop_map(Op::Advance),
            1 => Just(Op::Tick),
            1 => Just(Op::Flush),
        ]
    }

    #[derive(Debug, Clone)]
    struct M {
        v: Vec<u8>,
        flags: u32,
        exp: u32,
        cas: u64,
    }

    fn exp_of(ttl: u8, now: u32) -> u32 {
        if ttl == 0 {
            0
        } else {
            now + ttl as u32
        }
    }

    fn run_model(ops: Vec<Op>, mem: usize) {
        let mut s = Shard::new(
            0,
            1,
            &StoreConfig {
                mem_limit: mem,
                ..Default::default()
            },
        );
        let mut m: HashMap<Vec<u8>, M> = HashMap::new();
        let mut now = 100u32;
        for op in ops {
            // the model forgets expired items
            m.retain(|_, it| !crate::time::is_expired(it.exp, now));
            let is_append = matches!(op, Op::Append(..));
            let is_incr = matches!(op, Op::Incr(..));
            match op {
                Op::Set(k, v, t, f) => {
                    let key = vec![b'k', k];
                    let exp = exp_of(t, now);
                    let r = s.store(
                        &StoreRequest {
                            flags: f,
                            exptime: exp,
                            ..StoreRequest::new(StoreMode::Set, &key, &v)
                        },
                        now,
                    );
                    let StoreResult::Stored { cas, .. } = r else {
                        panic!("{r:?}")
                    };
                    m.insert(
                        key,
                        M {
                            v,
                            flags: f,
                            exp,
                            cas,
                        },
                    );
                }
                Op::Add(k, v, t) => {
                    let key = vec![b'k', k];
                    let exp = exp_of(t, now);
                    let r = s.store(
                        &StoreRequest {
                            exptime: exp,
                            ..StoreRequest::new(StoreMode::Add, &key, &v)
                        },
                        now,
                    );
                    match m.entry(key) {
                        std::collections::hash_map::Entry::Occupied(_) => {
                            assert_eq!(r, StoreResult::NotStored);
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let StoreResult::Stored { cas, .. } = r else {
                                panic!("{r:?}")
                            };
                            e.insert(M {
                                v,
                                flags: 0,
                                exp,
                                cas,
                            });
                        }
                    }
                }
                Op::Replace(k, v) => {
                    let key = vec![b'k', k];
                    let r = s.store(
                        &StoreRequest {
                            flags: 1,
                            ..StoreRequest::new(StoreMode::Replace, &key, &v)
                        },
                        now,
                    );
                    match m.get_mut(&key) {
                        None => assert_eq!(r, StoreResult::NotStored),
                        Some(it) => {
                            let StoreResult::Stored { cas, .. } = r else {
                                panic!("{r:?}")
                            };
                            *it = M {
                                v,
                                flags: 1,
                                exp: 0,
                                cas,
                            };
                        }
                    }
                }
                Op::Append(k, v) | Op::Prepend(k, v) => {
                    let key = vec![b'k', k];
                    let app = is_append;
                    let mode = if app {
                        StoreMode::Append
                    } else {
                        StoreMode::Prepend
                    };
                    let r = s.store(
                        &StoreRequest {
                            flags: 9,
                            ..StoreRequest::new(mode, &key, &v)
                        },
                        now,
                    );
                    match m.get_mut(&key) {
                        None => assert_eq!(r, StoreResult::NotStored),
                        Some(it) => {
                            let StoreResult::Stored { cas, .. } = r else {
                                panic!("{r:?}")
                            };
                            if app {
                                it.v.extend_from_slice(&v);
                            } else {
                                let mut n = v.clone();
                                n.extend_from_slice(&it.v);
                                it.v = n;
                            }
                            it.cas = cas;
                        }
                    }
                }
                Op::Cas(k, v, good) => {
                    let key = vec![b'k', k];
                    let cur = m.get(&key).map(|it| it.cas);
                    let given = match (cur, good) {
                        (Some(c), true) => c,
                        (Some(c), false) => c + 1,
                        (None, _) => 12345,
                    };
                    let r = s.store(
                        &StoreRequest {
                            flags: 2,
                            cas: given,
                            ..StoreRequest::new(StoreMode::Cas, &key, &v)
                        },
                        now,
                    );
                    match (cur, good) {
                        (None, _) => assert_eq!(r, StoreResult::NotFound),
                        (Some(_), false) => assert_eq!(r, StoreResult::Exists),
                        (Some(_), true) => {
                            let StoreResult::Stored { cas, .. } = r else {
                                panic!("{r:?}")
                            };
                            m.insert(
                                key,
                                M {
                                    v,
                                    flags: 2,
                                    exp: 0,
                                    cas,
                                },
                            );
                        }
                    }
                }
                Op::Delete(k) => {
                    let key = vec![b'k', k];
                    let r = s.delete(&DeleteRequest::new(&key), now);
                    let want = if m.remove(&key).is_some() {
                        DeleteResult::Deleted
                    } else {
                        DeleteResult::NotFound
                    };
                    assert_eq!(r, want);
                }
                Op::Incr(k, d) | Op::Decr(k, d) => {
                    let key = vec![b'k', k];
                    let incr = is_incr;
                    let r = s.arith(&ArithRequest::new(&key, incr, d), now);
                    match m.get_mut(&key) {
                        None => assert_eq!(r, ArithResult::NotFound),
                        Some(it) => match strtoull(&it.v) {
                            None => assert_eq!(r, ArithResult::NonNumeric),
                            Some(cur) => {
                                let want = if incr {
                                    cur.wrapping_add(d)
                                } else {
                                    cur.saturating_sub(d)
                                };
                                let ArithResult::Value { value, cas, .. } = r else {
                                    panic!("{r:?}")
                                };
                                assert_eq!(value, want);
                                let digits = want.to_string().into_bytes();
                                if digits.len() <= it.v.len() {
                                    let mut nv = digits.clone();
                                    nv.resize(it.v.len(), b' ');
                                    it.v = nv;
                                } else {
                                    it.v = digits;
                                }
                                it.cas = cas;
                            }
                        },
                    }
                }
                Op::Touch(k, t) => {
                    let key = vec![b'k', k];
                    let exp = exp_of(t, now);
                    let r = s.touch(&key, exp, now);
                    match m.get_mut(&key) {
                        None => assert_eq!(r, None),
                        Some(it) => {
                            assert_eq!(r, Some(it.cas));
                            it.exp = exp;
                        }
                    }
                }
                Op::Get(k) => {
                    let key = vec![b'k', k];
                    let got = s
                        .get(&key, now, None)
                        .map(|it| (it.value.to_vec(), it.flags, it.cas));
                    let want = m.get(&key).map(|it| (it.v.clone(), it.flags, it.cas));
                    assert_eq!(got, want, "key {k} at {now}");
                }
                Op::Advance(d) => now += d as u32,
                Op::Tick => {
                    while s.tick(now) {}
                    assert_eq!(s.stats().curr_items, m.len() as u64);
                }
                Op::Flush => {
                    s.flush_all(now, now);
                    m.clear();
                }
            }
        }
        // final agreement
        m.retain(|_, it| !crate::time::is_expired(it.exp, now));
        for k in 0..24u8 {
            let key = vec![b'k', k];
            let got = s.get(&key, now, None).map(|it| it.value.to_vec());
            assert_eq!(got, m.get(&key).map(|it| it.v.clone()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn shard_agrees_with_model(ops in prop::collection::vec(op(), 1..300)) {
            run_model(ops, 64 << 20);
        }

        /// Small memory, mixed sizes: the cache may forget, but a get never
        /// returns a wrong value and memory stays within the budget (plus
        /// the bounded first-page credit).
        #[test]
        fn small_memory_never_lies(ops in prop::collection::vec(
            (0u16..400, 0usize..40_000, any::<bool>()), 1..400)) {
            let limit = 512 << 10;
            let mut s = Shard::new(0, 1, &StoreConfig { mem_limit: limit, ..Default::default() });
            let mut m: HashMap<u16, Vec<u8>> = HashMap::new();
            for (i, (k, len, is_set)) in ops.into_iter().enumerate() {
                let key = format!("key{k}");
                if is_set {
                    let v: Vec<u8> = (0..len).map(|j| (j as u8) ^ (k as u8) ^ (i as u8)).collect();
                    let r = s.store(&StoreRequest::new(StoreMode::Set, key.as_bytes(), &v), 10);
                    prop_assert!(matches!(r, StoreResult::Stored { .. }), "{:?}", r);
                    m.insert(k, v);
                } else if let Some(it) = s.get(key.as_bytes(), 10, None) {
                    prop_assert_eq!(Some(&it.value.to_vec()), m.get(&k));
                }
                if i % 50 == 0 {
                    while s.tick(10) {}
                }
                s.e.refresh_stats();
                let a = &s.e.a;
                prop_assert!(a.claimed <= a.limit + a.debt_max, "claimed {}", a.claimed);
            }
        }
    }
}

/// One live item as a dump sees it (`stats cachedump`, `lru_crawler
/// metadump`), valid while the shard lock is held.
#[derive(Debug, Clone, Copy)]
pub struct WalkItem<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    /// The value (replication's full sync copies it).
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Relative expiry (0 = never).
    pub exptime: u32,
    /// Relative time of the last access.
    pub atime: u32,
    pub fetched: bool,
    /// Meta stale bit (`md I`, `ms I`).
    pub stale: bool,
}

impl Shard {
    /// Visit the live items of index positions `from..` until `max_buckets`
    /// buckets were visited; returns the position to continue from, or
    /// `None` when the walk is complete. Reads only: nothing is bumped,
    /// dead items are skipped (left to the background reclaim). The caller
    /// holds the lock for one slice and copies what it needs.
    pub fn walk(
        &mut self,
        from: usize,
        max_buckets: usize,
        now: u32,
        mut f: impl FnMut(&WalkItem<'_>),
    ) -> Option<usize> {
        // A delayed flush_all whose time has come applies first.
        self.e.check_flush(now);
        let e = &self.e;
        let mut b = from;
        for _ in 0..max_buckets {
            let heads = e.ix.walk_heads(b)?;
            for mut h in heads {
                while h != NONE {
                    if e.dead(h, now).is_none() {
                        let bits = e.a.bits(h);
                        f(&WalkItem {
                            key: e.a.key(h),
                            value_len: e.a.vlen(h),
                            value: e.a.value(h),
                            flags: e.a.flags(h),
                            cas: e.a.cas(h),
                            exptime: e.a.exptime(h),
                            atime: e.a.atime(h, now),
                            fetched: bits & B_FETCHED != 0,
                            stale: bits & B_STALE != 0,
                        });
                    }
                    h = e.a.next(h);
                }
            }
            b += 1;
        }
        Some(b)
    }
}
