//! The cache: the key space split into shards, one per core.
//!
//! A key's shard is chosen by a fixed-seed hash, so routing is the same on
//! every run and every host. Each shard sits behind its own mutex that is held
//! only for one table operation (never across I/O), so a request for a key
//! owned by another core is served on the core that read it, without waking
//! the owner (see docs/ARCHITECTURE.md for the measurement behind this).
//! The owner core drives the shard's background work (expiry, rebalancing).

mod classinfo;
mod engine;
mod hlc;
mod index;
mod journal;
pub mod observe;
mod shard;
mod slab;
mod walk;
mod wheel;

pub use classinfo::ClassInfo;
pub use engine::Reassign;
#[cfg(test)]
pub(crate) use journal::tests as journal_tests;
pub use journal::{Applied, Change, Journal};
pub use shard::Shard;
pub use slab::{page_size_for, Budget, ClassStats, HDR as ITEM_HEADER_BYTES};
pub use walk::WalkItem;

use parking_lot::{Mutex, MutexGuard};

/// Fixed hash seeds: routing must be stable across restarts and hosts.
pub(crate) const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Storage settings shared by all shards.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Total memory for items across all shards (`-m`), bytes.
    pub mem_limit: usize,
    /// Largest item (`-I`), bytes.
    pub max_item_size: usize,
    /// `-M`: refuse stores instead of evicting.
    pub no_evict: bool,
    /// `-n`: smallest chunk data size.
    pub chunk_size: usize,
    /// `-f`: slab growth factor.
    pub growth_factor: f64,
    /// Number of shards (= worker threads).
    pub shards: usize,
    /// The host bit of every CAS value (`hlc.rs`): the two partners of a
    /// replicated pair must differ (set by replication's configuration).
    pub host_bit: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 << 20,
            max_item_size: 1 << 20,
            no_evict: false,
            chunk_size: 48,
            growth_factor: 1.25,
            shards: 1,
            host_bit: false,
        }
    }
}

/// A shard gets at least this much of `-m`: fewer shards than event loops
/// when `-m` is small (any loop may lock any shard). With 64 KiB pages a
/// 32 MiB share is 512 pages for the ~60 size classes a mixed-size workload
/// keeps busy; at 8–16 MiB (128–256 pages) the part-filled last page of each
/// class already costs hit ratio (docs/ARCHITECTURE.md, storage).
pub const MIN_SHARD_MEM: usize = 32 << 20;

/// Shards for `-m mem_limit` and `loops` event loops: one per loop, but no
/// share under `MIN_SHARD_MEM`.
pub fn shards_for(mem_limit: usize, loops: usize) -> usize {
    loops.clamp(1, (mem_limit / MIN_SHARD_MEM).max(1))
}

impl StoreConfig {
    /// The store the server builds for `-m mem_limit` and `loops` event
    /// loops (`shards_for` picks the shard count).
    pub fn for_server(
        mem_limit: usize,
        loops: usize,
        max_item_size: usize,
        no_evict: bool,
        chunk_size: usize,
        growth_factor: f64,
    ) -> StoreConfig {
        StoreConfig {
            mem_limit,
            max_item_size,
            no_evict,
            chunk_size,
            growth_factor,
            shards: shards_for(mem_limit, loops),
            host_bit: false,
        }
    }
}

/// Which store command's semantics (memcached's `NREAD_*`): the protocols'
/// verbs (text `set`..`cas`, binary opcodes, meta `ms` modes) map onto it in
/// the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap: store only over an item whose CAS matches.
    Cas,
}

/// A read-only view of a stored item, valid while the shard lock is held.
#[derive(Debug, Clone, Copy)]
pub struct ItemRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Relative expiry time (0 = never).
    pub exptime: u32,
    /// Relative time of the last access.
    pub atime: u32,
    /// Was it fetched before this access?
    pub fetched: bool,
    /// Meta protocol: the item is stale (marked by `md I` or stored by `ms I`
    /// with an older CAS); readers see `X`.
    pub stale: bool,
    /// Meta protocol: a recache win (`W`) was already handed out for this
    /// item (before this access); readers see `Z`.
    pub win: bool,
}

