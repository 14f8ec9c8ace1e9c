//! One shard: the items of the keys that hash to it.
//!
//! Foundation version: a hash map of boxed items with exact byte accounting
//! against the shard's share of `-m`. The slab allocator, CLOCK eviction and
//! timing-wheel expiry replace the inside of this type behind the same
//! methods.

use super::{
    ArithResult, DeleteOpts, DeleteResult, ItemRef, MetaGet, MetaGetOutcome, ShardStats,
    StoreConfig, StoreOpts, StoreResult,
};
use crate::protocol::StoreMode;
use crate::time::is_expired;
use std::collections::HashMap;

/// memcached's per-item overhead, so `bytes` reads as memcached's.
use crate::protocol::ITEM_OVERHEAD;

struct Item {
    value: Box<[u8]>,
    flags: u32,
    cas: u64,
    exptime: u32,
    atime: u32,
    /// Relative time of the last store (for delayed flush_all).
    time: u32,
    fetched: bool,
    /// Meta: marked stale (`md I`, `ms I`).
    stale: bool,
    /// Meta: a recache win was handed out.
    win: bool,
}

impl Item {
    fn size(&self, key_len: usize) -> usize {
        ITEM_OVERHEAD + key_len + self.value.len()
    }
}

/// One shard of the key space.
pub struct Shard {
    map: HashMap<Box<[u8]>, Item, ahash::RandomState>,
    limit: usize,
    max_item: usize,
    no_evict: bool,
    next_cas: u64,
    cas_step: u64,
    /// Pending delayed flush: relative time at which all items stored at or
    /// before it die (0 = none).
    flush_at: u32,
    stats: ShardStats,
}

