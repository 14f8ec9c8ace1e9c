//! The storage engine of one shard: the slab arena, the hash index, the
//! timing wheel, CLOCK eviction, delayed flush and slab rebalancing, tied
//! together. `Shard` puts memcached's command semantics on top.
//!
//! Everything here runs under the shard's lock, one table operation at a
//! time; background work (`tick`) runs on the owner core in bounded slices.

use super::hlc::Hlc;
use super::index::Index;
use super::observe::{Evicted, Found, Looked};
use super::slab::{
    large_bytes, ref_access, ref_count, with_ref_count, Arena, Budget, ClassStats, B_FETCHED,
    B_LINKED, B_STALE, B_WIN, NONE,
};
use super::wheel::{Poll, Wheel};
use super::{ShardStats, StoreConfig};
use crate::time::is_expired;

/// Chunks the CLOCK hand may pass over (clearing reference bits) before it
/// evicts whatever it is on: bounds the work of one allocation.
const SWEEP_MAX: usize = 2048;
/// Most work units per background slice.
pub const SLICE: usize = 20_000;
/// A background slice stops after this long (checked every 64 units).
const SLICE_TIME: std::time::Duration = std::time::Duration::from_micros(200);
/// Chunks a page move may walk in one slice (each may be an eviction).
const MOVE_SLICE: usize = 1024;
/// Old index buckets moved per slice.
const MIGRATE_SLICE: usize = 512;

/// Spend one unit of a slice's budget; ends the slice when its time is up.
#[inline]
fn spend(budget: &mut usize, start: &std::time::Instant) {
    *budget -= 1;
    if (*budget).is_multiple_of(64) && start.elapsed() > SLICE_TIME {
        *budget = 0;
    }
}
/// Bytes of pages the automover may start moving per one-second window
/// (at least 8 pages): a 64 MiB shard turned over in ~2 s. At 8 MiB a
/// calcified `-m 64 -t 1` took 8 s to recover (`scripts/hit-ratio
/// --calcify`). A 64 KiB page of 481 idle 100-byte items took ~185 µs to
/// empty (loaded 2-vCPU VM): ~10% of a core while a shard turns over.
const MOVE_BYTES_PER_WINDOW: usize = 32 << 20;
const MOVES_PER_WINDOW: u32 = 8;
/// Windows without evictions before a class may give pages away.
const IDLE_WINDOWS: u32 = 3;

/// Why an indexed item is no longer valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    Expired,
    Flushed,
}

/// Where a page being emptied goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Class(usize),
    Release,
}

#[derive(Debug, Clone, Copy)]
struct Move {
    page: usize,
    to: Dest,
    cursor: u32,
    /// Items in use the move may still rescue without a free chunk, by
    /// evicting a colder item of the class (`move_step`): a quarter of the
    /// class's items outside the page, so that the hand goes at most a
    /// quarter lap and never reaches the newest items (see `placed`; in a
    /// class of 2 pages, rescuing a whole page evicted the other page's
    /// items, the ones stored a moment before among them). 0 for a page
    /// drained inside a request (`drain_now`): it keeps the request's own
    /// item safe only on that page, and must stay short.
    rescue: u32,
}

/// `slabs reassign` outcome, memcached's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reassign {
    Ok,
    Busy,
    BadClass,
    NoSpare,
    Same,
}

pub struct Engine {
    pub arena: Arena,
    index: Index,
    wheel: Wheel,
    pub(super) hlc: Hlc,
    no_evict: bool,
    max_item: usize,
    stats: ShardStats,
    /// Items with a CAS at or below this are flushed (0 = none)...
    flush_cas: u64,
    /// ...and so are items last accessed before this second (items stored
    /// before the flush with a client-chosen CAS above `flush_cas`).
    flush_time: u32,
    /// A delayed flush_all takes effect at this relative time (0 = none)...
    flush_pending: u32,
    /// ...with this version (0: the clock's next value then)...
    flush_pending_version: u64,
    /// ...and also by access time (a local flush_all).
    flush_pending_by_time: bool,
    /// Background sweep freeing flushed items: (page, chunk).
    sweep: Option<(usize, u32)>,
    mover: Option<Move>,
    /// `slabs automove` level (0 off, 1/2 on).
    automove: u8,
    window_start: u32,
    moves_in_window: u32,
    /// Below its share of the budget and evicting (or failing to allocate)
    /// in the last window (as counted in `Budget::hungry`).
    hungry: bool,
    /// An allocation failed in this window for want of memory.
    starved: bool,
    /// Told of lookups and evictions (the server's `watch`), if set.
    pub observer: Option<std::sync::Arc<dyn super::observe::Observer>>,
}

impl Engine {
    pub fn new(
        id: usize,
        budget: std::sync::Arc<Budget>,
        cfg: &StoreConfig,
        hasher: ahash::RandomState,
    ) -> Engine {
        Engine {
            arena: Arena::shared(budget, cfg.chunk_size, cfg.growth_factor),
            index: Index::new(4096, hasher),
            wheel: Wheel::new(0),
            hlc: Hlc::new(id, cfg.host_bit),
            no_evict: cfg.no_evict,
            max_item: cfg.max_item_size,
            stats: ShardStats::default(),
            flush_cas: 0,
            flush_time: 0,
            flush_pending: 0,
            flush_pending_version: 0,
            flush_pending_by_time: false,
            sweep: None,
            mover: None,
            automove: 1,
            window_start: 0,
            moves_in_window: 0,
            hungry: false,
            starved: false,
            observer: None,
        }
    }

    // ---- liveness ----

    /// Apply a delayed flush whose time has come.
    #[inline]
    pub fn check_flush(&mut self, now: u32) {
        if self.flush_pending != 0 && self.flush_pending <= now {
            self.flush_pending = 0;
            let version = match self.flush_pending_version {
                0 => self.hlc.next(),
                v => v,
            };
            self.flush_now(now, version, self.flush_pending_by_time);
        }
    }

    /// Every item with a version up to `version` is gone, and with
    /// `by_time` every item last accessed before `now` too (lazily:
    /// invisible now, memory reclaimed by the background sweep).
    fn flush_now(&mut self, now: u32, version: u64, by_time: bool) {
        self.flush_cas = self.flush_cas.max(version);
        if by_time {
            // max: a later flush on a loop whose clock lags a second must
            // not bring back what an earlier one ended
            self.flush_time = self.flush_time.max(now);
        }
        if self.flush_cas != 0 && self.stats.curr_items > 0 {
            self.sweep = Some((0, 0));
        }
    }

    /// flush_all: at `at` (relative; <= now means now), with `version` (0:
    /// the clock's next value when it takes effect). `by_time`: a local
    /// flush_all, which also ends items last accessed before it (items with
    /// a client-chosen CAS above the version); a replicated one goes by
    /// version only.
    pub fn flush_all(&mut self, at: u32, now: u32, version: u64, by_time: bool) {
        if at <= now {
            self.flush_pending = 0;
            let version = if version != 0 {
                version
            } else {
                self.hlc.next()
            };
            self.flush_now(now, version, by_time);
        } else {
            self.flush_pending = at;
            self.flush_pending_version = version;
            self.flush_pending_by_time = by_time;
        }
    }