/// Options of [`Shard::meta_get`] (meta `mg`): everything a read may change
/// on the item, applied atomically under the shard lock. `Default` is a pure
/// peek (no bump, no change).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaGet {
    /// Mark the item fetched and set its last access time (false for `u`).
    pub bump: bool,
    /// `T`: new expiry (relative time) for an existing item.
    pub touch: Option<u32>,
    /// `R`: the caller wins the recache if the item's expiry is non-zero and
    /// below this (relative time), and no win was handed out yet.
    pub recache: Option<u32>,
    /// Compare `recache` against the expiry set by `touch` (T came before R
    /// on the command line); otherwise against the expiry before the request.
    pub recache_after_touch: bool,
    /// `N`: on a miss, create an empty item (flags 0) with this expiry
    /// (relative time) and hand its win to the caller.
    pub vivify: Option<u32>,
    /// `E`: CAS of a vivified item; 0 = next from the shard's counter.
    pub new_cas: u64,
    /// The caller is a reader that may take the recache win (`mg`). Other
    /// lookups (`me`, `ma`, the `ms` size re-read) leave the win untouched,
    /// as memcached's do, so a probe never hides a stale item's `W`.
    pub claim_win: bool,
}

/// What [`Shard::meta_get`] did besides returning the item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaGetOutcome {
    /// The caller won the recache (`W`): by vivifying, by `R`, or by being
    /// the first reader of a stale item. The item now has its win bit set.
    pub won: bool,
    /// The item was created by `vivify`.
    pub created: bool,
}

/// A store command: set/add/replace/append/prepend/cas, meta `ms`,
/// mcrouter's `lease-set`. [`StoreRequest::new`] gives the classic command
/// (no compare, no meta extras).
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    /// Relative expiry (0 = never).
    pub exptime: u32,
    pub data: &'a [u8],
    /// Compare against the item's CAS; 0 = no compare. Non-zero turns
    /// set/replace into a CAS store (missing item: NotFound), is ignored by
    /// add, and is compared by append/prepend (missing item: NotStored, as
    /// memcached).
    pub cas: u64,
    /// `E`: the stored item's CAS; 0 = the next from the shard's clock.
    pub new_cas: u64,
    /// `I`: in a CAS store, a compare CAS *older* than the item's still
    /// stores, but the new item is stale and keeps the old item's expiry
    /// and win bit.
    pub invalidate: bool,
    /// `N` with append/prepend: on a miss, store the data as a new item with
    /// this expiry (relative time) and the given flags.
    pub vivify: Option<u32>,
}

impl<'a> StoreRequest<'a> {
    /// The classic command: flags 0, no expiry, no compare, no meta extras.
    pub fn new(mode: StoreMode, key: &'a [u8], data: &'a [u8]) -> Self {
        StoreRequest {
            mode,
            key,
            flags: 0,
            exptime: 0,
            data,
            cas: 0,
            new_cas: 0,
            invalidate: false,
            vivify: None,
        }
    }
}

/// A delete: `delete`, binary Delete, meta `md`. [`DeleteRequest::new`] is
/// a plain delete.
#[derive(Debug, Clone, Copy)]
pub struct DeleteRequest<'a> {
    pub key: &'a [u8],
    /// Compare-and-delete: 0 = none.
    pub cas: u64,
    /// `I`: instead of removing, mark the item stale, give it a new CAS and
    /// clear its win bit (so the next reader wins the recache).
    pub invalidate: bool,
    /// `T` with `I`: new expiry (relative time).
    pub touch: Option<u32>,
    /// `E`: the new CAS (with `I`), or the CAS of the emptied item (with
    /// `x`); 0 = next from the clock (`I`) / keep the old CAS (`x`).
    pub new_cas: u64,
    /// `x`: replace the item with an empty value (client flags `flags`,
    /// expiry `exptime`; fresh stale/win/fetched bits) instead of removing
    /// it.
    pub remove_value: bool,
    pub flags: u32,
    pub exptime: u32,
}

impl<'a> DeleteRequest<'a> {
    pub fn new(key: &'a [u8]) -> Self {
        DeleteRequest {
            key,
            cas: 0,
            invalidate: false,
            touch: None,
            new_cas: 0,
            remove_value: false,
            flags: 0,
            exptime: 0,
        }
    }
}

/// incr/decr: text, binary (which may create the item), meta `ma`.
/// [`ArithRequest::new`] is the text command.
#[derive(Debug, Clone, Copy)]
pub struct ArithRequest<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// (value, relative expiry): create a missing item (binary; meta `N`).
    pub initial: Option<(u64, u32)>,
    /// Compare against the item's CAS; 0 = none.
    pub cas: u64,
    /// `E`: the result's CAS; 0 = next from the clock.
    pub new_cas: u64,
    /// Meta `T`: new expiry (relative) of an existing item, applied with
    /// the update (a created item takes `initial`'s expiry).
    pub touch: Option<u32>,
}