impl Shard {
    pub fn new(id: usize, shards: usize, cfg: &StoreConfig) -> Shard {
        Shard {
            map: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            limit: cfg.mem_limit / shards.max(1),
            max_item: cfg.max_item_size,
            no_evict: cfg.no_evict,
            next_cas: id as u64 + 1,
            cas_step: shards.max(1) as u64,
            flush_at: 0,
            stats: ShardStats::default(),
        }
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// Zero the counters `stats reset` clears (gauges such as curr_items and
    /// bytes stay).
    pub fn reset_stats(&mut self) {
        let s = &mut self.stats;
        s.total_items = 0;
        s.evictions = 0;
        s.evicted_unfetched = 0;
        s.evicted_active = 0;
        s.expired_unfetched = 0;
        s.reclaimed = 0;
        s.get_expired = 0;
        s.get_flushed = 0;
    }

    fn new_cas(&mut self) -> u64 {
        let c = self.next_cas;
        self.next_cas += self.cas_step;
        c
    }

    /// Apply a due delayed flush.
    fn flush_due(&mut self, now: u32) {
        if self.flush_at != 0 && self.flush_at <= now {
            let at = self.flush_at;
            self.flush_at = 0;
            let mut freed = 0u64;
            let mut n = 0u64;
            self.map.retain(|k, it| {
                if it.time <= at {
                    freed += it.size(k.len()) as u64;
                    n += 1;
                    false
                } else {
                    true
                }
            });
            self.stats.bytes -= freed;
            self.stats.curr_items -= n;
        }
    }

    /// Look up a live item; drops it if expired.
    fn live(&mut self, key: &[u8], now: u32) -> bool {
        self.flush_due(now);
        let dead = match self.map.get(key) {
            None => return false,
            Some(it) => is_expired(it.exptime, now),
        };
        if dead {
            self.remove(key);
            return false;
        }
        true
    }

    fn remove(&mut self, key: &[u8]) -> Option<Item> {
        let (k, it) = self.map.remove_entry(key)?;
        self.stats.bytes -= it.size(k.len()) as u64;
        self.stats.curr_items -= 1;
        Some(it)
    }

    /// Make room for `need` bytes. False if it cannot be done.
    fn reserve(&mut self, need: usize) -> bool {
        while self.stats.bytes as usize + need > self.limit {
            if self.no_evict {
                return false;
            }
            let victim = match self.map.keys().next() {
                Some(k) => k.clone(),
                None => return false,
            };
            if let Some(it) = self.remove(&victim) {
                self.stats.evictions += 1;
                if !it.fetched {
                    self.stats.evicted_unfetched += 1;
                }
            }
        }
        true
    }

    fn insert(
        &mut self,
        key: &[u8],
        value: Box<[u8]>,
        flags: u32,
        exptime: u32,
        now: u32,
        cas: u64,
    ) -> StoreResult {
        let size = ITEM_OVERHEAD + key.len() + value.len();
        if self.live(key, now) {
            self.remove(key);
        }
        if !self.reserve(size) {
            return StoreResult::OutOfMemory;
        }
        let cas = if cas != 0 { cas } else { self.new_cas() };
        self.map.insert(
            key.into(),
            Item {
                value,
                flags,
                cas,
                exptime,
                atime: now,
                time: now,
                fetched: false,
                stale: false,
                win: false,
            },
        );
        self.stats.bytes += size as u64;
        self.stats.curr_items += 1;
        self.stats.total_items += 1;
        StoreResult::Stored { cas }
    }

    /// Fetch a live item, marking it accessed; `touch` sets a new expiry.
    pub fn get<'a>(
        &'a mut self,
        _hash: u64,
        key: &'a [u8],
        now: u32,
        touch: Option<u32>,
    ) -> Option<ItemRef<'a>> {
        if self
            .map
            .get(key)
            .is_some_and(|it| is_expired(it.exptime, now))
        {
            self.stats.get_expired += 1;
        }
        if !self.live(key, now) {
            return None;
        }
        let it = self.map.get_mut(key)?;
        let fetched = it.fetched;
        it.fetched = true;
        it.atime = now;
        if let Some(exp) = touch {
            it.exptime = exp;
        }
        Some(ItemRef {
            key,
            value: &it.value,
            flags: it.flags,
            cas: it.cas,
            exptime: it.exptime,
            atime: it.atime,
            fetched,
            stale: it.stale,
            win: it.win,
        })
    }

    /// set/add/replace/append/prepend/cas.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        hash: u64,
        key: &[u8],
        mode: StoreMode,
        flags: u32,
        exptime: u32,
        data: &[u8],
        cas: u64,
        now: u32,
    ) -> StoreResult {
        let opts = StoreOpts::default();
        self.store_with(hash, key, mode, flags, exptime, data, cas, now, &opts)
    }

    /// A store with memcached's full CAS rules plus the meta extras in
    /// `opts`. A non-zero `cas` turns set/replace into a CAS store (missing
    /// item: NotFound), is ignored by add, and is compared by append/prepend
    /// (missing item: NotStored, as memcached). A successful store makes a
    /// fresh item (not stale, no win handed out) unless `opts.invalidate`
    /// stored it stale.
    #[allow(clippy::too_many_arguments)]
    pub fn store_with(
        &mut self,
        _hash: u64,
        key: &[u8],
        mode: StoreMode,
        flags: u32,
        exptime: u32,
        data: &[u8],
        cas: u64,
        now: u32,
        opts: &StoreOpts,
    ) -> StoreResult {
        let exists = self.live(key, now);
        let cas_mode = mode == StoreMode::Cas
            || (cas != 0 && matches!(mode, StoreMode::Set | StoreMode::Replace));
        if !exists {
            return match mode {
                _ if cas_mode => StoreResult::NotFound,
                StoreMode::Set | StoreMode::Add => {
                    self.insert(key, data.into(), flags, exptime, now, opts.new_cas)
                }
                StoreMode::Append | StoreMode::Prepend => match opts.vivify {
                    Some(exp) => self.insert(key, data.into(), flags, exp, now, opts.new_cas),
                    None => StoreResult::NotStored,
                },
                _ => StoreResult::NotStored,
            };
        }
        let it = &self.map[key];
        if cas_mode {
            if it.cas == cas {
                // match: store below
            } else if opts.invalidate && cas < it.cas {
                // Stale store: new value, old expiry, marked stale, win kept.
                let (exp, win) = (it.exptime, it.win);
                let r = self.insert(key, data.into(), flags, exp, now, opts.new_cas);
                if let Some(n) = self.map.get_mut(key) {
                    n.stale = true;
                    n.win = win;
                }
                return r;
            } else {
                return StoreResult::Exists;
            }
        }
        match mode {
            StoreMode::Add => {
                if let Some(it) = self.map.get_mut(key) {
                    it.atime = now;
                }
                StoreResult::NotStored
            }
            StoreMode::Append | StoreMode::Prepend => {
                if cas != 0 && it.cas != cas {
                    return StoreResult::Exists;
                }
                let total = it.value.len() + data.len();
                if total > self.max_item {
                    return StoreResult::TooLarge;
                }
                let mut v = Vec::with_capacity(total);
                if mode == StoreMode::Append {
                    v.extend_from_slice(&it.value);
                    v.extend_from_slice(data);
                } else {
                    v.extend_from_slice(data);
                    v.extend_from_slice(&it.value);
                }
                let (f, e) = (it.flags, it.exptime);
                self.insert(key, v.into_boxed_slice(), f, e, now, opts.new_cas)
            }
            _ => self.insert(key, data.into(), flags, exptime, now, opts.new_cas),
        }
    }

    /// delete, with an optional CAS compare.
    pub fn delete(&mut self, hash: u64, key: &[u8], cas: u64, now: u32) -> DeleteResult {
        let opts = DeleteOpts {
            cas,
            ..DeleteOpts::default()
        };
        self.delete_with(hash, key, now, &opts)
    }

    /// Delete with the meta extras (see [`DeleteOpts`]): compare CAS, then
    /// remove, or empty the value (`x`), and/or mark stale (`I`).
    pub fn delete_with(
        &mut self,
        _hash: u64,
        key: &[u8],
        now: u32,
        opts: &DeleteOpts,
    ) -> DeleteResult {
        if !self.live(key, now) {
            return DeleteResult::NotFound;
        }
        let old_cas = self.map[key].cas;
        if opts.cas != 0 && old_cas != opts.cas {
            return DeleteResult::Exists;
        }
        if opts.remove_value {
            let cas = if opts.new_cas != 0 {
                opts.new_cas
            } else {
                old_cas
            };
            if let StoreResult::OutOfMemory =
                self.insert(key, Box::new([]), opts.flags, opts.exptime, now, cas)
            {
                return DeleteResult::NotFound;
            }
        }
        if opts.invalidate {
            let cas = if opts.new_cas != 0 {
                opts.new_cas
            } else {
                self.new_cas()
            };
            if let Some(it) = self.map.get_mut(key) {
                if let Some(exp) = opts.touch {
                    it.exptime = exp;
                }
                it.stale = true;
                it.win = false;
                it.cas = cas;
            }
        } else if !opts.remove_value {
            self.remove(key);
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
        _hash: u64,
        key: &'a [u8],
        now: u32,
        op: &MetaGet,
    ) -> Option<(ItemRef<'a>, MetaGetOutcome)> {
        if self
            .map
            .get(key)
            .is_some_and(|it| is_expired(it.exptime, now))
        {
            self.stats.get_expired += 1;
        }
        let mut out = MetaGetOutcome::default();
        if !self.live(key, now) {
            let exp = op.vivify?;
            if !matches!(
                self.insert(key, Box::new([]), 0, exp, now, op.new_cas),
                StoreResult::Stored { .. }
            ) {
                return None;
            }
            out.created = true;
        }
        let it = self.map.get_mut(key)?;
        let before = (it.fetched, it.atime, it.exptime, it.stale, it.win);
        let before = if out.created {
            (false, now, 0, false, false)
        } else {
            before
        };
        if out.created {
            out.won = true;
        } else {
            let old_exp = it.exptime;
            if let Some(exp) = op.touch {
                it.exptime = exp;
            }
            let cmp_exp = if op.recache_after_touch {
                it.exptime
            } else {
                old_exp
            };
            let recache = op.recache.is_some_and(|r| cmp_exp != 0 && cmp_exp < r);
            out.won = !it.win && (it.stale || recache);
        }
        if out.won {
            it.win = true;
        }
        if op.bump {
            it.fetched = true;
            it.atime = now;
        }
        Some((
            ItemRef {
                key,
                value: &it.value,
                flags: it.flags,
                cas: it.cas,
                exptime: before.2,
                atime: before.1,
                fetched: before.0,
                stale: before.3,
                win: before.4,
            },
            out,
        ))
    }

    /// incr/decr. `initial` = (value, exptime) creates a missing item (binary).
    #[allow(clippy::too_many_arguments)]
    pub fn arith(
        &mut self,
        hash: u64,
        key: &[u8],
        incr: bool,
        delta: u64,
        initial: Option<(u64, u32)>,
        cas: u64,
        now: u32,
    ) -> ArithResult {
        self.arith_with(hash, key, incr, delta, initial, cas, now, 0)
    }

    /// incr/decr whose result (or created item) gets CAS `new_cas` instead
    /// of the next from the counter when non-zero (meta `ma E`).
    #[allow(clippy::too_many_arguments)]
    pub fn arith_with(
        &mut self,
        _hash: u64,
        key: &[u8],
        incr: bool,
        delta: u64,
        initial: Option<(u64, u32)>,
        cas: u64,
        now: u32,
        new_cas: u64,
    ) -> ArithResult {
        if !self.live(key, now) {
            return match initial {
                None => ArithResult::NotFound,
                Some((v, exp)) => {
                    let mut buf = Vec::with_capacity(20);
                    crate::protocol::put_u64(&mut buf, v);
                    match self.insert(key, buf.into_boxed_slice(), 0, exp, now, new_cas) {
                        StoreResult::Stored { cas } => ArithResult::Value { value: v, cas },
                        _ => ArithResult::OutOfMemory,
                    }
                }
            };
        }
        let cas_new = if new_cas != 0 {
            new_cas
        } else {
            self.new_cas()
        };
        let it = self.map.get_mut(key).expect("live item");
        // memcached: an empty value is non-numeric before any CAS compare.
        if it.value.is_empty() {
            return ArithResult::NonNumeric;
        }
        if cas != 0 && it.cas != cas {
            return ArithResult::Exists;
        }
        let Some(cur) = parse_counter(&it.value) else {
            return ArithResult::NonNumeric;
        };
        let value = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        let mut digits = Vec::with_capacity(20);
        crate::protocol::put_u64(&mut digits, value);
        it.atime = now;
        if digits.len() <= it.value.len() {
            // memcached rewrites in place, padding with spaces.
            let n = digits.len();
            it.value[..n].copy_from_slice(&digits);
            it.value[n..].fill(b' ');
            it.cas = cas_new;
            return ArithResult::Value {
                value,
                cas: cas_new,
            };
        }
        let (flags, exp) = (it.flags, it.exptime);
        match self.insert(key, digits.into_boxed_slice(), flags, exp, now, cas_new) {
            StoreResult::Stored { cas } => ArithResult::Value { value, cas },
            _ => ArithResult::OutOfMemory,
        }
    }

    /// touch: new expiry; returns the item's CAS when it exists.
    pub fn touch(&mut self, hash: u64, key: &[u8], exptime: u32, now: u32) -> Option<u64> {
        self.get(hash, key, now, Some(exptime)).map(|it| it.cas)
    }

    /// flush_all: items stored at or before `at` die once `at` is reached.
    pub fn flush_all(&mut self, at: u32, now: u32) {
        self.flush_at = at.max(1);
        self.flush_due(now);
    }

    /// Background work on the owner core: reclaim expired items.
    pub fn tick(&mut self, now: u32) {
        self.flush_due(now);
        let mut freed = 0u64;
        let mut n = 0u64;
        let mut unfetched = 0u64;
        self.map.retain(|k, it| {
            if is_expired(it.exptime, now) {
                freed += it.size(k.len()) as u64;
                n += 1;
                if !it.fetched {
                    unfetched += 1;
                }
                false
            } else {
                true
            }
        });
        self.stats.bytes -= freed;
        self.stats.curr_items -= n;
        self.stats.reclaimed += n;
        self.stats.expired_unfetched += unfetched;
    }
}