    #[inline]
    pub fn dead(&self, item: u32, now: u32) -> Option<Dead> {
        if is_expired(self.arena.exptime(item), now) {
            Some(Dead::Expired)
        } else if self.flush_cas != 0
            && (self.arena.cas(item) <= self.flush_cas
                || self.arena.atime(item, now) < self.flush_time)
        {
            Some(Dead::Flushed)
        } else {
            None
        }
    }

    /// Find a key's item; dead items are unlinked, reported and counted
    /// (`get_expired`, `get_flushed`: memcached counts every lookup that
    /// finds the key's item dead, whatever the command; the unlink makes
    /// each dead item count once).
    #[inline]
    pub fn lookup(&mut self, hash: u64, key: &[u8], now: u32) -> Result<u32, Option<Dead>> {
        self.check_flush(now);
        let item = self.index.find(&self.arena, hash, key);
        let r = if item == NONE {
            Err(None)
        } else if let Some(d) = self.dead(item, now) {
            match d {
                Dead::Expired => self.stats.get_expired += 1,
                Dead::Flushed => self.stats.get_flushed += 1,
            }
            self.unlink(item, hash);
            Err(Some(d))
        } else {
            Ok(item)
        };
        if let Some(o) = &self.observer {
            if o.lookups() {
                self.report_lookup(key, r);
            }
        }
        r
    }

    /// Tell the observer what a lookup found.
    #[cold]
    fn report_lookup(&self, key: &[u8], r: Result<u32, Option<Dead>>) {
        let (found, value_len, flags) = match r {
            Ok(item) => (Found::Hit, self.arena.vlen(item), self.arena.flags(item)),
            Err(None) => (Found::Missing, 0, 0),
            Err(Some(Dead::Expired)) => (Found::Expired, 0, 0),
            Err(Some(Dead::Flushed)) => (Found::Flushed, 0, 0),
        };
        if let Some(o) = &self.observer {
            o.looked(&Looked {
                key,
                found,
                value_len,
                flags,
            });
        }
    }

    /// Tell the observer about an item about to be evicted.
    #[cold]
    fn report_eviction(&self, item: u32, now: u32) {
        if let Some(o) = &self.observer {
            let (key, value) = self.arena.key_value(item);
            o.evicted(&Evicted {
                key,
                value_len: value.len(),
                flags: self.arena.flags(item),
                fetched: self.arena.bits(item) & B_FETCHED != 0,
                exptime: self.arena.exptime(item),
                atime: self.arena.atime(item, now),
                now,
            });
        }
    }

    // ---- linking ----

    #[inline]
    fn class_of(&self, item: u32) -> usize {
        self.arena.page(Arena::page_of(item)).class as usize
    }

    /// Index a freshly written item (its key is not indexed).
    pub fn link(&mut self, item: u32, hash: u64) {
        self.index.insert(&mut self.arena, hash, item);
        self.linked(item);
    }

    /// Bookkeeping for an item that just entered the index: linked bit,
    /// wheel, class and shard counters.
    fn linked(&mut self, item: u32) {
        let bits = self.arena.bits(item) | B_LINKED;
        self.arena.set_bits(item, bits);
        self.placed(item);
        let c = self.class_of(item);
        let e = self.arena.exptime(item);
        if e != 0 {
            self.wheel.insert(&mut self.arena, item, e);
        }
        let size = self.arena.size(item) as u64;
        let st = &mut self.arena.classes[c].st;
        st.items += 1;
        st.mem_requested += size;
        self.stats.curr_items += 1;
        self.stats.total_items += 1;
        self.stats.bytes += size;
    }

    /// An item was put in chunk `item` (stored, or rescued from a page
    /// being moved).
    fn placed(&mut self, item: u32) {
        // CLOCK evicts an unreferenced item when the hand reaches it, so the
        // items just ahead of the hand are the oldest, those just behind it
        // the newest. A new item usually goes just behind the hand (into the
        // chunk its eviction freed) or after all the others (a class still
        // filling). One placed in a chunk freed ahead of the hand (a delete,
        // an overwrite, an expiry) or in a page that joined the class ahead
        // of it would be evicted before most older unreferenced items (it
        // was: scripts/soak's values stored and read back at once missing
        // about once in 10,000 tries). Less than half the class's items
        // ahead of the hand: it gets one reference, so the hand passes it
        // once and it lives at least half a lap.
        let bits = self.arena.bits(item);
        let c = self.class_of(item);
        if ref_count(bits) == 0
            && self.arena.ahead_of_hand(item) < self.arena.classes[c].st.items as usize / 2
        {
            self.arena.set_bits(item, with_ref_count(bits, 1));
        }
    }

    /// Take an item out of the index and wheel and free its chunk.
    pub fn unlink(&mut self, item: u32, hash: u64) {
        let ok = self.index.remove(&mut self.arena, hash, item);
        debug_assert!(ok, "unlink of an unindexed item");
        self.unlink_rest(item);
    }

    fn unlink_rest(&mut self, item: u32) {
        let e = self.arena.exptime(item);
        if e != 0 {
            self.wheel.remove(&mut self.arena, item, e);
        }
        let size = self.arena.size(item) as u64;
        let c = self.class_of(item);
        let st = &mut self.arena.classes[c].st;
        st.items -= 1;
        st.mem_requested -= size;
        self.stats.curr_items -= 1;
        self.stats.bytes -= size;
        self.arena.free(item);
    }

    /// Unlink without knowing the hash.
    fn unlink_any(&mut self, item: u32) {
        let hash = self.index.hash(self.arena.key(item));
        self.unlink(item, hash);
    }

    /// Put a freshly written item in place of the old one (same key).
    pub fn relink(&mut self, old: u32, new: u32, hash: u64) {
        self.index.replace(&mut self.arena, hash, old, new);
        self.linked(new);
        self.unlink_rest(old);
    }

    /// Change an item's expiry, moving it in the wheel.
    pub fn set_exptime(&mut self, item: u32, e: u32) {
        let old = self.arena.exptime(item);
        if old == e {
            return;
        }
        if old != 0 {
            self.wheel.remove(&mut self.arena, item, old);
        }
        self.arena.set_exptime(item, e);
        if e != 0 {
            self.wheel.insert(&mut self.arena, item, e);
        }
    }

    /// Mark an access: CLOCK reference bit, fetched bit, access time.
    #[inline]
    pub fn touch_access(&mut self, item: u32, now: u32) -> bool {
        let bits = self.arena.bits(item);
        self.arena.set_bits(item, ref_access(bits) | B_FETCHED);
        self.set_atime(item, now);
        bits & B_FETCHED != 0
    }

    /// The access time to stamp on an item at `now`: never before the
    /// second of the last flush_all. Each event loop keeps its own copy of
    /// the clock (`time::now`), and one loop's copy may still say T-1 after
    /// another loop flushed at T; an item stored or touched after the flush
    /// (in the order of this shard's lock) must not read as older than it.
    #[inline]
    pub fn stamp(&self, now: u32) -> u32 {
        now.max(self.flush_time)
    }

    /// Set `item`'s access time to `stamp(now)`.
    #[inline]
    pub fn set_atime(&mut self, item: u32, now: u32) {
        let t = self.stamp(now);
        self.arena.set_atime(item, t);
    }