impl<'a> ArithRequest<'a> {
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> Self {
        ArithRequest {
            key,
            incr,
            delta,
            initial: None,
            cas: 0,
            new_cas: 0,
            touch: None,
        }
    }
}

/// Result of a store command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    /// Stored: the item's CAS and its value's length (the combined length
    /// after append/prepend).
    Stored {
        cas: u64,
        len: usize,
    },
    NotStored,
    /// CAS mismatch.
    Exists,
    /// CAS on a missing key.
    NotFound,
    TooLarge,
    OutOfMemory,
}

/// Result of incr/decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithResult {
    /// The new value and CAS; whether the item was `created` (from
    /// `initial`); the item's expiry (relative, 0 = never) as it was before
    /// the request's `touch`.
    Value {
        value: u64,
        cas: u64,
        created: bool,
        exptime: u32,
    },
    NotFound,
    NonNumeric,
    /// CAS mismatch.
    Exists,
    OutOfMemory,
}

/// Result of delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted,
    NotFound,
    Exists,
}

/// Item-level counters of one shard (command counters live in `stats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// memcached's `bytes`: sum of item sizes (header + key + value).
    pub bytes: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub expired_unfetched: u64,
    pub reclaimed: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    /// Memory claimed by the shard for items (pages), bytes.
    pub mem_claimed: u64,
    /// Memory of the hash index, bytes.
    pub index_bytes: u64,
    /// Memory of the timing wheel and page tables, bytes.
    pub wheel_bytes: u64,
    /// log2 of the index's bucket count.
    pub hash_power_level: u64,
    /// 1 while the index is growing.
    pub hash_is_expanding: u64,
    /// Pages moved between classes (or released).
    pub slabs_moved: u64,
    /// Items moved out of a page being reassigned into free chunks.
    pub slab_reassign_rescues: u64,
    /// Items evicted from a page being reassigned (no free chunk to move to).
    pub slab_reassign_evictions_nomem: u64,
    /// Pages claimed from the shared budget while at or above the shard's
    /// fair share of `-m` (memory other shards were not using).
    pub pages_borrowed: u64,
    /// Pages given back to the shared pool because another shard, below its
    /// share, was evicting.
    pub pages_returned: u64,
}