/// memcached's safe_strtoull on an item value: optional leading spaces,
/// digits, then only trailing whitespace.
fn parse_counter(v: &[u8]) -> Option<u64> {
    let s = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    let e = v[s..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(v.len(), |p| s + p);
    if e == s || !v[e..].iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    crate::protocol::parse_u64(&v[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeleteOpts, MetaGet, StoreOpts};

    fn shard() -> Shard {
        Shard::new(0, 1, &StoreConfig::default())
    }

    #[test]
    fn set_get_delete() {
        let mut s = shard();
        assert!(matches!(
            s.store(0, b"k", StoreMode::Set, 5, 0, b"v", 0, 10),
            StoreResult::Stored { .. }
        ));
        let it = s.get(0, b"k", 10, None).unwrap();
        assert_eq!((it.value, it.flags), (&b"v"[..], 5));
        assert_eq!(s.delete(0, b"k", 0, 10), DeleteResult::Deleted);
        assert!(s.get(0, b"k", 10, None).is_none());
        assert_eq!(s.stats().bytes, 0);
    }

    #[test]
    fn arith_pads_like_memcached() {
        let mut s = shard();
        s.store(0, b"n", StoreMode::Set, 0, 0, b"100", 0, 10);
        assert!(matches!(
            s.arith(0, b"n", false, 1, None, 0, 10),
            ArithResult::Value { value: 99, .. }
        ));
        assert_eq!(s.get(0, b"n", 10, None).unwrap().value, b"99 ");
        assert!(matches!(
            s.arith(0, b"n", true, 901, None, 0, 10),
            ArithResult::Value { value: 1000, .. }
        ));
        assert_eq!(s.get(0, b"n", 10, None).unwrap().value, b"1000");
        s.store(0, b"x", StoreMode::Set, 0, 0, b"abc", 0, 10);
        assert_eq!(
            s.arith(0, b"x", true, 1, None, 0, 10),
            ArithResult::NonNumeric
        );
    }

    /// The meta stale/win state machine, at the store level (the contract
    /// any shard implementation must keep).
    #[test]
    fn meta_win_and_stale_state_machine() {
        let mut s = shard();
        let peek = MetaGet::default();
        let bump = MetaGet {
            bump: true,
            ..MetaGet::default()
        };
        // vivify on miss: created, won, empty, expiry set; then Z for others
        let viv = MetaGet {
            bump: true,
            vivify: Some(40),
            new_cas: 77,
            ..MetaGet::default()
        };
        let (it, oc) = s.meta_get(0, b"k", 10, &viv).unwrap();
        assert_eq!(
            (oc.created, oc.won, it.win, it.value, it.cas),
            (true, true, false, &b""[..], 77)
        );
        let (it, oc) = s.meta_get(0, b"k", 10, &viv).unwrap();
        assert_eq!(
            (oc.created, oc.won, it.win, it.exptime, it.fetched),
            (false, false, true, 40, true)
        );
        // a store makes a fresh item: no win, not stale
        s.store(0, b"k", StoreMode::Set, 0, 30, b"v1", 0, 10);
        let (it, _) = s.meta_get(0, b"k", 10, &peek).unwrap();
        assert!(!it.win && !it.stale && !it.fetched);
        // recache: win below the threshold, once
        let r = MetaGet {
            recache: Some(50),
            ..bump
        };
        assert!(s.meta_get(0, b"k", 10, &r).unwrap().1.won);
        assert!(!s.meta_get(0, b"k", 10, &r).unwrap().1.won);
        // touch before recache moves the expiry the check sees
        s.store(0, b"k", StoreMode::Set, 0, 30, b"v1", 0, 10);
        let t = MetaGet {
            touch: Some(100),
            recache_after_touch: true,
            ..r
        };
        let (it, oc) = s.meta_get(0, b"k", 10, &t).unwrap();
        assert_eq!((it.exptime, oc.won), (30, false));
        // invalidate: stale, new CAS, win cleared; the first reader wins
        let cas0 = s.meta_get(0, b"k", 10, &peek).unwrap().0.cas;
        let inv = DeleteOpts {
            invalidate: true,
            touch: Some(60),
            ..DeleteOpts::default()
        };
        assert_eq!(s.delete_with(0, b"k", 10, &inv), DeleteResult::Deleted);
        let (it, oc) = s.meta_get(0, b"k", 10, &bump).unwrap();
        assert!(it.stale && !it.win && oc.won && it.cas > cas0 && it.exptime == 60);
        let (it, oc) = s.meta_get(0, b"k", 10, &bump).unwrap();
        assert!(it.stale && it.win && !oc.won);
        // a CAS store with an older CAS: Exists, unless invalidate (stale store)
        let old = StoreOpts::default();
        let stale = StoreOpts {
            invalidate: true,
            ..StoreOpts::default()
        };
        assert_eq!(
            s.store_with(0, b"k", StoreMode::Set, 0, 0, b"late", cas0, 10, &old),
            StoreResult::Exists
        );
        assert!(matches!(
            s.store_with(0, b"k", StoreMode::Set, 0, 0, b"late", cas0, 10, &stale),
            StoreResult::Stored { .. }
        ));
        let (it, _) = s.meta_get(0, b"k", 10, &peek).unwrap();
        assert!(it.stale && it.win && it.value == b"late" && it.exptime == 60);
        // x: empty value, kept item; E sets the CAS
        let x = DeleteOpts {
            remove_value: true,
            new_cas: 9,
            ..DeleteOpts::default()
        };
        assert_eq!(s.delete_with(0, b"k", 10, &x), DeleteResult::Deleted);
        let (it, _) = s.meta_get(0, b"k", 10, &peek).unwrap();
        assert_eq!(
            (it.value, it.cas, it.stale, it.win),
            (&b""[..], 9, false, false)
        );
        // append with N vivifies; append with a CAS on a miss is NotStored
        let av = StoreOpts {
            vivify: Some(70),
            ..StoreOpts::default()
        };
        assert!(matches!(
            s.store_with(0, b"a", StoreMode::Append, 3, 0, b"ab", 0, 10, &av),
            StoreResult::Stored { .. }
        ));
        assert_eq!(
            s.store_with(0, b"b", StoreMode::Append, 0, 0, b"ab", 5, 10, &old),
            StoreResult::NotStored
        );
        // arith with an explicit CAS
        s.store(0, b"n", StoreMode::Set, 0, 0, b"5", 0, 10);
        assert_eq!(
            s.arith_with(0, b"n", true, 1, None, 0, 10, 1234),
            ArithResult::Value {
                value: 6,
                cas: 1234
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
            s.store(0, k.as_bytes(), StoreMode::Set, 0, 0, &[b'x'; 100], 0, 10);
            assert!(s.stats().bytes <= 100_000);
        }
        assert!(s.stats().evictions > 0);
    }
}