    // ---- the meta protocol's item state (set by the shard) ----

    /// Mark `item` stale (meta invalidation: `md I`, `ms I`, a stale apply).
    pub fn mark_stale(&mut self, item: u32) {
        let bits = self.arena.bits(item);
        self.arena.set_bits(item, bits | B_STALE);
    }

    /// Hand out `item`'s recache win: later fetches see it taken.
    pub fn set_win(&mut self, item: u32) {
        let bits = self.arena.bits(item);
        self.arena.set_bits(item, bits | B_WIN);
    }

    /// Take `item`'s recache win back (a fresh invalidation hands out a new one).
    pub fn clear_win(&mut self, item: u32) {
        let bits = self.arena.bits(item);
        self.arena.set_bits(item, bits & !B_WIN);
    }

    // ---- allocation and eviction ----

    /// Per-class counters of the class an item of `total` bytes goes to.
    pub fn class_stats_for(&mut self, total: usize) -> &mut ClassStats {
        let c = self.arena.class_for(total);
        &mut self.arena.classes[c].st
    }

    pub fn class_stats(&mut self, item: u32) -> &mut ClassStats {
        let c = self.class_of(item);
        &mut self.arena.classes[c].st
    }

    /// A chunk for an item of `total` bytes, evicting if needed (never the
    /// item `protect`). None: out of memory.
    pub fn alloc(&mut self, total: usize, protect: u32, now: u32) -> Option<u32> {
        let claimed = self.arena.claimed;
        let r = self.alloc_inner(total, protect, now);
        if self.arena.claimed != claimed {
            self.refresh_stats();
        }
        r
    }

    fn alloc_inner(&mut self, total: usize, protect: u32, now: u32) -> Option<u32> {
        let c = self.arena.class_for(total);
        if c == self.arena.large {
            return self.alloc_large(total, protect, now);
        }
        let mut tries = 0;
        loop {
            if let Some(item) = self.arena.alloc_fast(c) {
                return Some(item);
            }
            if self.arena.try_claim(c) {
                continue;
            }
            tries += 1;
            let usable = self.arena.classes[c]
                .pages
                .iter()
                .any(|&p| !self.arena.page(p as usize).draining);
            if !self.no_evict && tries < 64 {
                if usable {
                    if self.evict_one(c, protect, now) {
                        continue;
                    }
                } else if self.steal_page(c, protect, now) {
                    continue;
                }
            }
            self.starved |= !self.no_evict;
            self.arena.classes[c].st.outofmemory += 1;
            return None;
        }
    }

    fn alloc_large(&mut self, total: usize, protect: u32, now: u32) -> Option<u32> {
        let need = large_bytes(total);
        let large = self.arena.large;
        if need > self.arena.budget.limit() {
            // Larger than the whole of -m (possible with a big -I): evicting
            // everything would not make room, so refuse at once instead of
            // emptying the shard first. An item larger than this shard's
            // share but within -m fits the shared budget: the loop below
            // frees this shard's memory, and if that is not enough the shard
            // is marked starved so that the others give memory back.
            self.arena.classes[large].st.outofmemory += 1;
            return None;
        }
        let mut guard = 0usize;
        loop {
            if let Some(item) = self.arena.alloc_large(total) {
                return Some(item);
            }
            guard += 1;
            if self.no_evict || guard > 1_000_000 || self.arena.claimed == 0 {
                // Nothing of ours to free (the other shards hold the budget):
                // ask them for memory.
                self.starved |= !self.no_evict;
                self.arena.classes[large].st.outofmemory += 1;
                return None;
            }
            // Empty pages first, then other large items, then slab pages.
            if self.release_free_page() {
                continue;
            }
            if self.evict_one(large, protect, now) {
                continue;
            }
            let donor = (0..large)
                .filter(|&c| !self.arena.classes[c].pages.is_empty())
                .max_by_key(|&c| self.arena.classes[c].pages.len());
            let Some(p) = donor.and_then(|d| self.arena.victim_page(d, protect)) else {
                self.arena.classes[large].st.outofmemory += 1;
                return None;
            };
            self.drain_now(p, Dest::Release, now);
        }
    }

    /// Release one page holding no items, if there is one.
    fn release_free_page(&mut self) -> bool {
        for c in 0..self.arena.large {
            let found = self.arena.classes[c]
                .pages
                .iter()
                .map(|&p| p as usize)
                .find(|&p| {
                    let pg = self.arena.page(p);
                    pg.used == 0 && !pg.draining
                });
            if let Some(p) = found {
                self.arena.release_page(p);
                return true;
            }
        }
        false
    }

    /// Class `c` has no page and the budget is spent: take a page from the
    /// class with the most pages, now (memcached would grant the page over
    /// the limit; we stay within it).
    fn steal_page(&mut self, c: usize, protect: u32, now: u32) -> bool {
        let donor = (0..self.arena.large)
            .filter(|&d| d != c && self.arena.victim_page(d, protect).is_some())
            .max_by_key(|&d| self.arena.classes[d].pages.len());
        let Some(p) = donor.and_then(|d| self.arena.victim_page(d, protect)) else {
            // No slab page to take: free a large item's memory instead (when
            // this shard may claim the bytes it frees).
            let may_claim =
                self.arena.claimed < self.arena.limit || self.arena.budget.hungry() == 0;
            return may_claim && self.evict_one(self.arena.large, protect, now);
        };
        self.drain_now(p, Dest::Class(c), now);
        true
    }

    /// Bytes held by large items.
    fn large_held(&self) -> usize {
        let slab_pages: usize = self.arena.classes[..self.arena.large]
            .iter()
            .map(|c| c.pages.len())
            .sum();
        self.arena
            .claimed
            .saturating_sub(slab_pages * self.arena.page_size)
    }

    /// Empty page `p` right away and send it to `to`.
    fn drain_now(&mut self, p: usize, to: Dest, now: u32) {
        if let Some(m) = self.mover {
            if m.page == p {
                self.mover = None;
            }
        }
        self.arena.begin_drain(p);
        let mut m = Move {
            page: p,
            to,
            cursor: 0,
            rescue: 0,
        };
        while !self.move_step(&mut m, usize::MAX, now) {}
    }

    /// One CLOCK eviction in class `c`. False if nothing can be evicted.
    fn evict_one(&mut self, c: usize, protect: u32, now: u32) -> bool {
        self.evict_one_counted(c, protect, now, &mut 0)
    }

    /// [`Self::evict_one`], adding the chunks the hand passed to `steps`.
    fn evict_one_counted(&mut self, c: usize, protect: u32, now: u32, steps: &mut usize) -> bool {
        let start = *steps;
        let limit = self.arena.classes[c].per_page as usize * self.arena.classes[c].pages.len() * 2
            + SWEEP_MAX;
        while *steps - start < limit {
            let steps_here = *steps - start + 1;
            let Some(item) = self.arena.clock_next(c) else {
                return false;
            };
            *steps += 1;
            let bits = self.arena.bits(item);
            if bits & B_LINKED == 0 || item == protect {
                continue;
            }
            if let Some(d) = self.dead(item, now) {
                self.reclaim(item, d);
                return true;
            }
            let refs = ref_count(bits);
            if refs != 0 && steps_here < SWEEP_MAX {
                self.arena.set_bits(item, with_ref_count(bits, refs - 1));
                continue;
            }
            if self.observer.as_ref().is_some_and(|o| o.evictions()) {
                self.report_eviction(item, now);
            }
            self.evict(item, now);
            return true;
        }
        false
    }

