//! One shard: the items of the keys that hash to it, with memcached's
//! command semantics on top of the storage engine (`engine`: slab arena,
//! hash index, CLOCK eviction, timing-wheel expiry, slab rebalancing).

use super::engine::{Dead, Engine, Reassign};
use super::slab::{item_size, ClassStats, NONE};
use super::{ArithResult, DeleteResult, ItemRef, ShardStats, StoreConfig, StoreResult, SEEDS};
use crate::protocol::StoreMode;

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
}

impl Shard {
    pub fn new(id: usize, shards: usize, cfg: &StoreConfig) -> Shard {
        let hasher = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
        Shard {
            e: Engine::new(id, shards, cfg, hasher),
        }
    }

    pub fn stats(&self) -> &ShardStats {
        &self.e.stats
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
        _hash: u64,
        key: &'a [u8],
        now: u32,
        touch: Option<u32>,
    ) -> Option<ItemRef<'a>> {
        let hash = self.hash(key);
        let h = match self.e.lookup(hash, key, now) {
            Ok(h) => h,
            Err(d) => {
                match d {
                    Some(Dead::Expired) => self.e.stats.get_expired += 1,
                    Some(Dead::Flushed) => self.e.stats.get_flushed += 1,
                    None => {}
                }
                return None;
            }
        };
        let fetched = self.e.touch_access(h, now);
        match touch {
            Some(exp) => {
                self.e.set_exptime(h, exp);
                self.e.class_stats(h).touch_hits += 1;
            }
            None => self.e.note_hit(h),
        }
        let a = &self.e.a;
        let (key, value) = a.key_value(h);
        Some(ItemRef {
            key,
            value,
            flags: a.flags(h),
            cas: a.cas(h),
            exptime: a.exptime(h),
            atime: now,
            fetched,
        })
    }

    /// Allocate and write a new item (not linked). None: out of memory.
    #[allow(clippy::too_many_arguments)]
    fn write_new(
        &mut self,
        key: &[u8],
        vlen: usize,
        flags: u32,
        exptime: u32,
        protect: u32,
        now: u32,
    ) -> Option<u32> {
        let h = self
            .e
            .alloc(item_size(key.len(), vlen, flags), protect, now)?;
        self.e.a.init_item(h, key, vlen, flags, exptime, now);
        let cas = self.e.hlc.next();
        self.e.a.set_cas(h, cas);
        Some(h)
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
        let hash = self.hash(key);
        self.e
            .class_stats_for(item_size(key.len(), data.len(), flags))
            .cmd_set += 1;
        if data.len() > self.e.max_item {
            return StoreResult::TooLarge;
        }
        let existing = self.e.lookup(hash, key, now).ok();
        let compare = cas != 0 || mode == StoreMode::Cas;
        if compare && mode != StoreMode::Add {
            let Some(h) = existing else {
                return StoreResult::NotFound;
            };
            if self.e.a.cas(h) != cas {
                self.e.class_stats(h).cas_badval += 1;
                return StoreResult::Exists;
            }
        }
        let r = match (mode, existing) {
            (StoreMode::Add, Some(h)) => {
                self.e.a.set_atime(h, now);
                return StoreResult::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return StoreResult::NotStored;
            }
            (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                let old_len = self.e.a.vlen(old);
                let total = old_len + data.len();
                if total > self.e.max_item {
                    return StoreResult::TooLarge;
                }
                let (f, e) = (self.e.a.flags(old), self.e.a.exptime(old));
                let Some(h) = self.write_new(key, total, f, e, old, now) else {
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
                h
            }
            _ => {
                let Some(h) = self.write_new(key, data.len(), flags, exptime, NONE, now) else {
                    if mode == StoreMode::Set {
                        // memcached: a failed set must not leave stale data.
                        if let Some(old) = existing {
                            if self.e.ix.find(&self.e.a, hash, key) == old {
                                self.e.unlink(old, hash);
                            }
                        }
                    }
                    return StoreResult::OutOfMemory;
                };
                self.e.a.value_mut(h).copy_from_slice(data);
                self.install(h, hash);
                h
            }
        };
        if compare {
            self.e.class_stats(r).cas_hits += 1;
        }
        StoreResult::Stored {
            cas: self.e.a.cas(r),
        }
    }

    /// delete, with an optional CAS compare.
    pub fn delete(&mut self, _hash: u64, key: &[u8], cas: u64, now: u32) -> DeleteResult {
        let hash = self.hash(key);
        let Ok(h) = self.e.lookup(hash, key, now) else {
            return DeleteResult::NotFound;
        };
        if cas != 0 && self.e.a.cas(h) != cas {
            return DeleteResult::Exists;
        }
        self.e.class_stats(h).delete_hits += 1;
        self.e.unlink(h, hash);
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
        let hash = self.hash(key);
        let mut digits = [0u8; 20];
        let Ok(h) = self.e.lookup(hash, key, now) else {
            return match initial {
                None => ArithResult::NotFound,
                Some((v, exp)) => {
                    let d = fmt_u64(v, &mut digits);
                    match self.write_new(key, d.len(), 0, exp, NONE, now) {
                        Some(h) => {
                            self.e.a.value_mut(h).copy_from_slice(d);
                            let cas = self.install(h, hash);
                            ArithResult::Value { value: v, cas }
                        }
                        None => ArithResult::OutOfMemory,
                    }
                }
            };
        };
        if cas != 0 && self.e.a.cas(h) != cas {
            return ArithResult::Exists;
        }
        let Some(cur) = parse_counter(self.e.a.value(h)) else {
            return ArithResult::NonNumeric;
        };
        let value = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        {
            let st = self.e.class_stats(h);
            if incr {
                st.incr_hits += 1;
            } else {
                st.decr_hits += 1;
            }
        }
        let d = fmt_u64(value, &mut digits);
        self.e.a.set_atime(h, now);
        if d.len() <= self.e.a.vlen(h) {
            // memcached rewrites in place, padding with spaces.
            let n = d.len();
            let v = self.e.a.value_mut(h);
            v[..n].copy_from_slice(d);
            v[n..].fill(b' ');
            let cas = self.e.hlc.next();
            self.e.a.set_cas(h, cas);
            return ArithResult::Value { value, cas };
        }
        let (flags, exp) = (self.e.a.flags(h), self.e.a.exptime(h));
        let Some(nh) = self.write_new(key, d.len(), flags, exp, h, now) else {
            return ArithResult::OutOfMemory;
        };
        self.e.a.value_mut(nh).copy_from_slice(d);
        self.e.relink(h, nh, hash);
        ArithResult::Value {
            value,
            cas: self.e.a.cas(nh),
        }
    }

    /// touch: new expiry; returns the item's CAS when it exists.
    pub fn touch(&mut self, hash: u64, key: &[u8], exptime: u32, now: u32) -> Option<u64> {
        self.get(hash, key, now, Some(exptime)).map(|it| it.cas)
    }

    /// flush_all: items stored before `at` die once `at` is reached.
    pub fn flush_all(&mut self, at: u32, now: u32) {
        self.e.flush_all(at, now);
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

/// Decimal digits of `v` into `buf`, without allocating.
fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
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
