//! What a shard tells an observer outside the store: every lookup of a key
//! (what it found), every store request's outcome and every eviction. The server's `watch` log stream is
//! the observer; the store knows nothing of it, nor of any protocol.
//!
//! Cost when nobody listens: the engine asks [`Observer::lookups`] /
//! [`Observer::evictions`] (one relaxed load each) before building a report.
//! A report is made under the shard lock; the observer must not take a shard
//! lock (lock order: shard, then the observer's own locks).

/// What a lookup found (memcached's `item_get` statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A live item.
    Hit,
    /// No item under the key.
    Missing,
    /// The key's item was dead by a flush (now unlinked).
    Flushed,
    /// The key's item had expired (now unlinked).
    Expired,
}

/// One lookup by key.
#[derive(Debug, Clone, Copy)]
pub struct Looked<'a> {
    pub key: &'a [u8],
    pub found: Found,
    /// The live item's value length and client flags (0 otherwise).
    pub value_len: usize,
    pub flags: u32,
}

/// One item evicted to make room.
#[derive(Debug, Clone, Copy)]
pub struct Evicted<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    pub flags: u32,
    /// Read since it was stored.
    pub fetched: bool,
    /// Relative expiry (0: never) and last access, in `crate::time` seconds.
    pub exptime: u32,
    pub atime: u32,
    pub now: u32,
}

/// One store request's outcome (set/add/replace/append/prepend/cas, meta
/// `ms`, `lease-set`): the stored item's fields, or the request's when
/// nothing was stored.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub key: &'a [u8],
    /// The mode, `Cas` also for a set or replace that compared a CAS.
    pub mode: super::StoreMode,
    pub result: super::StoreResult,
    pub value_len: usize,
    pub flags: u32,
    /// Relative expiry (0: never).
    pub exptime: u32,
    pub now: u32,
}

/// Receives the store's reports (see the module comment for the rules).
pub trait Observer: Send + Sync {
    /// Does it want lookups now? Asked before each report: keep it cheap.
    fn lookups(&self) -> bool;
    /// Does it want evictions now?
    fn evictions(&self) -> bool;
    /// Does it want store outcomes now?
    fn stores(&self) -> bool;
    fn looked(&self, l: &Looked<'_>);
    fn stored(&self, s: &Stored<'_>);
    fn evicted(&self, e: &Evicted<'_>);
}