    /// Evict a live item (counted as memcached counts evictions).
    fn evict(&mut self, item: u32, now: u32) {
        let bits = self.arena.bits(item);
        let exp = self.arena.exptime(item);
        let age = now.saturating_sub(self.arena.atime(item, now));
        let c = self.class_of(item);
        let st = &mut self.arena.classes[c].st;
        st.evicted += 1;
        st.evicted_time = age;
        if exp != 0 {
            st.evicted_nonzero += 1;
        }
        if bits & B_FETCHED == 0 {
            st.evicted_unfetched += 1;
            self.stats.evicted_unfetched += 1;
        }
        if ref_count(bits) != 0 {
            st.evicted_active += 1;
            self.stats.evicted_active += 1;
        }
        self.arena.classes[c].win_evictions += 1;
        self.stats.evictions += 1;
        self.unlink_any(item);
    }

    /// Free a dead item found by background work or the CLOCK hand.
    fn reclaim(&mut self, item: u32, why: Dead) {
        if why == Dead::Expired {
            let fetched = self.arena.bits(item) & B_FETCHED != 0;
            let st = self.class_stats(item);
            st.reclaimed += 1;
            if !fetched {
                st.expired_unfetched += 1;
            }
            self.stats.reclaimed += 1;
            if !fetched {
                self.stats.expired_unfetched += 1;
            }
        }
        self.unlink_any(item);
    }

    // ---- page moves ----

    /// Work on a page move; true when the page is done and handed over.
    fn move_step(&mut self, m: &mut Move, mut budget: usize, now: u32) -> bool {
        let p = m.page;
        let c = self.arena.page(p).class as usize;
        // The evictions a move forces (the page's items, and colder items
        // evicted to rescue them) are counted in the stats, but are not the
        // class's own pressure: counted in `win_evictions`, they reset the
        // donor's idle count and could make it the receiver, and pages moved
        // one second in four.
        let own = self.arena.classes[c].win_evictions;
        while budget > 0 && m.cursor < self.arena.page(p).carved {
            let item = Arena::handle_at(p, m.cursor);
            m.cursor += 1;
            budget -= 1;
            if self.arena.bits(item) & B_LINKED == 0 {
                continue;
            }
            if let Some(d) = self.dead(item, now) {
                self.reclaim(item, d);
                continue;
            }
            // Rescue into a free chunk of the same class if there is one.
            // An item in use (referenced, or stored or read within the last
            // second) is rescued even without one: the class's CLOCK evicts a
            // colder item elsewhere (never on this draining page) to make
            // room. Evicting the page's items regardless dropped ~21,000
            // items in use in 25 s of scripts/soak's load (`-m 32`, 450 page
            // moves), some of them stored a moment before.
            // The hand's steps count against the slice's budget.
            let bits = self.arena.bits(item);
            let in_use =
                ref_count(bits) != 0 || now.saturating_sub(self.arena.atime(item, now)) <= 1;
            let mut spare = self.arena.alloc_fast(c);
            if spare.is_none() && in_use && m.rescue > 0 {
                m.rescue -= 1;
                let mut steps = 0;
                if self.evict_one_counted(c, item, now, &mut steps) {
                    spare = self.arena.alloc_fast(c);
                }
                budget = budget.saturating_sub(steps);
            }
            if let Some(nh) = spare {
                self.arena.copy_chunk(item, nh);
                self.placed(nh);
                let hash = self.index.hash(self.arena.key(item));
                self.index.replace(&mut self.arena, hash, item, nh);
                let e = self.arena.exptime(item);
                if e != 0 {
                    self.wheel.remove(&mut self.arena, item, e);
                    self.wheel.insert(&mut self.arena, nh, e);
                }
                self.arena.free(item);
                self.stats.slab_reassign_rescues += 1;
                continue;
            }
            self.stats.slab_reassign_evictions_nomem += 1;
            self.evict(item, now);
        }
        self.arena.classes[c].win_evictions = own;
        if m.cursor < self.arena.page(p).carved {
            return false;
        }
        debug_assert_eq!(self.arena.page(p).used, 0);
        match m.to {
            Dest::Class(to) => self.arena.reassign(p, to),
            Dest::Release => self.arena.release_page(p),
        }
        self.stats.slabs_moved += 1;
        true
    }

    /// `slabs reassign src dst` (1-based class ids as shown; src -1 = any).
    pub fn reassign(&mut self, src: i64, dst: i64) -> Reassign {
        let n = self.arena.large as i64;
        if self.mover.is_some() {
            return Reassign::Busy;
        }
        if dst < 1 || dst > n || src == 0 || src < -1 || src > n {
            return Reassign::BadClass;
        }
        if src == dst {
            return Reassign::Same;
        }
        let to = (dst - 1) as usize;
        let from = if src == -1 {
            let pick = (0..self.arena.large)
                .filter(|&c| c != to && self.arena.classes[c].pages.len() > 1)
                .max_by_key(|&c| self.arena.classes[c].pages.len());
            match pick {
                Some(c) => c,
                None => return Reassign::NoSpare,
            }
        } else {
            (src - 1) as usize
        };
        if self.arena.classes[from].pages.len() < 2 {
            return Reassign::NoSpare;
        }
        let Some(p) = self.arena.victim_page(from, NONE) else {
            return Reassign::NoSpare;
        };
        self.start_move(p, Dest::Class(to));
        Reassign::Ok
    }

    fn start_move(&mut self, p: usize, to: Dest) {
        self.arena.begin_drain(p);
        let pg = self.arena.page(p);
        let others = self.arena.classes[pg.class as usize]
            .st
            .items
            .saturating_sub(pg.used as u64);
        self.mover = Some(Move {
            page: p,
            to,
            cursor: 0,
            rescue: (others / 4).min(u32::MAX as u64) as u32,
        });
    }

    /// Page moves the automover may start per window: 32 MiB worth.
    fn moves_max(&self) -> u32 {
        MOVES_PER_WINDOW.max((MOVE_BYTES_PER_WINDOW / self.arena.page_size) as u32)
    }

