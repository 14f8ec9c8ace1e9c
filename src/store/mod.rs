//! The cache: the key space split into shards, one per core.
//!
//! A key's shard is chosen by a fixed-seed hash, so routing is the same on
//! every run and every host. Each shard sits behind its own mutex that is held
//! only for one table operation (never across I/O), so a request for a key
//! owned by another core is served on the core that read it, without waking
//! the owner (see docs/ARCHITECTURE.md for the measurement behind this).
//! The owner core drives the shard's background work (expiry, rebalancing).

mod shard;

pub use shard::Shard;

use crate::protocol::StoreMode;
use parking_lot::{Mutex, MutexGuard};

/// Fixed hash seeds: routing must be stable across restarts and hosts.
const SEEDS: [u64; 4] = [
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
        }
    }
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
}

/// Result of a store command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    Stored {
        cas: u64,
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
    Value {
        value: u64,
        cas: u64,
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
}

/// All shards.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: ahash::RandomState,
    config: StoreConfig,
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let n = config.shards.max(1);
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(i, n, &config)))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Store {
            shards,
            hasher: ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
            config,
        }
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

    /// Lock the shard owning `key`; returns the guard and the key's hash.
    /// Hold the guard for one table operation only, never across an await.
    #[inline]
    pub fn lock(&self, key: &[u8]) -> (MutexGuard<'_, Shard>, u64) {
        let h = self.hash(key);
        (self.shards[self.shard_of(h)].lock(), h)
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
        }
        t
    }

    /// `stats reset`: zero the item-level counters (not the gauges).
    pub fn reset_stats(&self) {
        for s in self.shards.iter() {
            s.lock().reset_stats();
        }
    }

    /// flush_all: at `at` (relative time; <= now means now) every item
    /// stored before then is gone.
    pub fn flush_all(&self, at: u32, now: u32) {
        for s in self.shards.iter() {
            s.lock().flush_all(at, now);
        }
    }
}

/// Mode helper shared by the protocols: does this store need the old item?
pub fn needs_existing(mode: StoreMode) -> bool {
    !matches!(mode, StoreMode::Set | StoreMode::Add)
}

#[cfg(test)]
mod tests {
    use super::*;

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
