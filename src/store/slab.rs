//! The slab arena: a shard's item memory.
//!
//! Memory is claimed lazily in pages from one budget shared by all shards
//! (`Budget`: the bytes of `-m` claimed so far, an atomic, and a pool of free
//! pages behind a short lock). Pages are 64 KiB–1 MiB, sized so that a shard
//! holds at least ~1024 of them (`page_size_for`). A page belongs to one size
//! class and is cut into equal chunks; an item is bytes in one chunk. Items
//! larger than half a page go to the *large* class: one item per page, the
//! page sized to the item (rounded up to 4 KiB).
//!
//! Items are addressed by `u32` handles, `page << CHUNK_BITS | chunk`, and all
//! access is safe slicing of the page's `Box<[u8]>`: no unsafe code, no
//! per-item heap allocation.
//!
//! Item layout (little endian, no alignment needed):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | CAS (a hybrid logical clock value, see `hlc`) |
//! | 8 | 4 | exptime, relative seconds (0 = never) |
//! | 12 | 4 | next handle in the hash chain (free list link when free) |
//! | 16 | 4 | position in the timing wheel slot (`NONE` = not in wheel) |
//! | 20 | 4 | key length (8 bits) \| value length (24 bits) |
//! | 24 | 4 | state bits (8 bits) \| last access time (24 bits, wraps) |
//! | 28 | 4 | client flags, present only when non-zero (`B_FLAGS`) |
//!
//! then the key, then the value. So an item costs 28 bytes (32 with client
//! flags) before its key and value; memcached's costs 56 + 3.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// "No handle".
pub const NONE: u32 = u32::MAX;
/// Bits of a handle that number the chunk within its page.
pub const CHUNK_BITS: u32 = 15;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;
/// Largest page id (so that no handle equals `NONE`).
const MAX_PAGES: usize = (1 << (32 - CHUNK_BITS)) - 1;
/// The largest page size (shards with more than 1 GiB).
pub const PAGE_SIZE: usize = 1 << 20;
/// The smallest page size.
pub const MIN_PAGE: usize = 64 << 10;
/// A shard's share of `-m` is cut into at least this many pages (when pages
/// of `MIN_PAGE` allow it), so that ~60 busy size classes strand at most a
/// few percent of it in part-filled pages (docs/ARCHITECTURE.md, storage).
pub const PAGES_PER_SHARD: usize = 1024;
/// Large items are sized to this granularity.
const LARGE_ALIGN: usize = 4096;
/// How far (seconds) an item's stored access time may be ahead of the
/// reading loop's clock and still be read as that later time (`atime`):
/// the loops' copies of the clock differ by at most a tick (100 ms), so
/// one second is what occurs; a minute leaves slack for a stalled loop.
const ATIME_AHEAD: u32 = 60;

const O_CAS: usize = 0;
const O_EXP: usize = 8;
const O_NEXT: usize = 12;
const O_WPOS: usize = 16;
const O_LEN: usize = 20;
const O_META: usize = 24;
const O_FLAGS: usize = 28;
/// Fixed header size.
pub const HDR: usize = 28;
/// Largest value length the header can hold (larger values live in large
/// pages, whose length is kept in the page).
const VLEN_MAX: usize = (1 << 24) - 1;

/// The chunk holds a live (indexed) item.
pub const B_LINKED: u8 = 1;
/// The item was fetched since it was stored.
pub const B_FETCHED: u8 = 2;
/// CLOCK reference count, low bit: with `B_REF_HI`, a 2-bit count of
/// accesses (saturating at 3) that the hand decrements as it passes.
pub const B_REF: u8 = 4;
/// CLOCK reference count, high bit.
pub const B_REF_HI: u8 = 64;
const REF_MASK: u8 = B_REF | B_REF_HI;

/// The CLOCK reference count in a state byte (0..=3).
#[inline]
pub fn ref_count(bits: u8) -> u8 {
    (bits & B_REF != 0) as u8 | (((bits & B_REF_HI != 0) as u8) << 1)
}

/// `bits` with the CLOCK reference count set to `n` (0..=3).
#[inline]
pub fn with_ref_count(bits: u8, n: u8) -> u8 {
    let mut b = bits & !REF_MASK;
    if n & 1 != 0 {
        b |= B_REF;
    }
    if n & 2 != 0 {
        b |= B_REF_HI;
    }
    b
}

/// An access: one more reference (saturating at 3).
#[inline]
pub fn ref_access(bits: u8) -> u8 {
    with_ref_count(bits, (ref_count(bits) + 1).min(3))
}
/// Meta: marked stale (invalidated).
#[allow(dead_code)] // meta protocol item bits
pub const B_STALE: u8 = 8;
/// Meta: a win token was handed out for this item.
#[allow(dead_code)]
pub const B_WIN: u8 = 16;
/// The header carries client flags.
pub const B_FLAGS: u8 = 32;

/// Bytes an item with this key, value and flags occupies.
#[inline]
pub fn item_size(klen: usize, vlen: usize, flags: u32) -> usize {
    HDR + if flags != 0 { 4 } else { 0 } + klen + vlen
}

/// `len` zeroed bytes from the allocator, or None when it refuses them (a
/// store is then refused as out of memory; the process does not abort).
/// Zeroed by the allocator: pages fresh from the OS are not touched here.
fn zeroed(len: usize) -> Option<Box<[u8]>> {
    if len == 0 {
        return Some(Box::default());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (len > 0).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a live allocation of the global allocator with the
    // layout of `[u8; len]` (size len, align 1), zero-initialised and owned
    // by nothing else: the Box takes ownership and frees it with that same
    // layout.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) })
}

#[inline]
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[inline]
fn wr32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Per-class counters, memcached's names.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassStats {
    pub items: u64,
    pub mem_requested: u64,
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub evicted_time: u32,
    pub outofmemory: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub get_hits: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
}