    /// A class to take a page from for class `r` (or for the shared pool
    /// when `r` is `None`): one with a page's worth of free chunks (its items
    /// can all be rescued), the most free first; else the class whose pages
    /// earn the fewest hits, if that is under half of `dr` (hits per page of
    /// the receiver) or it has not evicted for a while (memcached's automove
    /// moves pages from idle classes). Classes keep their last page.
    fn donor(&self, r: Option<usize>, dr: f64) -> Option<usize> {
        let large = self.arena.large;
        let density = |cl: &super::slab::Class| cl.last_hits as f64 / cl.pages.len().max(1) as f64;
        let mut best: Option<(usize, u64)> = None;
        for d in 0..large {
            let cl = &self.arena.classes[d];
            if Some(d) == r || cl.pages.len() < 2 || cl.recv_window == self.window_start {
                continue;
            }
            let (free, _) = self.arena.free_chunks(d);
            if free >= cl.per_page as u64 && best.is_none_or(|(_, f)| free > f) {
                best = Some((d, free));
            }
        }
        best.map(|(d, _)| d).or_else(|| {
            (0..large)
                .filter(|&d| {
                    let cl = &self.arena.classes[d];
                    Some(d) != r
                        && cl.pages.len() >= 2
                        && cl.recv_window != self.window_start
                        && (cl.idle_windows >= IDLE_WINDOWS || density(cl) * 2.0 < dr)
                })
                .min_by(|&x, &y| {
                    density(&self.arena.classes[x]).total_cmp(&density(&self.arena.classes[y]))
                })
        })
    }

    /// Start a new rebalancing window when the clock has moved on: roll the
    /// per-class counters and decide whether this shard is hungry.
    fn advance_window(&mut self, now: u32) {
        if now > self.window_start {
            self.window_start = now;
            self.moves_in_window = 0;
            let mut evicted = 0;
            for cl in self.arena.classes.iter_mut() {
                cl.last_evictions = cl.win_evictions;
                evicted += cl.win_evictions;
                cl.win_evictions = 0;
                cl.last_hits = cl.win_hits;
                cl.win_hits = 0;
                cl.idle_windows = if cl.last_evictions == 0 {
                    cl.idle_windows.saturating_add(1)
                } else {
                    0
                };
            }
            let hungry = (evicted > 0 || self.starved)
                && self.arena.claimed + self.arena.page_size <= self.arena.limit;
            self.starved = false;
            self.arena.budget.set_hungry(self.hungry, hungry);
            self.hungry = hungry;
        }
    }

    /// Decide whether to start a page move: debt repayment, memory back to
    /// the shared budget for a hungry shard, or automove between classes.
    /// True when memory was freed at once (a free page released or a large
    /// item evicted) without starting a move: the caller may plan again.
    fn plan_move(&mut self, now: u32) -> bool {
        if self.mover.is_some() {
            return false;
        }
        let large = self.arena.large;
        let budget = self.arena.budget.clone();
        if self.arena.debt > 0 {
            if budget.claimed() <= budget.limit() {
                self.arena.debt = 0;
            } else if self.release_free_page() {
                // Repay pages granted on credit: free pages first.
                return true;
            } else if self.arena.claimed >= self.arena.limit {
                // At or above its share: repay by emptying a page. Below its
                // share a shard keeps its items; the shards above their
                // share give memory back while it is hungry.
                let donor = (0..large)
                    .filter(|&c| self.arena.victim_page(c, NONE).is_some())
                    .max_by_key(|&c| self.arena.classes[c].pages.len());
                if let Some(p) = donor.and_then(|d| self.arena.victim_page(d, NONE)) {
                    self.start_move(p, Dest::Release);
                    return false;
                }
                return self.evict_one(large, NONE, now);
            }
        }
        if budget.shrinking() && self.arena.claimed > self.arena.limit {
            // `cache_memlimit` shrank the budget below what the shards
            // hold: a shard above its new share gives memory back, every
            // slice, without the rebalancing rate limit (memory is over -m).
            // With -M nothing is evicted: only free pages go back.
            if self.no_evict {
                return self.release_free_page();
            }
            return self.give_back(true, now);
        }
        if self.moves_in_window >= self.moves_max() {
            return false;
        }
        if !self.hungry && budget.hungry() > 0 && self.arena.claimed > self.arena.limit {
            // Another shard, below its share, is evicting while this one
            // holds more than its share: give a page's worth back.
            self.moves_in_window += 1;
            return self.give_back(false, now);
        }
        if self.automove == 0 || self.no_evict {
            return false;
        }
        // Hits per page in the last window: what a page earns in a class.
        let density = |cl: &super::slab::Class| cl.last_hits as f64 / cl.pages.len().max(1) as f64;
        // Receiver: an evicting class, the one whose pages earn the most.
        let Some(r) = (0..large)
            .filter(|&c| self.arena.classes[c].last_evictions > 0)
            .max_by(|&x, &y| {
                let (cx, cy) = (&self.arena.classes[x], &self.arena.classes[y]);
                density(cx)
                    .total_cmp(&density(cy))
                    .then(cx.last_evictions.cmp(&cy.last_evictions))
            })
        else {
            return false;
        };
        let dr = density(&self.arena.classes[r]);
        if let Some(p) = self
            .donor(Some(r), dr)
            .and_then(|d| self.arena.victim_page(d, NONE))
        {
            self.moves_in_window += 1;
            // A page's worth of the receiver's evictions is being served.
            let per = self.arena.classes[r].per_page as u64;
            let cl = &mut self.arena.classes[r];
            cl.last_evictions = cl.last_evictions.saturating_sub(per);
            cl.recv_window = self.window_start;
            self.start_move(p, Dest::Class(r));
            return false;
        }
        // No slab class can give a page: free a large item's memory for the
        // receiver if the large class is idle or earns under half as much
        // (large items start at half a page, so they may hold most bytes).
        let lc = &self.arena.classes[large];
        if !lc.pages.is_empty() && (lc.idle_windows >= IDLE_WINDOWS || density(lc) * 2.0 < dr) {
            // Not the large class's own pressure: keep its eviction count.
            let before = self.arena.classes[large].win_evictions;
            if self.evict_one(large, NONE, now) {
                self.arena.classes[large].win_evictions = before;
                self.moves_in_window += 1;
                let per = self.arena.classes[r].per_page as u64;
                let cl = &mut self.arena.classes[r];
                cl.last_evictions = cl.last_evictions.saturating_sub(per);
                return true;
            }
        }
        false
    }

    /// Give a page's worth of memory back to the shared budget: a free
    /// page, else a large item when large items hold more than the donor
    /// class (large items start at half a page), else the donor class's
    /// emptiest page (a move that rescues or evicts its items); `over`
    /// (the budget is over its limit): if no class qualifies as a donor,
    /// the class with the most pages gives. True when memory was freed at
    /// once.
    fn give_back(&mut self, over: bool, now: u32) -> bool {
        let large = self.arena.large;
        if self.release_free_page() {
            self.stats.pages_returned += 1;
            return true;
        }
        let donor = self.donor(None, f64::INFINITY).or_else(|| {
            over.then(|| {
                (0..large)
                    .filter(|&c| self.arena.victim_page(c, NONE).is_some())
                    .max_by_key(|&c| self.arena.classes[c].pages.len())
            })?
        });
        let slab_bytes = donor.map_or(0, |d| {
            self.arena.classes[d].pages.len() * self.arena.page_size
        });
        if self.large_held() > slab_bytes && self.evict_one(large, NONE, now) {
            self.stats.pages_returned += 1;
            return true;
        }
        if let Some(p) = donor.and_then(|d| self.arena.victim_page(d, NONE)) {
            self.stats.pages_returned += 1;
            self.start_move(p, Dest::Release);
        }
        false
    }

    // ---- background work ----

