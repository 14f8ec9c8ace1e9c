//! Visiting a shard's live items in slices: the dumps (`stats cachedump`,
//! `lru_crawler metadump`) and replication's full sync.

use super::shard::Shard;
use super::slab::{B_FETCHED, B_STALE, NONE};

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
        self.engine.check_flush(now);
        let engine = &self.engine;
        let mut b = from;
        for _ in 0..max_buckets {
            let heads = engine.walk_heads(b)?;
            for mut item in heads {
                while item != NONE {
                    if engine.dead(item, now).is_none() {
                        let bits = engine.arena.bits(item);
                        f(&WalkItem {
                            key: engine.arena.key(item),
                            value_len: engine.arena.vlen(item),
                            value: engine.arena.value(item),
                            flags: engine.arena.flags(item),
                            cas: engine.arena.cas(item),
                            exptime: engine.arena.exptime(item),
                            atime: engine.arena.atime(item, now),
                            fetched: bits & B_FETCHED != 0,
                            stale: bits & B_STALE != 0,
                        });
                    }
                    item = engine.arena.next(item);
                }
            }
            b += 1;
        }
        Some(b)
    }
}