/// One size class.
pub struct Class {
    /// Chunk size, bytes (0 for the large class).
    pub size: u32,
    /// Chunks per page.
    pub per_page: u32,
    /// Pages of this class (CLOCK order).
    pub pages: Vec<u32>,
    /// Pages with a free or never-used chunk.
    partial: Vec<u32>,
    /// CLOCK hand: index into `pages`, chunk within that page.
    hand_page: usize,
    hand_chunk: u32,
    pub st: ClassStats,
    /// Evictions in the current rebalancing window / in the last one.
    pub win_evictions: u64,
    pub last_evictions: u64,
    /// Hits in the last window (for donor choice).
    pub win_hits: u64,
    pub last_hits: u64,
    /// Windows in a row without evictions.
    pub idle_windows: u32,
    /// The window (its start time) in which the class last received a page:
    /// its fresh free chunks do not make it a donor in that window.
    pub recv_window: u32,
}

/// One page (or one large item's memory).
pub struct Page {
    mem: Box<[u8]>,
    /// Owning class; `FREE_PAGE` when the slot holds no memory.
    pub class: u16,
    chunk: u32,
    nchunks: u32,
    /// Chunks `[0, carved)` have been handed out at least once.
    pub carved: u32,
    free_head: u32,
    pub nfree: u32,
    pub used: u32,
    class_pos: u32,
    partial_pos: u32,
    /// Being emptied for a move: its free chunks are not handed out.
    pub draining: bool,
    /// Value length of a large page's item.
    large_vlen: u32,
}

const FREE_PAGE: u16 = u16::MAX;

impl Page {
    fn empty() -> Page {
        Page {
            mem: Box::new([]),
            class: FREE_PAGE,
            chunk: 0,
            nchunks: 0,
            carved: 0,
            free_head: NONE,
            nfree: 0,
            used: 0,
            class_pos: NONE,
            partial_pos: NONE,
            draining: false,
            large_vlen: 0,
        }
    }
    fn has_free(&self) -> bool {
        self.free_head != NONE || self.carved < self.nchunks
    }
}

/// The memory budget all shards share: `-m` bytes, claimed page by page.
///
/// Claiming and returning are one atomic operation on `claimed`; free
/// page-sized memory waits in `pool` (a short lock: push or pop) so a page one
/// shard returns is reused by another without going back to the allocator.
/// `claimed + pooled` never exceeds `limit` (plus the first-page credit), so
/// the resident set stays bounded by `-m`.
pub struct Budget {
    /// `-m`, bytes (changed at run time by `cache_memlimit`).
    limit: AtomicUsize,
    /// Size of a slab page.
    pub page_size: usize,
    /// Number of shards sharing it (a shard's fair share is `limit / shards`).
    pub shards: usize,
    claimed: AtomicUsize,
    pool: Mutex<Vec<Box<[u8]>>>,
    /// Shards below their share that had to evict in their last window:
    /// while any is, shards above their share give pages back and claim none.
    hungry: AtomicUsize,
    /// `cache_memlimit` lowered the limit and the shards still hold more
    /// (cleared by the first shard that sees the budget within it).
    shrinking: std::sync::atomic::AtomicBool,
}

