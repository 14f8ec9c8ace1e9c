//! One shard: the items of the keys that hash to it.
//!
//! Foundation version: a hash map of boxed items with exact byte accounting
//! against the shard's share of `-m`. The slab allocator, CLOCK eviction and
//! timing-wheel expiry replace the inside of this type behind the same
//! methods.

use super::{ArithResult, DeleteResult, ItemRef, ShardStats, StoreConfig, StoreResult};
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
    ) -> StoreResult {
        let size = ITEM_OVERHEAD + key.len() + value.len();
        if self.live(key, now) {
            self.remove(key);
        }
        if !self.reserve(size) {
            return StoreResult::OutOfMemory;
        }
        let cas = self.new_cas();
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
        })
    }

    /// set/add/replace/append/prepend/cas.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        _hash: u64,
        key: &[u8],
        mode: StoreMode,
        flags: u32,
        exptime: u32,
        data: &[u8],
        cas: u64,
        now: u32,
    ) -> StoreResult {
        let exists = self.live(key, now);
        let compare = cas != 0 || mode == StoreMode::Cas;
        if compare && mode != StoreMode::Add {
            let Some(it) = self.map.get(key).filter(|_| exists) else {
                return StoreResult::NotFound;
            };
            if it.cas != cas {
                return StoreResult::Exists;
            }
        }
        match mode {
            StoreMode::Add if exists => {
                if let Some(it) = self.map.get_mut(key) {
                    it.atime = now;
                }
                StoreResult::NotStored
            }
            StoreMode::Replace | StoreMode::Append | StoreMode::Prepend if !exists => {
                StoreResult::NotStored
            }
            StoreMode::Append | StoreMode::Prepend => {
                let it = &self.map[key];
                let total = it.value.len() + data.len();
                if ITEM_OVERHEAD + key.len() + total > self.max_item + ITEM_OVERHEAD + key.len() {
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
                self.insert(key, v.into_boxed_slice(), f, e, now)
            }
            _ => self.insert(key, data.into(), flags, exptime, now),
        }
    }

    /// delete, with an optional CAS compare.
    pub fn delete(&mut self, _hash: u64, key: &[u8], cas: u64, now: u32) -> DeleteResult {
        if !self.live(key, now) {
            return DeleteResult::NotFound;
        }
        if cas != 0 && self.map[key].cas != cas {
            return DeleteResult::Exists;
        }
        self.remove(key);
        DeleteResult::Deleted
    }

    /// incr/decr. `initial` = (value, exptime) creates a missing item (binary).
    #[allow(clippy::too_many_arguments)]
    pub fn arith(
        &mut self,
        _hash: u64,
        key: &[u8],
        incr: bool,
        delta: u64,
        initial: Option<(u64, u32)>,
        cas: u64,
        now: u32,
    ) -> ArithResult {
        if !self.live(key, now) {
            return match initial {
                None => ArithResult::NotFound,
                Some((v, exp)) => {
                    let mut buf = Vec::with_capacity(20);
                    crate::protocol::put_u64(&mut buf, v);
                    match self.insert(key, buf.into_boxed_slice(), 0, exp, now) {
                        StoreResult::Stored { cas } => ArithResult::Value { value: v, cas },
                        _ => ArithResult::OutOfMemory,
                    }
                }
            };
        }
        let cas_new = self.new_cas();
        let it = self.map.get_mut(key).expect("live item");
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
        match self.insert(key, digits.into_boxed_slice(), flags, exp, now) {
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