    /// One slice of background work. Returns true if more is waiting.
    pub fn tick(&mut self, now: u32) -> bool {
        self.check_flush(now);
        // `cache_memlimit` may have changed the shared limit.
        self.arena.limit = self.arena.budget.share();
        let start = std::time::Instant::now();
        let mut budget = SLICE;
        // Expiry.
        while budget > 0 {
            match self.wheel.poll(&mut self.arena, now) {
                Poll::Idle => break,
                Poll::Worked => spend(&mut budget, &start),
                Poll::Expired(item) => {
                    spend(&mut budget, &start);
                    if self.arena.bits(item) & B_LINKED == 0 {
                        continue;
                    }
                    let e = self.arena.exptime(item);
                    if is_expired(e, now) {
                        self.reclaim(item, Dead::Expired);
                    } else if e != 0 {
                        // Not due (cannot happen: touch reschedules).
                        self.wheel.insert(&mut self.arena, item, e);
                    }
                }
            }
        }
        // Index growth.
        if budget > 0 && self.index.migrate(&mut self.arena, MIGRATE_SLICE) {
            spend(&mut budget, &start);
        }
        // Flushed items.
        if let Some((mut p, mut i)) = self.sweep {
            while budget > 0 && p < self.arena.page_count() {
                let carved = self.arena.page(p).carved;
                if i >= carved {
                    p += 1;
                    i = 0;
                    spend(&mut budget, &start);
                    continue;
                }
                let item = Arena::handle_at(p, i);
                i += 1;
                spend(&mut budget, &start);
                if self.arena.bits(item) & B_LINKED != 0
                    && self.dead(item, now) == Some(Dead::Flushed)
                {
                    self.unlink_any(item);
                }
            }
            self.sweep = if p < self.arena.page_count() {
                Some((p, i))
            } else {
                None
            };
        }
        // Rebalancing: page moves, one after another while the slice lasts
        // (small pages move in one step each).
        // Memory freed without a move (a free page released, a large item
        // evicted) continues the loop too, within the slice's budget.
        self.advance_window(now);
        let mut more_moves = false;
        while budget > 0 {
            if self.mover.is_none() && self.plan_move(now) && self.mover.is_none() {
                spend(&mut budget, &start);
                if start.elapsed() > SLICE_TIME {
                    more_moves = true;
                    break;
                }
                more_moves = budget == 0;
                continue;
            }
            let Some(mut m) = self.mover.take() else {
                break;
            };
            let step = budget.min(MOVE_SLICE);
            let done = self.move_step(&mut m, step, now);
            budget -= step.min(m.cursor as usize).max(1);
            if !done {
                self.mover = Some(m);
                break;
            }
            if start.elapsed() > SLICE_TIME {
                // There may be more to move: come back soon.
                more_moves = true;
                break;
            }
            more_moves = budget == 0;
        }
        self.refresh_stats();
        self.wheel.busy(now)
            || self.index.is_growing()
            || self.sweep.is_some()
            || self.mover.is_some()
            || more_moves
    }

    /// A get hit on `item` (per-class counters and rebalancing input).
    #[inline]
    pub fn note_hit(&mut self, item: u32) {
        let c = self.class_of(item);
        let cl = &mut self.arena.classes[c];
        cl.st.get_hits += 1;
        cl.win_hits += 1;
    }

    /// The hash of `key` (the index's hasher).
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.index.hash(key)
    }

    /// The indexed item under `key`, dead or alive, or `NONE`; reads only
    /// (`lookup` is the command path's find).
    pub fn find(&self, hash: u64, key: &[u8]) -> u32 {
        self.index.find(&self.arena, hash, key)
    }

    /// For walking the index in slices (`Index::walk_heads`).
    pub fn walk_heads(&self, b: usize) -> Option<[u32; 2]> {
        self.index.walk_heads(b)
    }

    /// The shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// The item size limit (`-I`), as `item::item_fits` takes it.
    pub fn max_item(&self) -> usize {
        self.max_item
    }

    /// `slabs automove` level (0 off, 1/2 on).
    pub fn automove(&self) -> u8 {
        self.automove
    }

    pub fn set_automove(&mut self, level: u8) {
        self.automove = level;
    }

    /// A version from the shard's clock: a given version (a client's meta
    /// `E`, a partner's change) is used as is and observed by the clock, so
    /// later local versions are larger; 0 takes the clock's next value.
    pub fn version(&mut self, given: u64) -> u64 {
        if given != 0 {
            self.hlc.observe(given);
            given
        } else {
            self.hlc.next()
        }
    }

    /// Zero the counters `stats reset` clears (gauges such as curr_items and
    /// bytes, and the per-class item counts, stay).
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
        s.slabs_moved = 0;
        s.slab_reassign_rescues = 0;
        s.slab_reassign_evictions_nomem = 0;
        s.pages_borrowed = 0;
        s.pages_returned = 0;
        self.arena.borrowed = 0;
        for c in self.arena.classes.iter_mut() {
            c.st = ClassStats {
                items: c.st.items,
                mem_requested: c.st.mem_requested,
                ..ClassStats::default()
            };
        }
    }

    /// Refresh the memory figures in the counters.
    pub fn refresh_stats(&mut self) {
        self.stats.mem_claimed = self.arena.claimed as u64;
        self.stats.pages_borrowed = self.arena.borrowed;
        self.stats.index_bytes = self.index.bytes() as u64;
        self.stats.wheel_bytes = (self.wheel.bytes() + self.arena.meta_bytes()) as u64;
        self.stats.hash_power_level = self.index.buckets().trailing_zeros() as u64;
        self.stats.hash_is_expanding = self.index.is_growing() as u64;
    }
}

#[cfg(test)]
mod tests {
    //! The engine's behaviour (eviction, expiry, flush, rebalancing, CAS
    //! versions), driven through the shard's public API.
    use super::*;
    use crate::store::slab::item_size;
    use crate::store::slab::PAGE_SIZE;
    use crate::store::{
        ArithRequest, ArithResult, ClassInfo, DeleteRequest, DeleteResult, Shard, StoreMode,
        StoreRequest, StoreResult,
    };

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

    /// Whether `k` is indexed, without marking an access (a `get` would
    /// give it a CLOCK reference).
    fn present(s: &Shard, k: &str) -> bool {
        s.engine.find(s.engine.hash(k.as_bytes()), k.as_bytes()) != NONE
    }

    /// The class index of `k`'s item.
    fn class_of_key(s: &Shard, k: &str) -> usize {
        let h = s.engine.find(s.engine.hash(k.as_bytes()), k.as_bytes());
        s.engine.arena.page(Arena::page_of(h)).class as usize
    }