impl Budget {
    pub fn new(limit: usize, shards: usize) -> Budget {
        let shards = shards.max(1);
        Budget {
            limit: AtomicUsize::new(limit),
            page_size: page_size_for(limit / shards),
            shards,
            claimed: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
            hungry: AtomicUsize::new(0),
            shrinking: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The limit (`-m`), bytes.
    #[inline]
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// `cache_memlimit`: a new limit. Growing lets shards claim more at
    /// once; shrinking frees pooled pages here (outside the pool's lock)
    /// and leaves the claimed memory to the shards' tickers, which give
    /// pages back while the budget is over its limit (`Engine::plan_move`).
    /// The page size stays what `-m` made it.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
        self.trim(limit, 0);
        self.shrinking.store(self.claimed() > limit, Relaxed);
    }

    /// Over a limit `cache_memlimit` lowered? (Clears itself once within.)
    #[inline]
    pub fn shrinking(&self) -> bool {
        if !self.shrinking.load(Relaxed) {
            return false;
        }
        if self.claimed() <= self.limit() {
            self.shrinking.store(false, Relaxed);
            return false;
        }
        true
    }

    /// A shard's fair share of the limit.
    #[inline]
    pub fn share(&self) -> usize {
        self.limit() / self.shards
    }

    /// Bytes claimed by all shards.
    #[inline]
    pub fn claimed(&self) -> usize {
        self.claimed.load(Relaxed)
    }

    /// Claim `bytes` if the total stays within `limit + over`. Pooled pages
    /// are resident memory too: after the claim, pages are dropped from the
    /// pool until `claimed + pooled` is within `limit + over` again (one
    /// pooled page is spared for a page-sized claim, whose caller takes it
    /// with `page_mem`). Dropped pages are freed outside the lock.
    #[inline]
    pub fn take(&self, bytes: usize, over: usize) -> bool {
        let cap = self.limit() + over;
        let ok = self
            .claimed
            .fetch_update(Relaxed, Relaxed, |c| {
                (c + bytes <= cap).then_some(c + bytes)
            })
            .is_ok();
        if ok {
            self.trim(cap, (bytes == self.page_size) as usize);
        }
        ok
    }

    /// Drop pooled pages while `claimed + (pooled - spare)` pages exceed
    /// `cap` bytes.
    fn trim(&self, cap: usize, spare: usize) {
        loop {
            let m = {
                let mut pool = self.pool.lock();
                let keep = pool.len().saturating_sub(spare);
                if keep > 0 && self.claimed() + keep * self.page_size > cap {
                    pool.pop()
                } else {
                    None
                }
            };
            // Freed here, with the lock released.
            if m.is_none() {
                return;
            }
        }
    }

    /// Return claimed bytes.
    #[inline]
    pub fn give(&self, bytes: usize) {
        self.claimed.fetch_sub(bytes, Relaxed);
    }

    /// Memory for a page just claimed: from the pool, else the allocator
    /// (outside the pool's lock).
    /// None when the allocator refuses it.
    fn page_mem(&self) -> Option<Box<[u8]>> {
        let m = self.pool.lock().pop();
        m.or_else(|| zeroed(self.page_size))
    }

    /// Memory of a page just given back: kept in the pool while claimed
    /// plus pooled memory stays within the limit, else freed.
    fn recycle(&self, mem: Box<[u8]>) {
        if mem.len() != self.page_size {
            return;
        }
        let mut pool = self.pool.lock();
        if self.claimed() + (pool.len() + 1) * self.page_size <= self.limit() {
            pool.push(mem);
            return;
        }
        drop(pool);
        drop(mem);
    }

    /// Free pages waiting in the pool.
    pub fn pooled_pages(&self) -> usize {
        self.pool.lock().len()
    }

    /// Shards below their share that are evicting.
    #[inline]
    pub fn hungry(&self) -> usize {
        self.hungry.load(Relaxed)
    }

    pub fn set_hungry(&self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => {
                self.hungry.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.hungry.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }
}

/// The arena: pages, classes and the byte budget.
pub struct Arena {
    pages: Vec<Page>,
    free_ids: Vec<u32>,
    pub classes: Vec<Class>,
    /// Index of the large class (= number of slab classes).
    pub large: usize,
    pub page_size: usize,
    /// This shard's fair share of the shared budget, bytes.
    pub limit: usize,
    /// Bytes claimed by this shard (slab pages and large items).
    pub claimed: usize,
    /// Pages claimed beyond the budget may not exceed this many bytes.
    pub debt_max: usize,
    /// Bytes this shard claimed on credit (beyond the shared limit), to repay.
    pub debt: usize,
    /// Pages claimed while at or above the fair share (memory other shards
    /// did not use).
    pub borrowed: u64,
    pub budget: std::sync::Arc<Budget>,
}

/// Page size for a shard's share of `-m`: the largest power of two from
/// 64 KiB to 1 MiB that still cuts the share into `PAGES_PER_SHARD` pages.
pub fn page_size_for(limit: usize) -> usize {
    let mut p = PAGE_SIZE;
    while p > MIN_PAGE && p * PAGES_PER_SHARD > limit {
        p /= 2;
    }
    p
}

/// Chunk sizes: from `HDR + min_data` (8-byte aligned) growing by
/// `1 + (factor - 1) / 4` (four classes per memcached class: our header is
/// small, so rounding waste dominates) up to half a page.
pub fn class_sizes(page_size: usize, min_data: usize, factor: f64) -> Vec<u32> {
    let max = page_size / 2;
    let step = 1.0 + (factor.max(1.0001) - 1.0) / 4.0;
    let mut v = Vec::new();
    let mut size = (HDR + min_data.max(4) + 7) & !7;
    while size < max && v.len() < 250 {
        v.push(size as u32);
        let next = ((size as f64 * step) as usize + 7) & !7;
        size = next.max(size + 8);
    }
    v.push(max as u32);
    v
}

impl Arena {
    /// An arena with a budget of its own (`limit` bytes, one shard).
    #[cfg(test)]
    pub fn new(limit: usize, min_data: usize, factor: f64) -> Arena {
        Self::shared(std::sync::Arc::new(Budget::new(limit, 1)), min_data, factor)
    }

    /// One shard's arena drawing on a shared budget.
    pub fn shared(budget: std::sync::Arc<Budget>, min_data: usize, factor: f64) -> Arena {
        let page_size = budget.page_size;
        let limit = budget.share();
        let sizes = class_sizes(page_size, min_data, factor);
        let mk = |size: u32, per_page: u32| Class {
            size,
            per_page,
            pages: Vec::new(),
            partial: Vec::new(),
            hand_page: 0,
            hand_chunk: 0,
            st: ClassStats::default(),
            win_evictions: 0,
            last_evictions: 0,
            win_hits: 0,
            last_hits: 0,
            idle_windows: 0,
            recv_window: u32::MAX,
        };
        let mut classes: Vec<Class> = sizes
            .iter()
            .map(|&s| mk(s, (page_size / s as usize) as u32))
            .collect();
        let large = classes.len();
        classes.push(mk(0, 1));
        Arena {
            pages: Vec::new(),
            free_ids: Vec::new(),
            classes,
            large,
            page_size,
            limit,
            claimed: 0,
            debt_max: 2 * page_size,
            debt: 0,
            borrowed: 0,
            budget,
        }
    }

    /// The class for an item of `total` bytes (`large` when above half a page).
    #[inline]
    pub fn class_for(&self, total: usize) -> usize {
        let slabs = &self.classes[..self.large];
        slabs.partition_point(|c| (c.size as usize) < total)
    }

    #[inline]
    pub fn page_of(h: u32) -> usize {
        (h >> CHUNK_BITS) as usize
    }

    #[inline]
    fn handle(page: usize, chunk: u32) -> u32 {
        ((page as u32) << CHUNK_BITS) | chunk
    }

    #[inline]
    pub fn page(&self, p: usize) -> &Page {
        &self.pages[p]
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The chunk of a handle.
    #[inline]
    pub fn chunk(&self, h: u32) -> &[u8] {
        let p = &self.pages[Self::page_of(h)];
        let c = (h & CHUNK_MASK) as usize * p.chunk as usize;
        &p.mem[c..c + p.chunk as usize]
    }

    #[inline]
    pub fn chunk_mut(&mut self, h: u32) -> &mut [u8] {
        let p = &mut self.pages[Self::page_of(h)];
        let c = (h & CHUNK_MASK) as usize * p.chunk as usize;
        &mut p.mem[c..c + p.chunk as usize]
    }

    // ---- header fields ----

    #[inline]
    pub fn cas(&self, h: u32) -> u64 {
        let b = self.chunk(h);
        u64::from_le_bytes(b[O_CAS..O_CAS + 8].try_into().expect("8 bytes"))
    }
    #[inline]
    pub fn set_cas(&mut self, h: u32, v: u64) {
        self.chunk_mut(h)[O_CAS..O_CAS + 8].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn exptime(&self, h: u32) -> u32 {
        rd32(self.chunk(h), O_EXP)
    }
    #[inline]
    pub fn set_exptime(&mut self, h: u32, v: u32) {
        wr32(self.chunk_mut(h), O_EXP, v)
    }
    #[inline]
    pub fn next(&self, h: u32) -> u32 {
        rd32(self.chunk(h), O_NEXT)
    }
    #[inline]
    pub fn set_next(&mut self, h: u32, v: u32) {
        wr32(self.chunk_mut(h), O_NEXT, v)
    }
    #[inline]
    pub fn wpos(&self, h: u32) -> u32 {
        rd32(self.chunk(h), O_WPOS)
    }
    #[inline]
    pub fn set_wpos(&mut self, h: u32, v: u32) {
        wr32(self.chunk_mut(h), O_WPOS, v)
    }
    #[inline]
    pub fn bits(&self, h: u32) -> u8 {
        self.chunk(h)[O_META]
    }
    #[inline]
    pub fn set_bits(&mut self, h: u32, v: u8) {
        self.chunk_mut(h)[O_META] = v
    }
    /// Last access time (relative seconds, kept modulo 2^24). A stored
    /// time up to `ATIME_AHEAD` s after `now` is read as that later time:
    /// each event loop keeps its own copy of the clock, so a loop whose copy
    /// still says second T-1 may read an item another loop stamped T.
    #[inline]
    pub fn atime(&self, h: u32, now: u32) -> u32 {
        let stored = rd32(self.chunk(h), O_META) >> 8;
        let ahead = stored.wrapping_sub(now & 0xff_ffff) & 0xff_ffff;
        if ahead <= ATIME_AHEAD {
            return now.saturating_add(ahead);
        }
        let age = (now & 0xff_ffff).wrapping_sub(stored) & 0xff_ffff;
        now.saturating_sub(age)
    }
    #[inline]
    pub fn set_atime(&mut self, h: u32, now: u32) {
        let b = self.chunk_mut(h);
        let v = (rd32(b, O_META) & 0xff) | (now << 8);
        wr32(b, O_META, v)
    }
    #[inline]
    pub fn flags(&self, h: u32) -> u32 {
        let b = self.chunk(h);
        if b[O_META] & B_FLAGS != 0 {
            rd32(b, O_FLAGS)
        } else {
            0
        }
    }
    #[inline]
    pub fn klen(&self, h: u32) -> usize {
        self.chunk(h)[O_LEN] as usize
    }
    #[inline]
    pub fn vlen(&self, h: u32) -> usize {
        let p = &self.pages[Self::page_of(h)];
        if p.class as usize == self.large {
            return p.large_vlen as usize;
        }
        (rd32(self.chunk(h), O_LEN) >> 8) as usize
    }
    #[inline]
    fn key_off(&self, h: u32) -> usize {
        HDR + if self.bits(h) & B_FLAGS != 0 { 4 } else { 0 }
    }
    /// Total bytes of the item (header, key, value).
    #[inline]
    pub fn size(&self, h: u32) -> usize {
        self.key_off(h) + self.klen(h) + self.vlen(h)
    }
    #[inline]
    pub fn key(&self, h: u32) -> &[u8] {
        let o = self.key_off(h);
        let k = self.klen(h);
        &self.chunk(h)[o..o + k]
    }
    #[inline]
    pub fn value(&self, h: u32) -> &[u8] {
        let o = self.key_off(h) + self.klen(h);
        let v = self.vlen(h);
        &self.chunk(h)[o..o + v]
    }
    #[inline]
    pub fn value_mut(&mut self, h: u32) -> &mut [u8] {
        let o = self.key_off(h) + self.klen(h);
        let v = self.vlen(h);
        &mut self.chunk_mut(h)[o..o + v]
    }
    /// Key and value, borrowed together.
    #[inline]
    pub fn key_value(&self, h: u32) -> (&[u8], &[u8]) {
        let o = self.key_off(h);
        let k = self.klen(h);
        let v = self.vlen(h);
        let c = self.chunk(h);
        (&c[o..o + k], &c[o + k..o + k + v])
    }

    /// Write a fresh item's header and key into chunk `h` (the value is
    /// written by the caller through `value_mut`). Not linked yet.
    pub fn init_item(
        &mut self,
        h: u32,
        key: &[u8],
        vlen: usize,
        flags: u32,
        exptime: u32,
        now: u32,
    ) {
        let large = self.pages[Self::page_of(h)].class as usize == self.large;
        if large {
            self.pages[Self::page_of(h)].large_vlen = vlen as u32;
        }
        let stored_vlen = if large { 0 } else { vlen.min(VLEN_MAX) as u32 };
        let b = self.chunk_mut(h);
        debug_assert!(item_size(key.len(), vlen, flags) <= b.len());
        b[O_CAS..O_CAS + 8].fill(0);
        wr32(b, O_EXP, exptime);
        wr32(b, O_NEXT, NONE);
        wr32(b, O_WPOS, NONE);
        wr32(b, O_LEN, key.len() as u32 | (stored_vlen << 8));
        let bits = if flags != 0 { B_FLAGS } else { 0 };
        wr32(b, O_META, bits as u32 | (now << 8));
        let mut o = HDR;
        if flags != 0 {
            wr32(b, O_FLAGS, flags);
            o += 4;
        }
        b[o..o + key.len()].copy_from_slice(key);
    }

    /// Copy a value from item `src` into item `dst` at `at` (both in this
    /// arena; `src` and `dst` are different chunks).
    pub fn copy_value(&mut self, src: u32, dst: u32, at: usize) {
        let so = self.key_off(src) + self.klen(src);
        let n = self.vlen(src);
        let dofs = self.key_off(dst) + self.klen(dst) + at;
        let (sp, dp) = (Self::page_of(src), Self::page_of(dst));
        let s_start = (src & CHUNK_MASK) as usize * self.pages[sp].chunk as usize + so;
        let d_start = (dst & CHUNK_MASK) as usize * self.pages[dp].chunk as usize + dofs;
        if sp == dp {
            self.pages[sp]
                .mem
                .copy_within(s_start..s_start + n, d_start);
        } else {
            let (a, b) = if sp < dp {
                let (l, r) = self.pages.split_at_mut(dp);
                (&l[sp], &mut r[0])
            } else {
                let (l, r) = self.pages.split_at_mut(sp);
                (&r[0], &mut l[dp])
            };
            b.mem[d_start..d_start + n].copy_from_slice(&a.mem[s_start..s_start + n]);
        }
    }

    /// Copy a whole chunk (same class) from `src` to `dst`: used to rescue
    /// items out of a page being moved.
    pub fn copy_chunk(&mut self, src: u32, dst: u32) {
        let (sp, dp) = (Self::page_of(src), Self::page_of(dst));
        let cs = self.pages[sp].chunk as usize;
        debug_assert_eq!(cs, self.pages[dp].chunk as usize);
        let s = (src & CHUNK_MASK) as usize * cs;
        let d = (dst & CHUNK_MASK) as usize * cs;
        if sp == dp {
            self.pages[sp].mem.copy_within(s..s + cs, d);
        } else {
            let (a, b) = if sp < dp {
                let (l, r) = self.pages.split_at_mut(dp);
                (&l[sp], &mut r[0])
            } else {
                let (l, r) = self.pages.split_at_mut(sp);
                (&r[0], &mut l[dp])
            };
            b.mem[d..d + cs].copy_from_slice(&a.mem[s..s + cs]);
        }
    }

    // ---- allocation ----

    /// A free chunk of class `c` from the pages it already has.
    pub fn alloc_fast(&mut self, c: usize) -> Option<u32> {
        let &p = self.classes[c].partial.last()?;
        let page = &mut self.pages[p as usize];
        let idx = if page.free_head != NONE {
            let idx = page.free_head;
            let cs = page.chunk as usize;
            let o = idx as usize * cs;
            page.free_head = rd32(&page.mem[o..o + cs], O_NEXT);
            page.nfree -= 1;
            idx
        } else {
            let idx = page.carved;
            page.carved += 1;
            idx
        };
        page.used += 1;
        if !page.has_free() {
            self.partial_remove(p as usize);
        }
        Some(Self::handle(p as usize, idx))
    }

    fn partial_remove(&mut self, p: usize) {
        let pos = self.pages[p].partial_pos;
        if pos == NONE {
            return;
        }
        let c = self.pages[p].class as usize;
        let list = &mut self.classes[c].partial;
        list.swap_remove(pos as usize);
        if let Some(&moved) = list.get(pos as usize) {
            self.pages[moved as usize].partial_pos = pos;
        }
        self.pages[p].partial_pos = NONE;
    }

    fn partial_add(&mut self, p: usize) {
        if self.pages[p].partial_pos != NONE || self.pages[p].draining {
            return;
        }
        let c = self.pages[p].class as usize;
        let list = &mut self.classes[c].partial;
        self.pages[p].partial_pos = list.len() as u32;
        list.push(p as u32);
    }

    /// Claim `bytes` from the shared budget (no credit). While another
    /// shard below its share is evicting, a shard at or above its share
    /// claims nothing: the memory it frees goes to the hungry shard.
    pub fn take(&mut self, bytes: usize) -> bool {
        if self.claimed >= self.limit && self.budget.hungry() > 0 {
            return false;
        }
        if !self.budget.take(bytes, 0) {
            return false;
        }
        if self.claimed >= self.limit {
            self.borrowed += 1;
        }
        true
    }

    /// Claim a new page for class `c` if the budget allows it (or, for a
    /// class without any page, if the debt stays within `debt_max`:
    /// memcached always grants a class its first page; we repay the debt in
    /// the background by releasing another page).
    pub fn try_claim(&mut self, c: usize) -> bool {
        let ps = self.page_size;
        if self.pages.len() >= MAX_PAGES && self.free_ids.is_empty() {
            return false;
        }
        let mut debt = 0;
        if !self.take(ps) {
            let first = self.classes[c].pages.is_empty();
            if !(first && self.debt + ps <= self.debt_max && self.budget.take(ps, self.debt_max)) {
                return false;
            }
            debt = ps;
            self.debt += ps;
        }
        let Some(mem) = self.budget.page_mem() else {
            // The system refused the memory: as if the budget had.
            self.budget.give(ps);
            self.debt -= debt;
            return false;
        };
        self.install_page(c, mem);
        true
    }

    fn install_page(&mut self, c: usize, mem: Box<[u8]>) -> usize {
        let len = mem.len();
        let p = match self.free_ids.pop() {
            Some(p) => p as usize,
            None => {
                self.pages.push(Page::empty());
                self.pages.len() - 1
            }
        };
        self.claimed += len;
        self.pages[p].mem = mem;
        self.assign(p, c);
        p
    }

    /// Give page `p` (with no live items) to class `c`.
    fn assign(&mut self, p: usize, c: usize) {
        let (size, per) = if c == self.large {
            (self.pages[p].mem.len() as u32, 1)
        } else {
            (self.classes[c].size, self.classes[c].per_page)
        };
        let class = &mut self.classes[c];
        let pos = class.pages.len() as u32;
        class.pages.push(p as u32);
        let page = &mut self.pages[p];
        page.class = c as u16;
        page.chunk = size;
        page.nchunks = per;
        page.carved = 0;
        page.free_head = NONE;
        page.nfree = 0;
        page.used = 0;
        page.class_pos = pos;
        page.partial_pos = NONE;
        page.draining = false;
        page.large_vlen = 0;
        if c != self.large {
            self.partial_add(p);
        }
    }

    /// Take page `p` out of its class (it must hold no live items).
    fn unassign(&mut self, p: usize) {
        self.partial_remove(p);
        let c = self.pages[p].class as usize;
        let pos = self.pages[p].class_pos as usize;
        let class = &mut self.classes[c];
        class.pages.swap_remove(pos);
        if let Some(&moved) = class.pages.get(pos) {
            self.pages[moved as usize].class_pos = pos as u32;
        }
        // Keep the hand on a valid page.
        let class = &mut self.classes[c];
        if class.hand_page >= class.pages.len() {
            class.hand_page = 0;
            class.hand_chunk = 0;
        } else if class.hand_page == pos {
            class.hand_chunk = 0;
        }
        self.pages[p].class = FREE_PAGE;
        self.pages[p].class_pos = NONE;
    }

    /// Memory for one large item of `total` bytes, if the budget has
    /// `large_bytes(total)` left for this shard. Returns its handle.
    pub fn alloc_large(&mut self, total: usize) -> Option<u32> {
        if self.pages.len() >= MAX_PAGES && self.free_ids.is_empty() {
            return None;
        }
        let len = large_bytes(total);
        if !self.take(len) {
            return None;
        }
        // Memory of exactly a page may come from the pool (freed large
        // items of that size and released slab pages wait there).
        let mem = if len == self.page_size {
            self.budget.page_mem()
        } else {
            zeroed(len)
        };
        let Some(mem) = mem else {
            // The system refused the memory: this store is refused (out of
            // memory), the process goes on.
            self.budget.give(len);
            return None;
        };
        let p = self.install_page(self.large, mem);
        self.pages[p].carved = 1;
        self.pages[p].used = 1;
        Some(Self::handle(p, 0))
    }

    /// Return chunk `h` (already unlinked from index and wheel).
    pub fn free(&mut self, h: u32) {
        let p = Self::page_of(h);
        let idx = h & CHUNK_MASK;
        self.set_bits(h, 0);
        if self.pages[p].class as usize == self.large {
            self.release_page(p);
            return;
        }
        let page = &mut self.pages[p];
        let cs = page.chunk as usize;
        let o = idx as usize * cs;
        wr32(&mut page.mem[o..o + cs], O_NEXT, page.free_head);
        page.free_head = idx;
        page.nfree += 1;
        page.used -= 1;
        self.partial_add(p);
    }

    /// Drop page `p`'s memory (no live items in it) and give the bytes back
    /// to the budget.
    pub fn release_page(&mut self, p: usize) {
        self.unassign(p);
        let page = &mut self.pages[p];
        let len = page.mem.len();
        self.claimed -= len;
        self.debt = self.debt.saturating_sub(len);
        self.budget.give(len);
        let mem = std::mem::take(&mut page.mem);
        page.carved = 0;
        page.used = 0;
        page.nfree = 0;
        page.free_head = NONE;
        page.draining = false;
        self.free_ids.push(p as u32);
        self.budget.recycle(mem);
    }

    /// Start emptying page `p`: its free chunks are no longer handed out.
    pub fn begin_drain(&mut self, p: usize) {
        self.partial_remove(p);
        self.pages[p].draining = true;
    }

    /// Page `p` has been emptied: give it to class `to`.
    pub fn reassign(&mut self, p: usize, to: usize) {
        debug_assert_eq!(self.pages[p].used, 0);
        self.unassign(p);
        self.assign(p, to);
    }

    /// Handles of page `p`'s chunk `i` (for walks over a page).
    #[inline]
    pub fn handle_at(p: usize, i: u32) -> u32 {
        Self::handle(p, i)
    }

    /// CLOCK: the chunk under class `c`'s hand, then advance the hand.
    /// Skips draining pages and never-carved chunks. None if the class has
    /// no carved chunk outside draining pages.
    pub fn clock_next(&mut self, c: usize) -> Option<u32> {
        let npages = self.classes[c].pages.len();
        if npages == 0 {
            return None;
        }
        // At most one full lap over the pages looking for a usable chunk.
        for _ in 0..=npages {
            let class = &self.classes[c];
            let hp = class.hand_page.min(npages - 1);
            let p = class.pages[hp] as usize;
            let page = &self.pages[p];
            let i = class.hand_chunk;
            if !page.draining && i < page.carved {
                let class = &mut self.classes[c];
                class.hand_chunk += 1;
                if class.hand_chunk >= page.carved {
                    class.hand_page = (hp + 1) % npages;
                    class.hand_chunk = 0;
                }
                return Some(Self::handle(p, i));
            }
            let class = &mut self.classes[c];
            class.hand_page = (hp + 1) % npages;
            class.hand_chunk = 0;
        }
        None
    }

    /// Chunks of its class the CLOCK hand passes before it reaches chunk
    /// `h` (0: `h` is under the hand).
    pub fn ahead_of_hand(&self, h: u32) -> usize {
        let page = &self.pages[Self::page_of(h)];
        let class = &self.classes[page.class as usize];
        let per = page.nchunks as usize;
        let lap = class.pages.len() * per;
        if lap == 0 {
            return 0;
        }
        let hand = class.hand_page.min(class.pages.len() - 1) * per + class.hand_chunk as usize;
        let at = page.class_pos as usize * per + (h & CHUNK_MASK) as usize;
        (at + lap - hand % lap) % lap
    }

    /// The handle under class `c`'s hand, if any (for `age`).
    pub fn hand(&self, c: usize) -> Option<u32> {
        let class = &self.classes[c];
        let &p = class.pages.get(class.hand_page)?;
        let page = &self.pages[p as usize];
        (class.hand_chunk < page.carved).then(|| Self::handle(p as usize, class.hand_chunk))
    }

    /// A page of class `c` to give away: the one with the fewest live items,
    /// not containing `protect`, not already draining.
    pub fn victim_page(&self, c: usize, protect: u32) -> Option<usize> {
        let avoid = if protect == NONE {
            usize::MAX
        } else {
            Self::page_of(protect)
        };
        self.classes[c]
            .pages
            .iter()
            .map(|&p| p as usize)
            .filter(|&p| p != avoid && !self.pages[p].draining)
            .min_by_key(|&p| self.pages[p].used)
    }

    /// Free chunks of class `c` that can be handed out (free lists plus
    /// never-carved space), and how many of those are never-carved.
    pub fn free_chunks(&self, c: usize) -> (u64, u64) {
        let mut free = 0u64;
        let mut end = 0u64;
        for &p in &self.classes[c].pages {
            let page = &self.pages[p as usize];
            if page.draining {
                continue;
            }
            free += page.nfree as u64 + (page.nchunks - page.carved) as u64;
            end += (page.nchunks - page.carved) as u64;
        }
        (free, end)
    }

    /// Bytes of bookkeeping outside the pages (page table, class lists).
    pub fn meta_bytes(&self) -> usize {
        self.pages.capacity() * std::mem::size_of::<Page>()
            + self
                .classes
                .iter()
                .map(|c| (c.pages.capacity() + c.partial.capacity()) * 4)
                .sum::<usize>()
    }
}

/// Bytes a large item of `total` bytes claims.
#[inline]
pub fn large_bytes(total: usize) -> usize {
    (total + LARGE_ALIGN - 1) & !(LARGE_ALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena(limit: usize) -> Arena {
        Arena::new(limit, 48, 1.25)
    }

    #[test]
    fn class_sizes_grow_and_cover() {
        let v = class_sizes(PAGE_SIZE, 48, 1.25);
        assert_eq!(v[0], 80); // 28 + 48 rounded to 8
        assert_eq!(*v.last().unwrap() as usize, PAGE_SIZE / 2);
        for w in v.windows(2) {
            assert!(w[1] > w[0] && w[1] % 8 == 0 || w[1] as usize == PAGE_SIZE / 2);
            // At most ~6.25% (or 8 bytes) apart: little rounding waste.
            assert!(w[1] as f64 <= (w[0] as f64 * 1.0625 + 8.0).max(w[0] as f64 + 8.0));
        }
        assert!(v.len() < 250);
    }

    #[test]
    fn class_selection() {
        let a = arena(64 << 20);
        assert_eq!(a.class_for(1), 0);
        assert_eq!(a.class_for(80), 0);
        assert_eq!(a.class_for(81), 1);
        let c = a.class_for(1000);
        assert!(a.classes[c].size >= 1000 && a.classes[c - 1].size < 1000);
        assert_eq!(a.page_size, MIN_PAGE, "64 MiB: 1024 pages of 64 KiB");
        assert_eq!(a.class_for(a.page_size / 2), a.large - 1);
        assert_eq!(a.class_for(a.page_size / 2 + 1), a.large);
    }

    #[test]
    fn page_claim_carve_free_list() {
        let mut a = arena(64 << 20);
        let c = a.class_for(100);
        assert!(a.alloc_fast(c).is_none());
        assert!(a.try_claim(c));
        assert_eq!(a.claimed, a.page_size);
        let per = a.classes[c].per_page;
        let mut hs = Vec::new();
        for _ in 0..per {
            hs.push(a.alloc_fast(c).unwrap());
        }
        assert!(a.alloc_fast(c).is_none(), "page exhausted");
        // handles are distinct and in the class's page
        let mut s = hs.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), per as usize);
        // free two, get them back LIFO
        a.free(hs[5]);
        a.free(hs[9]);
        assert_eq!(a.free_chunks(c), (2, 0));
        assert_eq!(a.alloc_fast(c), Some(hs[9]));
        assert_eq!(a.alloc_fast(c), Some(hs[5]));
        assert!(a.alloc_fast(c).is_none());
    }

    #[test]
    fn zeroed_memory_is_zero_or_refused() {
        let m = zeroed(3 << 20).expect("3 MiB");
        assert_eq!(m.len(), 3 << 20);
        assert!(m.iter().all(|&b| b == 0));
        assert_eq!(zeroed(0).map(|m| m.len()), Some(0));
        // More than any machine has: the allocator refuses, no abort.
        // (black_box: an allocation nothing reads may be assumed to
        // succeed and removed by the optimiser.)
        let huge = std::hint::black_box(isize::MAX as usize - 4096);
        assert!(std::hint::black_box(zeroed(huge)).is_none());
        assert!(std::hint::black_box(zeroed(std::hint::black_box(usize::MAX))).is_none());
    }

    #[test]
    fn budget_and_first_page_debt() {
        let mut a = arena(8 * PAGE_SIZE);
        let ps = a.page_size;
        let n = 8 * PAGE_SIZE / ps;
        for _ in 0..n {
            assert!(a.try_claim(0));
        }
        assert!(!a.try_claim(0), "budget reached");
        // A class without pages gets one on credit...
        assert!(a.try_claim(5));
        assert!(a.try_claim(6));
        // ...up to the debt limit.
        assert!(!a.try_claim(7));
        assert_eq!(a.claimed, (n + 2) * ps);
        assert_eq!(a.budget.claimed(), (n + 2) * ps);
        // Releasing a page repays the debt.
        let p = Arena::page_of(a.alloc_fast(5).unwrap());
        a.free(Arena::handle_at(p, 0));
        a.release_page(p);
        assert_eq!(a.debt, ps);
    }

    #[test]
    fn item_fields_roundtrip() {
        let mut a = arena(4 << 20);
        let c = a.class_for(item_size(3, 5, 7));
        a.try_claim(c);
        let h = a.alloc_fast(c).unwrap();
        a.init_item(h, b"key", 5, 7, 99, 1234);
        a.value_mut(h).copy_from_slice(b"hello");
        a.set_cas(h, 0xdead_beef_0000_0001);
        assert_eq!(a.key(h), b"key");
        assert_eq!(a.value(h), b"hello");
        assert_eq!(a.flags(h), 7);
        assert_eq!(a.exptime(h), 99);
        assert_eq!(a.cas(h), 0xdead_beef_0000_0001);
        assert_eq!(a.atime(h, 1240), 1234);
        assert_eq!(a.size(h), HDR + 4 + 8);
        a.set_bits(h, a.bits(h) | B_REF);
        assert_eq!(a.flags(h), 7, "bits keep the flags marker");
        a.set_atime(h, 2000);
        assert_eq!(a.bits(h) & B_REF, B_REF);
        assert_eq!(a.atime(h, 2005), 2000);
        // read by a loop whose clock is a second behind the stamping loop's
        assert_eq!(a.atime(h, 1999), 2000);
        assert_eq!(a.atime(h, 2000 - ATIME_AHEAD), 2000);
        // an age of 2^24 - ATIME_AHEAD - 1 s still reads as the past
        assert_eq!(a.atime(h, 2000 + (1 << 24) - ATIME_AHEAD - 1), 2000);
        // no flags: 4 bytes less
        let h2 = a.alloc_fast(c).unwrap();
        a.init_item(h2, b"k2", 1, 0, 0, 1);
        assert_eq!(a.size(h2), HDR + 3);
        assert_eq!(a.flags(h2), 0);
    }

    #[test]
    fn large_items_get_their_own_memory() {
        let mut a = arena(8 << 20);
        let total = PAGE_SIZE + 10;
        let h = a.alloc_large(total).unwrap();
        assert_eq!(a.claimed, large_bytes(total));
        a.init_item(h, b"big", total - HDR - 3, 0, 0, 1);
        assert_eq!(a.vlen(h), total - HDR - 3);
        a.value_mut(h).fill(7);
        assert!(a.value(h).iter().all(|&b| b == 7));
        a.free(h);
        assert_eq!(a.claimed, 0);
        // the page slot is reused
        let h2 = a.alloc_large(100_000).unwrap();
        assert_eq!(Arena::page_of(h2), Arena::page_of(h));
    }

    #[test]
    fn clock_hand_walks_carved_chunks() {
        let mut a = arena(4 << 20);
        assert!(a.try_claim(0));
        let hs: Vec<u32> = (0..3).map(|_| a.alloc_fast(0).unwrap()).collect();
        let seen: Vec<u32> = (0..6).map(|_| a.clock_next(0).unwrap()).collect();
        assert_eq!(&seen[..3], &hs[..]);
        assert_eq!(&seen[3..], &hs[..]);
    }

    #[test]
    fn drain_and_reassign_page() {
        let mut a = arena(4 << 20);
        assert!(a.try_claim(0));
        let h = a.alloc_fast(0).unwrap();
        let p = Arena::page_of(h);
        a.begin_drain(p);
        assert!(a.alloc_fast(0).is_none(), "draining page hands nothing out");
        a.free(h);
        assert!(a.alloc_fast(0).is_none());
        a.reassign(p, 3);
        assert!(a.classes[0].pages.is_empty());
        assert_eq!(a.classes[3].pages, vec![p as u32]);
        let h3 = a.alloc_fast(3).unwrap();
        assert_eq!(Arena::page_of(h3), p);
        assert_eq!(a.chunk(h3).len(), a.classes[3].size as usize);
    }

    #[test]
    fn page_size_keeps_a_thousand_pages_per_shard() {
        assert_eq!(page_size_for(1 << 30), PAGE_SIZE);
        assert_eq!(page_size_for(8 << 30), PAGE_SIZE);
        assert_eq!(page_size_for(256 << 20), 256 << 10);
        assert_eq!(page_size_for(64 << 20), MIN_PAGE);
        assert_eq!(page_size_for(4 << 20), MIN_PAGE);
        assert_eq!(page_size_for(100_000), MIN_PAGE);
    }
}
