//! TEMPORARY shim for the store's mutation seam (branch `store-seam`,
//! `crate::store::{Change, Journal, Applied}`, `Shard::set_journal`,
//! `Shard::apply`): the same API, so the replication code compiles before
//! the seam lands. Deleted when it is merged.
#![allow(dead_code)]

use crate::store::Shard;

pub enum Change<'a> {
    Item {
        key: &'a [u8],
        value: &'a [u8],
        flags: u32,
        exptime: u32,
        cas: u64,
        stale: bool,
    },
    Removed {
        key: &'a [u8],
        cas: u64,
    },
    Flush {
        at: u32,
        cas: u64,
    },
}

pub trait Journal: Send {
    fn record(&mut self, change: &Change<'_>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Removed,
    Flushed,
    Older,
    OutOfMemory,
    TooLarge,
}

pub fn set_journal(_shard: &mut Shard, _j: Option<Box<dyn Journal>>) {}

/// Last writer wins by CAS, through the shard's public operations.
pub fn apply(shard: &mut Shard, c: &Change<'_>, now: u32) -> Applied {
    use crate::store::{DeleteOpts, MetaGet, StoreMode, StoreOpts, StoreResult};
    let cur = |shard: &mut Shard, key: &[u8]| {
        shard
            .meta_get(0, key, now, &MetaGet::default())
            .map(|(i, _)| i.cas)
    };
    match *c {
        Change::Item {
            key,
            value,
            flags,
            exptime,
            cas,
            ..
        } => {
            if cur(shard, key).is_some_and(|x| x >= cas) {
                return Applied::Older;
            }
            let opts = StoreOpts {
                new_cas: cas,
                ..Default::default()
            };
            match shard.store_with(0, key, StoreMode::Set, flags, exptime, value, 0, now, &opts) {
                StoreResult::Stored { .. } => Applied::Stored,
                StoreResult::TooLarge => Applied::TooLarge,
                _ => Applied::OutOfMemory,
            }
        }
        Change::Removed { key, cas } => {
            if cur(shard, key).is_some_and(|x| x > cas) {
                return Applied::Older;
            }
            shard.delete_with(0, key, now, &DeleteOpts::default());
            Applied::Removed
        }
        Change::Flush { at, .. } => {
            shard.flush_all(at, now);
            Applied::Flushed
        }
    }
}