/// All shards.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    config: StoreConfig,
    budget: std::sync::Arc<Budget>,
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let n = config.shards.max(1);
        let budget = std::sync::Arc::new(Budget::new(config.mem_limit, n));
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::with_budget(i, budget.clone(), &config)))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Store {
            shards,
            hasher: ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
            config,
            budget,
        }
    }

    /// The memory budget the shards share.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The key's hash (stable across runs and hosts).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Which shard owns a hash.
    #[inline]
    pub fn shard_of(&self, hash: u64) -> usize {
        // High bits pick the shard; the shard's table uses the low bits.
        ((hash >> 32) as usize * self.shards.len()) >> 32
    }

    /// Lock the shard owning `key`. Hold the guard for one table operation
    /// only, never across an await.
    #[inline]
    pub fn lock(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_of(self.hash(key))].lock()
    }

    /// Report every shard's lookups and evictions to `o` (None: to no one).
    pub fn observe(&self, o: Option<std::sync::Arc<dyn observe::Observer>>) {
        for s in self.shards.iter() {
            s.lock().set_observer(o.clone());
        }
    }

    /// Change the HLC host bit of every shard's later CAS values.
    pub fn set_host_bit(&self, host_bit: bool) {
        for s in self.shards.iter() {
            s.lock().set_host_bit(host_bit);
        }
    }

    /// Lock shard `i` (background work, stats).
    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock()
    }

    /// Sum of all shards' item counters.
    pub fn stats(&self) -> ShardStats {
        let mut t = ShardStats::default();
        for s in self.shards.iter() {
            let s = *s.lock().stats();
            t.curr_items += s.curr_items;
            t.total_items += s.total_items;
            t.bytes += s.bytes;
            t.evictions += s.evictions;
            t.evicted_unfetched += s.evicted_unfetched;
            t.evicted_active += s.evicted_active;
            t.expired_unfetched += s.expired_unfetched;
            t.reclaimed += s.reclaimed;
            t.get_expired += s.get_expired;
            t.get_flushed += s.get_flushed;
            t.mem_claimed += s.mem_claimed;
            t.index_bytes += s.index_bytes;
            t.wheel_bytes += s.wheel_bytes;
            t.hash_power_level = t.hash_power_level.max(s.hash_power_level);
            t.hash_is_expanding |= s.hash_is_expanding;
            t.slabs_moved += s.slabs_moved;
            t.slab_reassign_rescues += s.slab_reassign_rescues;
            t.slab_reassign_evictions_nomem += s.slab_reassign_evictions_nomem;
            t.pages_borrowed += s.pages_borrowed;
            t.pages_returned += s.pages_returned;
        }
        t
    }

    /// Per-class figures summed over shards, by class id (1-based, as
    /// memcached numbers them), in class order.
    pub fn class_info(&self) -> Vec<ClassInfo> {
        let mut out: Vec<ClassInfo> = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock();
            for ci in s.class_info() {
                match out.iter_mut().find(|o| o.id == ci.id) {
                    Some(o) => o.add(&ci),
                    None => out.push(ci),
                }
            }
        }
        out.sort_by_key(|c| c.id);
        out
    }

    /// `slabs reassign <src> <dst>`: one page moves, in the first shard
    /// that can move one (OK); else the first shard's answer.
    pub fn reassign(&self, src: i64, dst: i64) -> Reassign {
        let mut first = None;
        for s in self.shards.iter() {
            let r = s.lock().reassign(src, dst);
            if r == Reassign::Ok {
                return r;
            }
            first.get_or_insert(r);
        }
        first.unwrap_or(Reassign::NoSpare)
    }

    /// `slabs automove <level>`.
    pub fn set_automove(&self, level: u8) {
        for s in self.shards.iter() {
            s.lock().set_automove(level);
        }
    }

    pub fn automove(&self) -> u8 {
        self.shards[0].lock().automove()
    }

    /// `stats reset`: zero the item-level counters (not the gauges).
    pub fn reset_stats(&self) {
        for s in self.shards.iter() {
            s.lock().reset_stats();
        }
    }

    /// flush_all: at `at` (relative time; <= now means now) every item
    /// stored before then is gone. Each shard records a `Change::Flush`.
    pub fn flush_all(&self, at: u32, now: u32) {
        for s in self.shards.iter() {
            s.lock().flush_all(at, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard holding nothing cannot evict its way to memory: when the
    /// other shard holds the whole budget, its failed allocation makes it
    /// hungry and the other shard gives pages back from its own ticker.
    #[test]
    fn a_shard_with_nothing_gets_memory_back_from_the_other() {
        let store = Store::new(StoreConfig {
            mem_limit: 4 << 20,
            shards: 2,
            ..Default::default()
        });
        let keys_of = |shard: usize, n: usize| -> Vec<String> {
            (0..)
                .map(|i| format!("k{i}"))
                .filter(|k| store.shard_of(store.hash(k.as_bytes())) == shard)
                .take(n)
                .collect()
        };
        let v = vec![b'v'; 1000];
        for k in keys_of(0, 20_000) {
            let mut s = store.lock(k.as_bytes());
            s.store(&StoreRequest::new(StoreMode::Set, k.as_bytes(), &v), 10);
        }
        assert!(store.budget().claimed() + store.budget().page_size > 4 << 20);
        assert_eq!(store.lock_shard(1).stats().mem_claimed, 0);
        // A large item (over half a 64 KiB page) for shard 1: no memory.
        let big = vec![b'B'; 100_000];
        let k1 = keys_of(1, 1).pop().unwrap();
        let put = |now| {
            let mut s = store.lock(k1.as_bytes());
            s.store(&StoreRequest::new(StoreMode::Set, k1.as_bytes(), &big), now)
        };
        assert_eq!(put(10), StoreResult::OutOfMemory);
        let mut now = 10;
        let mut stored = false;
        for _ in 0..10 {
            now += 1;
            store.lock_shard(1).tick(now);
            while store.lock_shard(0).tick(now) {}
            if matches!(put(now), StoreResult::Stored { .. }) {
                stored = true;
                break;
            }
        }
        assert!(stored, "shard 1 never got memory");
        assert!(store.stats().pages_returned > 0);
        let mut s = store.lock(k1.as_bytes());
        assert_eq!(s.get(k1.as_bytes(), now, None).unwrap().value, &big[..]);
    }

    fn keys_of(store: &Store, shard: usize, n: usize, p: &str) -> Vec<String> {
        (0..)
            .map(|i| format!("{p}{i}"))
            .filter(|k| store.shard_of(store.hash(k.as_bytes())) == shard)
            .take(n)
            .collect()
    }

    fn set(store: &Store, k: &str, v: &[u8], now: u32) -> StoreResult {
        let mut s = store.lock(k.as_bytes());
        s.store(&StoreRequest::new(StoreMode::Set, k.as_bytes(), v), now)
    }

    /// `cache_memlimit`: a lower limit is reached by the shards' own ticks
    /// (pages given back, items evicted), a higher one admits more.
    #[test]
    fn a_lowered_limit_is_reached_by_ticks_and_a_raised_one_admits_more() {
        let store = Store::new(StoreConfig {
            mem_limit: 64 << 20,
            shards: 2,
            ..Default::default()
        });
        let v = vec![b'v'; 1000];
        for i in 0..80_000 {
            set(&store, &format!("k{i}"), &v, 10);
        }
        assert!(store.budget().claimed() > 60 << 20);
        store.budget().set_limit(8 << 20);
        assert!(store.budget().shrinking());
        let mut rounds = 0;
        while store.budget().claimed() > 8 << 20 {
            rounds += 1;
            assert!(rounds < 1000, "claimed {}", store.budget().claimed());
            for i in 0..2 {
                store.lock_shard(i).tick(11);
            }
        }
        assert!(!store.budget().shrinking());
        let held = store.stats().curr_items;
        // new sets stay within the lower limit
        for i in 0..10_000 {
            set(&store, &format!("n{i}"), &v, 12);
        }
        assert!(store.budget().claimed() <= 8 << 20);
        store.budget().set_limit(64 << 20);
        for i in 0..40_000 {
            set(&store, &format!("m{i}"), &v, 13);
        }
        assert!(store.stats().curr_items > 3 * held, "{held}");
    }

    /// Pooled pages are resident memory: freed large items of exactly one
    /// page go to the pool, and large items of another size must not then
    /// claim the budget afresh beside them (the resident set reached 2x -m).
    /// Page-sized large items reuse pooled pages.
    #[test]
    fn claimed_plus_pooled_memory_stays_within_the_limit() {
        let limit = 64 << 20;
        let store = Store::new(StoreConfig {
            mem_limit: limit,
            shards: 2,
            ..Default::default()
        });
        let ps = store.budget().page_size;
        let a = vec![b'a'; ps - 200];
        let ka = keys_of(&store, 0, 900, "a");
        for k in &ka {
            set(&store, k, &a, 10);
        }
        for k in &ka {
            let mut s = store.lock(k.as_bytes());
            s.delete(&DeleteRequest::new(k.as_bytes()), 10);
        }
        let pooled = store.budget().pooled_pages();
        assert!(pooled > 400, "freed page-sized items are pooled: {pooled}");
        let b = vec![b'b'; 100_000];
        let mut worst = 0;
        for k in keys_of(&store, 0, 600, "b") {
            set(&store, &k, &b, 10);
            let resident = store.budget().claimed() + store.budget().pooled_pages() * ps;
            worst = worst.max(resident);
        }
        assert!(worst <= limit + 2 * ps, "resident {worst} > limit {limit}");
        // Page-sized items take their memory from the pool.
        for k in &ka[..100] {
            set(&store, k, &a, 10);
        }
        let resident = store.budget().claimed() + store.budget().pooled_pages() * ps;
        assert!(resident <= limit + 2 * ps, "resident {resident}");
    }

    /// A shard below its share gets memory back from a shard whose extra
    /// memory is all in large items (32 KiB and up at 64 KiB pages): the
    /// give-back path evicts large items, and the hungry shard does not
    /// evict its own items to repay its first-page credit.
    #[test]
    fn a_shard_below_its_share_gets_memory_held_in_large_items() {
        let store = Store::new(StoreConfig {
            mem_limit: 64 << 20,
            shards: 2,
            ..Default::default()
        });
        let big = vec![b'B'; 50_000];
        for k in keys_of(&store, 0, 2000, "L") {
            set(&store, &k, &big, 10);
        }
        let v = vec![b'v'; 100];
        let mut now = 10;
        let ks = keys_of(&store, 1, 100_000, "s");
        let mut it = ks.iter();
        for _ in 0..20 {
            now += 1;
            for _ in 0..5000 {
                set(&store, it.next().unwrap(), &v, now);
            }
            store.lock_shard(1).tick(now);
            while store.lock_shard(0).tick(now) {}
        }
        let s1 = *store.lock_shard(1).stats();
        let s0 = *store.lock_shard(0).stats();
        assert!(s0.pages_returned > 0, "shard 0 returned nothing");
        // 100k items of ~140 bytes need ~13.5 MB; most must be held.
        assert!(
            s1.curr_items >= 90_000 && s1.mem_claimed >= 12 << 20,
            "shard 1 stays starved: {} bytes, {} items",
            s1.mem_claimed,
            s1.curr_items
        );
        let resident = store.budget().claimed();
        assert!(resident <= (64 << 20) + 4 * store.budget().page_size);
    }

    /// Within one shard, memory held by large items flows to an evicting
    /// slab class (the automover frees large items when no slab class can
    /// give a page), as memcached's automove moves chunked items' pages.
    #[test]
    fn automove_takes_memory_from_idle_large_items() {
        let store = Store::new(StoreConfig {
            mem_limit: 64 << 20,
            shards: 1,
            ..Default::default()
        });
        let big = vec![b'B'; 50_000];
        for i in 0..2000 {
            set(&store, &format!("L{i}"), &big, 10);
        }
        let v = vec![b'v'; 100];
        let mut now = 10;
        let mut n = 0;
        for _ in 0..20 {
            now += 1;
            for _ in 0..5000 {
                set(&store, &format!("s{n}"), &v, now);
                n += 1;
            }
            while store.lock_shard(0).tick(now) {}
        }
        let held = (n - 20_000..n)
            .filter(|i| {
                let k = format!("s{i}");
                let mut s = store.lock(k.as_bytes());
                s.get(k.as_bytes(), now, None).is_some()
            })
            .count();
        assert!(held >= 19_000, "{held} of the last 20000 small items held");
    }

    /// An item within -I but larger than one shard's share of -m fits the
    /// shared budget: memcached stores it, so do we.
    #[test]
    fn an_item_larger_than_a_share_fits_the_shared_budget() {
        let store = Store::new(StoreConfig {
            mem_limit: 96 << 20,
            shards: 3,
            max_item_size: 48 << 20,
            ..Default::default()
        });
        let v = vec![b'x'; 40 << 20];
        let k = keys_of(&store, 1, 1, "big").pop().unwrap();
        assert!(matches!(
            set(&store, &k, &v, 10),
            StoreResult::Stored { .. }
        ));
        let mut s = store.lock(k.as_bytes());
        assert_eq!(s.get(k.as_bytes(), 10, None).unwrap().value.len(), 40 << 20);
        drop(s);
        // Still refused beyond the whole budget.
        let store = Store::new(StoreConfig {
            mem_limit: 32 << 20,
            shards: 1,
            max_item_size: 48 << 20,
            ..Default::default()
        });
        assert_eq!(set(&store, &k, &v, 10), StoreResult::OutOfMemory);
    }

    /// Free pages go back to a hungry shard many per tick, not one per
    /// 100 ms ticker sleep.
    #[test]
    fn free_pages_are_given_back_many_per_tick() {
        let store = Store::new(StoreConfig {
            mem_limit: 64 << 20,
            shards: 2,
            ..Default::default()
        });
        let v = vec![b'v'; 1000];
        let k0 = keys_of(&store, 0, 70_000, "k");
        for k in &k0 {
            set(&store, k, &v, 10);
        }
        for k in &k0 {
            let mut s = store.lock(k.as_bytes());
            s.delete(&DeleteRequest::new(k.as_bytes()), 10);
        }
        assert!(store.budget().claimed() + 4 * store.budget().page_size > 64 << 20);
        // Shard 1 evicts below its share: hungry from its next window.
        let small = vec![b's'; 100];
        for k in keys_of(&store, 1, 5000, "s") {
            set(&store, &k, &small, 10);
        }
        store.lock_shard(1).tick(11);
        assert!(store.budget().hungry() > 0);
        store.lock_shard(0).tick(11);
        let returned = store.lock_shard(0).stats().pages_returned;
        assert!(returned >= 8, "{returned} pages returned in one tick");
    }

    #[test]
    fn routing_is_stable_and_spread() {
        let cfg = StoreConfig {
            shards: 4,
            ..Default::default()
        };
        let a = Store::new(cfg.clone());
        let b = Store::new(cfg);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let k = format!("key:{i}");
            let h = a.hash(k.as_bytes());
            assert_eq!(h, b.hash(k.as_bytes()));
            counts[a.shard_of(h)] += 1;
        }
        for c in counts {
            assert!(c > 800, "{counts:?}");
        }
    }
}