    /// Fill one class (100-byte values) to its first eviction, then move the
    /// hand `extra` chunks on. Returns the next key number (keys `k0..`
    /// were stored in CLOCK order, so `k{evictions}` is under the hand).
    fn full_class(s: &mut Shard, extra: u32) -> u32 {
        let v = [b'v'; 100];
        let mut i = 0u32;
        while s.stats().evictions == 0 {
            set(s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        for _ in 0..extra {
            set(s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        i
    }

    /// A new item in a chunk freed just ahead of the CLOCK hand (a delete,
    /// an overwrite, an expiry) is not among the next victims while older
    /// unreferenced items fill its class: it was (scripts/soak's
    /// `fresh_evicted`: a value stored and read back at once was missing
    /// about once in 10,000 tries).
    #[test]
    fn an_item_stored_in_a_chunk_freed_ahead_of_the_hand_is_not_the_next_victim() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let v = [b'v'; 100];
        let mut i = full_class(&mut s, 5000);
        let cap = s.stats().curr_items as u32;
        // the next 100 victims: delete them, then store 100 new items, which
        // take their chunks (the class has no other free chunk)
        let e = s.stats().evictions as u32;
        for k in e..e + 100 {
            assert!(present(&s, &format!("k{k}")), "k{k} is ahead of the hand");
            s.delete(&DeleteRequest::new(format!("k{k}").as_bytes()), 10);
        }
        for j in 0..100 {
            set(&mut s, &format!("fresh{j}"), &v, 0, 10);
        }
        assert_eq!(s.stats().evictions as u32, e, "the freed chunks were used");
        // a quarter of the class's capacity of other new items
        for _ in 0..cap / 4 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        let lost = (0..100)
            .filter(|j| !present(&s, &format!("fresh{j}")))
            .count();
        assert_eq!(lost, 0, "new items evicted before older unreferenced ones");
        // the victims were the old items the hand reached next
        let old_gone = (e + 100..e + 100 + cap / 4)
            .filter(|k| !present(&s, &format!("k{k}")))
            .count() as u32;
        assert!(old_gone >= cap / 4 - 100, "{old_gone} of {}", cap / 4);
    }

    /// A page that joins a class just ahead of the hand (automove, `slabs
    /// reassign`) is filled with new items at once; they are not the next
    /// victims either.
    #[test]
    fn items_in_a_page_joining_a_class_ahead_of_the_hand_are_not_the_next_victims() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        s.set_automove(0);
        let big = [b'B'; 1000];
        for b in 0..2000 {
            set(&mut s, &format!("big{b}"), &big, 0, 10);
        }
        let v = [b'v'; 100];
        let mut i = full_class(&mut s, 0);
        let c = class_of_key(&s, &format!("k{}", i - 1));
        let donor = class_of_key(&s, "big1999");
        assert_ne!(c, donor);
        // walk the hand onto the class's last page
        loop {
            let hand = s.engine.arena.hand(c).unwrap();
            if Arena::page_of(hand) as u32 == *s.engine.arena.classes[c].pages.last().unwrap() {
                break;
            }
            set(&mut s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        let cap = s.stats().curr_items;
        assert_eq!(s.reassign(donor as i64 + 1, c as i64 + 1), Reassign::Ok);
        tick_all(&mut s, 10);
        assert_eq!(s.stats().slabs_moved, 1);
        let per = s.engine.arena.classes[c].per_page;
        let evictions = s.stats().evictions;
        for j in 0..per {
            set(&mut s, &format!("fresh{j}"), &v, 0, 10);
        }
        assert_eq!(s.stats().evictions, evictions, "the new page took them");
        for _ in 0..cap / 8 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        let lost = (0..per)
            .filter(|j| !present(&s, &format!("fresh{j}")))
            .count();
        assert_eq!(lost, 0, "new items evicted before older unreferenced ones");
    }

    /// Sets, overwrites, deletes and reads of a hot set in one full class,
    /// from a few seeds: every new item outlives the next eighth of the
    /// class's capacity of sets (unless deleted or overwritten).
    #[test]
    fn every_new_item_outlives_an_eighth_of_its_class() {
        for seed in [1u64, 7, 42] {
            let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut rnd = move |n: u32| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as u32
            };
            let v = [b'v'; 100];
            let mut next = full_class(&mut s, 0);
            let window = s.stats().curr_items as u32 / 8;
            // (key, sets done when it must still be there)
            let mut due = std::collections::VecDeque::new();
            let mut sets = 0u32;
            let mut gone = std::collections::HashSet::new();
            for _ in 0..200_000 {
                match rnd(20) {
                    0..=1 => {
                        // delete a recent key (a chunk somewhere in the class)
                        let k = format!("k{}", next - 1 - rnd(next.min(20_000)));
                        s.delete(&DeleteRequest::new(k.as_bytes()), 10);
                        gone.insert(k);
                    }
                    2..=3 => {
                        let k = format!("k{}", next - 1 - rnd(next.min(20_000)));
                        set(&mut s, &k, &v, 0, 10);
                        gone.remove(&k);
                        sets += 1;
                        due.push_back((k, sets + window));
                    }
                    4..=6 => {
                        has(
                            &mut s,
                            &format!("k{}", next - 1 - rnd(next.min(20_000))),
                            10,
                        );
                    }
                    _ => {
                        let k = format!("k{next}");
                        next += 1;
                        set(&mut s, &k, &v, 0, 10);
                        sets += 1;
                        due.push_back((k, sets + window));
                    }
                }
                while due.front().is_some_and(|d| d.1 <= sets) {
                    let (k, _) = due.pop_front().unwrap();
                    assert!(
                        present(&s, &k) || gone.contains(&k),
                        "seed {seed}: {k} evicted within {window} sets of being stored"
                    );
                }
            }
        }
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
        s.engine.refresh_stats();
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
            s.engine.refresh_stats();
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
        // 90 s later nothing on the page is in use: its items are evicted
        tick_all(&mut s, 100);
        let after: Vec<ClassInfo> = s.class_info().collect();
        let a = after.iter().find(|c| c.id == src.id).unwrap();
        let b = after.iter().find(|c| c.id == dst).unwrap();
        assert_eq!(a.total_pages, src.total_pages - 1);
        assert_eq!(b.total_pages, 1);
        assert_eq!(s.stats().slabs_moved, 1);
        // every item is still either reachable or was counted as evicted
        let alive = (0..30_000)
            .filter(|i| has(&mut s, &format!("k{i}"), 100))
            .count() as u64;
        assert_eq!(alive, s.stats().curr_items);
        assert!(s.stats().slab_reassign_evictions_nomem > 0);
        assert_eq!(
            alive + s.stats().slab_reassign_evictions_nomem,
            src.st.items
        );
        // also in `evictions`, unlike memcached (docs/COMPATIBILITY.md)
        assert_eq!(s.stats().evictions, s.stats().slab_reassign_evictions_nomem);
    }

    /// An append that needs a large item drains a page inside the request
    /// (`drain_now`); that drain must not rescue by evicting, or the CLOCK
    /// hand may evict the very item being appended to (it was: the append
    /// answered stored and the key was gone, and debug builds panicked in
    /// the index).
    #[test]
    fn a_page_drained_inside_an_append_keeps_the_appended_item() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let v = [b'v'; 100];
        let mut i = 0u32;
        while s.stats().evictions == 0 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
            i += 1;
        }
        // k1 is under the hand now (k0 was its first victim)
        let tail = vec![b't'; 600_000];
        let r = s.store(&StoreRequest::new(StoreMode::Append, b"k1", &tail), 10);
        assert!(matches!(r, StoreResult::Stored { .. }), "{r:?}");
        let got = s.get(b"k1", 10, None).map(|it| it.value.len());
        assert_eq!(got, Some(100 + 600_000));
    }

    /// Items in use (stored this second) on a page being moved are rescued:
    /// the class evicts colder items elsewhere instead, so none of the
    /// page's items is lost and the one set just now stays readable.
    #[test]
    fn a_page_move_rescues_items_in_use() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        let v = [b'v'; 100];
        for i in 0..30_000 {
            set(&mut s, &format!("k{i}"), &v, 0, 10);
        }
        let src = s.class_info().find(|c| c.total_pages > 1).unwrap();
        assert_eq!(s.reassign(src.id as i64, src.id as i64 + 10), Reassign::Ok);
        tick_all(&mut s, 10);
        assert_eq!(s.stats().slabs_moved, 1);
        assert_eq!(s.stats().slab_reassign_evictions_nomem, 0);
        assert!(s.stats().slab_reassign_rescues > 0);
        assert!(has(&mut s, "k29999", 10));
        let alive = (0..30_000)
            .filter(|i| has(&mut s, &format!("k{i}"), 10))
            .count() as u64;
        assert_eq!(alive, s.stats().curr_items);
        let evicted = src.st.items - alive;
        assert!(evicted > 0 && evicted <= s.stats().evictions, "{evicted}");
    }

