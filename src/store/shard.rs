//! One shard: the items of the keys that hash to it, with memcached's
//! command semantics on top of the storage engine (`engine`: slab arena,
//! hash index, CLOCK eviction, timing-wheel expiry, slab rebalancing).

use super::engine::{Engine, Reassign};
use super::journal::{Applied, Change, Journal};
use super::slab::{item_size, Budget, B_FETCHED, B_STALE, B_WIN, NONE};
use super::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, ItemRef, MetaGet, MetaGetOutcome,
    ShardStats, StoreConfig, StoreMode, StoreRequest, StoreResult, SEEDS,
};
use crate::digits::{fmt_u64, strtoull};
use crate::item::item_fits;

/// One shard of the key space.
pub struct Shard {
    pub(super) engine: Engine,
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
    /// The item at this handle is the post-image, with a new CAS.
    Item(u32),
    /// The item at this handle is the post-image of a change that kept its
    /// CAS (touch, gat, `mg T`, `md x`): a revision of that CAS.
    Revised(u32),
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
            engine: Engine::new(id, budget, cfg, hasher),
            journal: None,
        }
    }

    /// Record every client mutation in `journal` from now on (None: stop).
    pub fn set_journal(&mut self, journal: Option<Box<dyn Journal>>) {
        self.journal = journal;
    }

    /// Report lookups and evictions to `o` (see `observe`).
    pub fn set_observer(&mut self, o: Option<std::sync::Arc<dyn super::observe::Observer>>) {
        self.engine.observer = o;
    }

    /// Change the HLC host bit of this shard's later CAS values.
    pub fn set_host_bit(&mut self, host_bit: bool) {
        self.engine.hlc.set_host_bit(host_bit);
    }

    /// The commit point: every client mutation ends here, once, after the
    /// change is made (see `journal.rs`). Without a journal: one branch.
    #[inline]
    fn commit(&mut self, c: Commit<'_>) {
        if self.journal.is_none() {
            return;
        }
        let change = match c {
            Commit::Item(item) | Commit::Revised(item) => {
                let rev = match c {
                    Commit::Revised(_) => self.engine.version(0),
                    _ => 0,
                };
                let arena = &self.engine.arena;
                let (key, value) = arena.key_value(item);
                Change::Item {
                    key,
                    value,
                    flags: arena.flags(item),
                    exptime: arena.exptime(item),
                    cas: arena.cas(item),
                    stale: arena.bits(item) & B_STALE != 0,
                    rev,
                }
            }
            Commit::Removed(key) => Change::Removed {
                key,
                cas: self.engine.version(0),
            },
            Commit::Flush { at, cas } => Change::Flush { at, cas },
        };
        if let Some(j) = self.journal.as_mut() {
            j.record(&change);
        }
    }

    /// The one version function (`Engine::version`): a given version is
    /// used as is and observed by the clock; 0 takes the clock's next value.
    fn version(&mut self, given: u64) -> u64 {
        self.engine.version(given)
    }

    pub fn stats(&self) -> &ShardStats {
        self.engine.stats()
    }

    /// Zero the counters `stats reset` clears (gauges such as curr_items and
    /// bytes, and the per-class item counts, stay).
    pub fn reset_stats(&mut self) {
        self.engine.reset_stats();
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        // The shard hashes keys itself (callers' hashes are for routing, and
        // tests pass 0): one short ahash.
        self.engine.hash(key)
    }

    /// Fetch a live item, marking it accessed; `touch` sets a new expiry.
    pub fn get<'a>(
        &'a mut self,
        key: &'a [u8],
        now: u32,
        touch: Option<u32>,
    ) -> Option<ItemRef<'a>> {
        let hash = self.hash(key);
        let Ok(item) = self.engine.lookup(hash, key, now) else {
            return None;
        };
        let fetched = self.engine.touch_access(item, now);
        match touch {
            Some(exp) => {
                self.engine.set_exptime(item, exp);
                self.engine.class_stats(item).touch_hits += 1;
                self.commit(Commit::Revised(item));
            }
            None => self.engine.note_hit(item),
        }
        let arena = &self.engine.arena;
        let (key, value) = arena.key_value(item);
        let bits = arena.bits(item);
        Some(ItemRef {
            key,
            value,
            flags: arena.flags(item),
            cas: arena.cas(item),
            exptime: arena.exptime(item),
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
        let item = self.engine.alloc(size, protect, now)?;
        self.engine.arena.init_item(
            item,
            it.key,
            vlen,
            it.flags,
            it.exptime,
            self.engine.stamp(now),
        );
        let cas = self.version(it.cas);
        self.engine.arena.set_cas(item, cas);
        Some(item)
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
        let Some(item) = self.write_new(it, data.len(), NONE, now) else {
            if unlink_on_oom {
                // memcached: a failed set must not leave stale data.
                let old = self.engine.find(hash, it.key);
                if old != NONE {
                    self.engine.unlink(old, hash);
                    self.commit(Commit::Removed(it.key));
                }
            }
            return Err(StoreResult::OutOfMemory);
        };
        self.engine.arena.value_mut(item).copy_from_slice(data);
        self.install(item, hash);
        Ok(item)
    }

    /// Link `item` under its key, replacing whatever item the key has now.
    fn install(&mut self, item: u32, hash: u64) -> u64 {
        let cur = self.engine.find(hash, self.engine.arena.key(item));
        if cur == NONE {
            self.engine.link(item, hash);
        } else {
            self.engine.relink(cur, item, hash);
        }
        self.engine.arena.cas(item)
    }

    /// set/add/replace/append/prepend/cas, meta `ms`, `lease-set`:
    /// memcached's full CAS rules (see [`StoreRequest`]) plus the meta
    /// extras. A successful store makes a fresh item (not stale, no win
    /// handed out) unless `invalidate` stored it stale.
    pub fn store(&mut self, req: &StoreRequest<'_>, now: u32) -> StoreResult {
        let r = self.store_inner(req, now);
        if self.engine.observer.as_ref().is_some_and(|o| o.stores()) {
            self.report_store(req, r, now);
        }
        r
    }

    /// Tell the observer what a store did: the stored item's length, flags
    /// and expiry (an append's combined item), else the request's.
    #[cold]
    fn report_store(&self, req: &StoreRequest<'_>, result: StoreResult, now: u32) {
        let Some(o) = &self.engine.observer else {
            return;
        };
        let mut s = super::observe::Stored {
            key: req.key,
            mode: req.mode,
            result,
            value_len: req.data.len(),
            flags: req.flags,
            exptime: req.exptime,
            now,
        };
        if req.cas != 0 && matches!(req.mode, StoreMode::Set | StoreMode::Replace) {
            s.mode = StoreMode::Cas;
        }
        if let StoreResult::Stored { len, .. } = result {
            let item = self.engine.find(self.engine.hash(req.key), req.key);
            if item != NONE {
                s.value_len = len;
                s.flags = self.engine.arena.flags(item);
                s.exptime = self.engine.arena.exptime(item);
            }
        }
        o.stored(&s);
    }

    /// mcrouter's `lease-set`, one call: `req` (a set comparing `req.cas`,
    /// the lease token) is stored only over a live item whose lease is out
    /// (stale, or a win handed out) and whose CAS is the token; otherwise
    /// `NotStored`.
    pub fn lease_set(&mut self, req: &StoreRequest<'_>, now: u32) -> StoreResult {
        let hash = self.hash(req.key);
        // The caller's lease is outstanding: the item is a stale or
        // unfilled lease and its CAS is the token.
        let found = self.engine.lookup(hash, req.key, now);
        let arena = &self.engine.arena;
        let leased = found.is_ok_and(|item| {
            arena.bits(item) & (B_STALE | B_WIN) != 0 && arena.cas(item) == req.cas
        });
        let r = if leased {
            self.store_inner(req, now)
        } else {
            StoreResult::NotStored
        };
        // Refused or not, the observer (`watch mutations`) sees it, as it
        // sees a refused `cas`.
        if self.engine.observer.as_ref().is_some_and(|o| o.stores()) {
            self.report_store(req, r, now);
        }
        r
    }

    fn store_inner(&mut self, req: &StoreRequest<'_>, now: u32) -> StoreResult {
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
        self.engine
            .class_stats_for(item_size(key.len(), data.len(), flags))
            .cmd_set += 1;
        if !item_fits(key.len(), flags, data.len(), self.engine.max_item()) {
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
        let Ok(old) = self.engine.lookup(hash, key, now) else {
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
            let item_cas = self.engine.arena.cas(old);
            if item_cas == cas {
                // match: store below
            } else if invalidate && cas < item_cas {
                // Stale store: new value, old expiry, marked stale, win kept.
                let exptime = self.engine.arena.exptime(old);
                let win = self.engine.arena.bits(old) & B_WIN != 0;
                let r = self.put(&Fresh { exptime, ..fresh }, hash, data, now, false);
                if let Ok(item) = r {
                    self.engine.mark_stale(item);
                    if win {
                        self.engine.set_win(item);
                    }
                }
                return self.stored(r);
            } else {
                self.engine.class_stats(old).cas_badval += 1;
                return StoreResult::Exists;
            }
        }
        let r = match mode {
            StoreMode::Add => {
                self.engine.set_atime(old, now);
                return StoreResult::NotStored;
            }
            StoreMode::Append | StoreMode::Prepend => {
                if cas != 0 && self.engine.arena.cas(old) != cas {
                    return StoreResult::Exists;
                }
                let old_len = self.engine.arena.vlen(old);
                let total = old_len + data.len();
                let (flags, exptime) =
                    (self.engine.arena.flags(old), self.engine.arena.exptime(old));
                if !item_fits(key.len(), flags, total, self.engine.max_item()) {
                    // memcached: the combined item cannot be allocated, so
                    // nothing is stored (NOT_STORED, not "too large").
                    return StoreResult::NotStored;
                }
                let combined = Fresh {
                    flags,
                    exptime,
                    ..fresh
                };
                let Some(item) = self.write_new(&combined, total, old, now) else {
                    return StoreResult::OutOfMemory;
                };
                if mode == StoreMode::Append {
                    self.engine.arena.copy_value(old, item, 0);
                    self.engine.arena.value_mut(item)[old_len..].copy_from_slice(data);
                } else {
                    self.engine.arena.copy_value(old, item, data.len());
                    self.engine.arena.value_mut(item)[..data.len()].copy_from_slice(data);
                }
                self.engine.relink(old, item, hash);
                Ok(item)
            }
            _ => self.put(&fresh, hash, data, now, set),
        };
        if let Ok(item) = r {
            if cas_mode {
                self.engine.class_stats(item).cas_hits += 1;
            }
        }
        self.stored(r)
    }

    /// The end of every store: commit the stored item.
    fn stored(&mut self, r: Result<u32, StoreResult>) -> StoreResult {
        match r {
            Ok(item) => {
                self.commit(Commit::Item(item));
                StoreResult::Stored {
                    cas: self.engine.arena.cas(item),
                    len: self.engine.arena.vlen(item),
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
        let Ok(mut item) = self.engine.lookup(hash, key, now) else {
            return DeleteResult::NotFound;
        };
        let old_cas = self.engine.arena.cas(item);
        if opts.cas != 0 && old_cas != opts.cas {
            return DeleteResult::Exists;
        }
        self.engine.class_stats(item).delete_hits += 1;
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
            let Some(new_item) = self.write_new(&empty, 0, item, now) else {
                return DeleteResult::NotFound;
            };
            self.engine.relink(item, new_item, hash);
            item = new_item;
        }
        if opts.invalidate {
            let cas = self.version(opts.new_cas);
            if let Some(exp) = opts.touch {
                self.engine.set_exptime(item, exp);
            }
            self.engine.mark_stale(item);
            self.engine.clear_win(item);
            self.engine.arena.set_cas(item, cas);
        } else if !opts.remove_value {
            self.engine.unlink(item, hash);
            self.commit(Commit::Removed(key));
            return DeleteResult::Deleted;
        }
        if self.engine.arena.cas(item) == old_cas {
            self.commit(Commit::Revised(item)); // `md x` keeps the CAS
        } else {
            self.commit(Commit::Item(item));
        }
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
        let item = match self.engine.lookup(hash, key, now) {
            Ok(item) => item,
            Err(_) => {
                let empty = Fresh {
                    key,
                    flags: 0,
                    exptime: op.vivify?,
                    cas: op.new_cas,
                };
                let item = self.write_new(&empty, 0, NONE, now)?;
                self.install(item, hash);
                out.created = true;
                item
            }
        };
        let bits = self.engine.arena.bits(item);
        let before = if out.created {
            (false, now, 0, false, false)
        } else {
            (
                bits & B_FETCHED != 0,
                self.engine.arena.atime(item, now),
                self.engine.arena.exptime(item),
                bits & B_STALE != 0,
                bits & B_WIN != 0,
            )
        };
        if out.created {
            out.won = true;
        } else {
            let old_exp = before.2;
            if let Some(exp) = op.touch {
                self.engine.set_exptime(item, exp);
                self.engine.class_stats(item).touch_hits += 1;
            }
            let cmp_exp = if op.recache_after_touch {
                self.engine.arena.exptime(item)
            } else {
                old_exp
            };
            let recache = op.recache.is_some_and(|r| cmp_exp != 0 && cmp_exp < r);
            out.won = op.claim_win && !before.4 && (before.3 || recache);
        }
        if out.won {
            self.engine.set_win(item);
        }
        if op.bump {
            self.engine.touch_access(item, now);
            self.engine.note_hit(item);
        }
        if out.created {
            self.commit(Commit::Item(item));
        } else if op.touch.is_some() {
            self.commit(Commit::Revised(item));
        }
        let arena = &self.engine.arena;
        let (key, value) = arena.key_value(item);
        Some((
            ItemRef {
                key,
                value,
                flags: arena.flags(item),
                cas: arena.cas(item),
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
        let Ok(item) = self.engine.lookup(hash, key, now) else {
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
            let Some(item) = self.write_new(&created, d.len(), NONE, now) else {
                return ArithResult::OutOfMemory;
            };
            self.engine.arena.value_mut(item).copy_from_slice(d);
            let cas = self.install(item, hash);
            self.commit(Commit::Item(item));
            return ArithResult::Value {
                value,
                cas,
                created: true,
                exptime,
            };
        };
        // memcached: an empty value, or one it stores in chunks (too large
        // to be a number), is non-numeric before any CAS compare.
        let vlen = self.engine.arena.vlen(item);
        if vlen == 0 || crate::item::chunked(key.len(), self.engine.arena.flags(item), vlen) {
            return ArithResult::NonNumeric;
        }
        if req.cas != 0 && self.engine.arena.cas(item) != req.cas {
            return ArithResult::Exists;
        }
        let Some(cur) = strtoull(self.engine.arena.value(item)) else {
            return ArithResult::NonNumeric;
        };
        let value = if req.incr {
            cur.wrapping_add(req.delta)
        } else {
            cur.saturating_sub(req.delta)
        };
        {
            let st = self.engine.class_stats(item);
            if req.incr {
                st.incr_hits += 1;
            } else {
                st.decr_hits += 1;
            }
        }
        let d = fmt_u64(value, &mut digits);
        self.engine.set_atime(item, now);
        let exptime = self.engine.arena.exptime(item);
        let item = if d.len() <= self.engine.arena.vlen(item) {
            // memcached rewrites in place, padding with spaces.
            let n = d.len();
            let v = self.engine.arena.value_mut(item);
            v[..n].copy_from_slice(d);
            v[n..].fill(b' ');
            let cas = self.version(req.new_cas);
            self.engine.arena.set_cas(item, cas);
            item
        } else {
            let grown = Fresh {
                key,
                flags: self.engine.arena.flags(item),
                exptime,
                cas: req.new_cas,
            };
            let Some(new_item) = self.write_new(&grown, d.len(), item, now) else {
                return ArithResult::OutOfMemory;
            };
            self.engine.arena.value_mut(new_item).copy_from_slice(d);
            self.engine.relink(item, new_item, hash);
            new_item
        };
        if let Some(exp) = req.touch {
            self.engine.set_exptime(item, exp);
            self.engine.class_stats(item).touch_hits += 1;
        }
        self.commit(Commit::Item(item));
        ArithResult::Value {
            value,
            cas: self.engine.arena.cas(item),
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
        self.engine.flush_all(at, now, version, true);
        self.commit(Commit::Flush { at, cas });
    }

    /// Apply a change received from the partner: last writer wins by CAS
    /// (an item or removal whose cas is <= the local item's cas changes
    /// nothing → Older); the item is stored with the given cas; the clock
    /// observes the cas; never passes through the journal. An item whose
    /// CAS equals the local item's but whose content differs (both hosts
    /// made that version: equal host bits, or the same client `E`) wins
    /// only if it is the larger by (value, flags, stale, expiry), so both
    /// hosts keep the same one.
    ///
    /// A revision (`rev` != 0: touch, gat, `mg T`, `md x` kept the CAS) of
    /// the local item's own CAS is taken over (`Revised`: the expiry set in
    /// place when value and flags are unchanged, else the item rewritten
    /// with that CAS). Which of two revisions of one CAS is newer is the
    /// caller's to check before (the store keeps no revision per item); a
    /// revision of a newer CAS than the local one is stored as any item.
    ///
    /// A removal of a missing key is `Removed` (idempotent; no tombstone is
    /// kept). An item that cannot be stored (too large, no memory) unlinks
    /// the older local copy; one with a key longer than a client's (250
    /// bytes) is `TooLarge` (no local copy can have that key). A flush goes by version only: items with a CAS
    /// up to `cas` die at `at` (the local flush_all's rule by access time is
    /// not applied).
    pub fn apply(&mut self, change: &Change<'_>, now: u32) -> Applied {
        match *change {
            Change::Item {
                key,
                value,
                flags,
                exptime,
                cas,
                stale,
                rev,
            } => {
                // An item holds a key of at most 255 bytes (one length
                // byte; the protocols pass at most 250), the wire up to
                // 65535: a longer one would corrupt the item's header.
                if key.len() > crate::protocol::MAX_KEY_LEN {
                    return Applied::TooLarge;
                }
                let hash = self.hash(key);
                self.version(cas);
                if rev != 0 {
                    self.version(rev);
                }
                let old = self.engine.lookup(hash, key, now).ok();
                let revised = match old.map(|item| self.engine.arena.cas(item)) {
                    Some(local) if local > cas => return Applied::Older,
                    Some(local) if local == cas && rev == 0 => {
                        // The same version for another item: the partners
                        // made it independently (the same HLC host bit, or
                        // the same client `E`). Both hosts break the tie
                        // alike, by content: the larger item wins.
                        let a = &self.engine.arena;
                        let item = old.expect("matched Some");
                        let ours = (
                            a.value(item),
                            a.flags(item),
                            a.bits(item) & B_STALE != 0,
                            a.exptime(item),
                        );
                        if (value, flags, stale, exptime) <= ours {
                            return Applied::Older;
                        }
                        false
                    }
                    Some(local) if local == cas => {
                        let item = old.expect("matched Some");
                        let a = &self.engine.arena;
                        let same = a.value(item) == value
                            && a.flags(item) == flags
                            && (a.bits(item) & B_STALE != 0) == stale;
                        if same {
                            self.engine.set_exptime(item, exptime);
                            return Applied::Revised;
                        }
                        true
                    }
                    _ => false,
                };
                let fits = item_fits(key.len(), flags, value.len(), self.engine.max_item());
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
                let Some(item) = new else {
                    // Never leave the older version behind a failed apply.
                    // (A failed revision drops its own CAS's item: the
                    // partner changed it, this host cannot hold the change.)
                    if let Some(old) = old {
                        self.engine.unlink(old, hash);
                    }
                    return if fits {
                        Applied::OutOfMemory
                    } else {
                        Applied::TooLarge
                    };
                };
                self.engine.arena.value_mut(item).copy_from_slice(value);
                if stale {
                    self.engine.mark_stale(item);
                }
                self.install(item, hash);
                if revised {
                    Applied::Revised
                } else {
                    Applied::Stored
                }
            }
            Change::Removed { key, cas } => {
                let hash = self.hash(key);
                self.version(cas);
                match self.engine.lookup(hash, key, now) {
                    Ok(item) if self.engine.arena.cas(item) >= cas => Applied::Older,
                    Ok(item) => {
                        self.engine.unlink(item, hash);
                        Applied::Removed
                    }
                    Err(_) => Applied::Removed,
                }
            }
            Change::Flush { at, cas } => {
                self.version(cas);
                self.engine.flush_all(at, now, cas, false);
                Applied::Flushed
            }
        }
    }

    /// Background work on the owner core (expiry, index growth, flush
    /// sweep, slab moves), one bounded slice. True if more work is waiting
    /// (call again soon).
    pub fn tick(&mut self, now: u32) -> bool {
        self.engine.tick(now)
    }

    /// `slabs reassign` (1-based class ids; src -1 = any).
    pub fn reassign(&mut self, src: i64, dst: i64) -> Reassign {
        self.engine.reassign(src, dst)
    }

    pub fn set_automove(&mut self, level: u8) {
        self.engine.set_automove(level);
    }

    pub fn automove(&self) -> u8 {
        self.engine.automove()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;
