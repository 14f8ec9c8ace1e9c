//! Per-class statistics of one shard (`stats slabs`, `stats items`).

use super::shard::Shard;
use super::slab::ClassStats;

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

impl Shard {
    /// Per-class figures of the classes that have pages or items.
    pub fn class_info(&self) -> impl Iterator<Item = ClassInfo> + '_ {
        let arena = &self.engine.arena;
        let now = crate::time::now();
        (0..arena.classes.len()).filter_map(move |c| {
            let cl = &arena.classes[c];
            if cl.pages.is_empty() && cl.st.items == 0 && cl.st.evicted == 0 {
                return None;
            }
            let large = c == arena.large;
            let total_pages = cl.pages.len() as u64;
            let (free, end) = if large { (0, 0) } else { arena.free_chunks(c) };
            let total_chunks = if large {
                total_pages
            } else {
                total_pages * cl.per_page as u64
            };
            let used: u64 = cl
                .pages
                .iter()
                .map(|&p| arena.page(p as usize).used as u64)
                .sum();
            let age = arena
                .hand(c)
                .filter(|&item| arena.bits(item) & super::slab::B_LINKED != 0)
                .map_or(0, |item| now.saturating_sub(arena.atime(item, now)) as u64);
            Some(ClassInfo {
                id: c as u32 + 1,
                chunk_size: if large {
                    arena.page_size as u64
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