    /// A page moved out of a class of two pages: rescuing its items in use
    /// by evicting from the other page must not reach the items stored a
    /// moment before (it did: the rescues took the whole other page).
    #[test]
    fn a_page_move_out_of_a_small_class_keeps_its_newest_items() {
        let mut s = Shard::new(0, 1, &cfg(8 * PAGE_SIZE));
        s.set_automove(0);
        let b = [b'B'; 3000];
        // class B gets two pages first, then small items take the rest
        let mut nb = 0u32;
        while s.class_info().all(|c| c.total_pages < 2) {
            set(&mut s, &format!("b{nb}"), &b, 0, 10);
            nb += 1;
        }
        let c = class_of_key(&s, "b0");
        let per = s.engine.arena.classes[c].per_page;
        while s.engine.arena.classes[c].st.items < 2 * per as u64 {
            set(&mut s, &format!("b{nb}"), &b, 0, 10);
            nb += 1;
        }
        let nk = full_class(&mut s, 0);
        let small = class_of_key(&s, &format!("k{}", nk - 1));
        assert_eq!(s.engine.arena.classes[c].pages.len(), 2);
        // B evicts within its two pages; stop with the hand on the second
        // page (the first is the one a move takes: both are full)
        let second = s.engine.arena.classes[c].pages[1] as usize;
        loop {
            set(&mut s, &format!("b{nb}"), &b, 0, 10);
            nb += 1;
            let hand = s.engine.arena.hand(c).unwrap();
            if nb > 4 * per && Arena::page_of(hand) == second && hand != Arena::handle_at(second, 0)
            {
                break;
            }
        }
        let newest = format!("b{}", nb - 1);
        let h = s
            .engine
            .find(s.engine.hash(newest.as_bytes()), newest.as_bytes());
        assert_eq!(Arena::page_of(h), second, "stored behind the hand");
        assert_eq!(s.reassign(c as i64 + 1, small as i64 + 1), Reassign::Ok);
        tick_all(&mut s, 10);
        assert_eq!(s.stats().slabs_moved, 1);
        assert!(
            present(&s, &newest),
            "the newest item was evicted by the move"
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
        s.engine.refresh_stats();
        assert!(
            s.stats().mem_claimed as usize <= 8 * PAGE_SIZE,
            "debt repaid"
        );
    }

    /// Zipf-like gets with set on miss of 3000-byte values over 30,000 keys
    /// (~90 MB, more than the shard), one simulated second per round of
    /// 30,000 requests, the ticker run as the server runs it (every ms
    /// while pages move); the hit ratio of each round.
    fn large_rounds(s: &mut Shard, mut now: u32, rounds: usize) -> Vec<f64> {
        let large = [b'L'; 3000];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            now += 1;
            let mut hits = 0;
            for i in 0..30_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                let k = format!("L{}", (30_000.0 * u * u * u) as usize);
                if has(s, &k, now) {
                    hits += 1;
                } else {
                    set(s, &k, &large, 0, now);
                }
                if i % 16 == 0 {
                    s.tick(now);
                }
            }
            ratios.push(hits as f64 / 30_000.0);
            tick_all(s, now);
        }
        ratios
    }

    /// A 64 MiB shard full of small items, then large items only: within
    /// four seconds its hit ratio is within 10% of a fresh shard's. At 8 MiB
    /// of page moves per second the whole shard took 8 s (0.86 of a fresh
    /// server's hit ratio over `scripts/hit-ratio --calcify`'s 2M requests).
    #[test]
    fn automove_recovers_a_full_shard_in_seconds() {
        let fresh = large_rounds(&mut Shard::new(0, 1, &cfg(64 << 20)), 10, 4);
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        let small = [b's'; 100];
        for i in 0..600_000 {
            set(&mut s, &format!("s{i}"), &small, 0, 10);
        }
        tick_all(&mut s, 10);
        let calcified = large_rounds(&mut s, 10, 4);
        assert!(
            calcified[3] > 0.9 * fresh[3],
            "hit ratio per second, fresh {fresh:?}, calcified {calcified:?}"
        );
    }

    /// The evictions a page move forces in its donor class are not that
    /// class's own pressure: a shard full of idle small items, then a scan
    /// storing new 3000-byte values (never read: the receiving class earns
    /// no hits, so only the small class's idleness makes it a donor). Once
    /// the small class has been idle for 3 windows, pages flow at the cap
    /// (512 of 64 KiB a second) until it is down to its last page. When the
    /// forced evictions counted as the small class's own, they reset its
    /// idle count (and made it the receiver): 512 pages one second in four.
    #[test]
    fn automove_keeps_donating_when_moves_force_the_evictions() {
        let mut s = Shard::new(0, 1, &cfg(64 << 20));
        let small = [b's'; 100];
        for i in 0..600_000 {
            set(&mut s, &format!("s{i}"), &small, 0, 10);
        }
        tick_all(&mut s, 10);
        let total = s.engine.arena.claimed / s.engine.arena.page_size;
        let lc = s.engine.arena.class_for(item_size(7, 3000, 0));
        let large = [b'L'; 3000];
        let mut moved = Vec::new();
        let mut share = Vec::new();
        let mut n = 0;
        for now in 11..17 {
            let before = s.stats().slabs_moved;
            for i in 0..30_000 {
                set(&mut s, &format!("L{n:06}"), &large, 0, now);
                n += 1;
                if i % 16 == 0 {
                    s.tick(now);
                }
            }
            tick_all(&mut s, now);
            moved.push(s.stats().slabs_moved - before);
            share.push(s.engine.arena.classes[lc].pages.len() as f64 / total as f64);
        }
        eprintln!("pages moved per second {moved:?}, large class's share of pages {share:?}");
        // The small class evicted during the fill (before the window of
        // second 10) and not after: a donor from second 13, and the large
        // class holds nearly all of the shard a second later (fixed: 512
        // then 510 pages in seconds 13 and 14; before, 512 in second 15
        // only, a share of 0.001 at second 14 and 0.50 at 16).
        assert!(
            share[3] > 0.9,
            "pages moved per second {moved:?}, large class's share of pages {share:?}"
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
