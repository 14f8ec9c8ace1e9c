//! The hash index: a bucket array of chain heads; the chains run through the
//! items' own `next` field (4 bytes in the item header), so the index costs
//! 4 bytes per bucket and nothing per item beyond that.
//!
//! Growth never stops the world: when the load passes 1.5 items per bucket a
//! table twice the size is allocated (zeroed memory from the OS, not
//! touched) and the old buckets are moved over a few at a time, by every
//! insert and by the owner core's background ticks. While the move runs, a
//! key's bucket is in the old table if that bucket has not been moved yet,
//! else in the new one.
//!
//! Buckets store `handle + 1` so that an all-zero table is empty.

use super::slab::{Arena, NONE};

/// Buckets moved per insert while growing.
const MIGRATE_PER_INSERT: usize = 4;

pub struct Index {
    tab: Vec<u32>,
    old: Vec<u32>,
    /// Old buckets `[0, moved)` have been moved.
    moved: usize,
    count: usize,
    hasher: ahash::RandomState,
}

#[inline]
fn head(b: u32) -> u32 {
    b.wrapping_sub(1)
}

#[inline]
fn slot(h: u32) -> u32 {
    h.wrapping_add(1)
}

impl Index {
    pub fn new(initial_buckets: usize, hasher: ahash::RandomState) -> Index {
        let n = initial_buckets.next_power_of_two().max(16);
        Index {
            tab: vec![0; n],
            old: Vec::new(),
            moved: 0,
            count: 0,
            hasher,
        }
    }

    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.count
    }

    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn buckets(&self) -> usize {
        self.tab.len()
    }

    pub fn is_growing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Memory of the bucket arrays.
    pub fn bytes(&self) -> usize {
        (self.tab.capacity() + self.old.capacity()) * 4
    }

    /// (in old table?, bucket) for a hash.
    #[inline]
    fn bucket(&self, hash: u64) -> (bool, usize) {
        if !self.old.is_empty() {
            let ob = hash as usize & (self.old.len() - 1);
            if ob >= self.moved {
                return (true, ob);
            }
        }
        (false, hash as usize & (self.tab.len() - 1))
    }

    #[inline]
    fn get_head(&self, b: (bool, usize)) -> u32 {
        head(if b.0 { self.old[b.1] } else { self.tab[b.1] })
    }

    #[inline]
    fn set_head(&mut self, b: (bool, usize), h: u32) {
        if b.0 {
            self.old[b.1] = slot(h);
        } else {
            self.tab[b.1] = slot(h);
        }
    }

    /// The item with this key, or `NONE`.
    #[inline]
    pub fn find(&self, a: &Arena, hash: u64, key: &[u8]) -> u32 {
        let mut h = self.get_head(self.bucket(hash));
        while h != NONE {
            if a.key(h) == key {
                return h;
            }
            h = a.next(h);
        }
        NONE
    }

    /// Add item `h` (its key is not in the index).
    pub fn insert(&mut self, a: &mut Arena, hash: u64, h: u32) {
        let b = self.bucket(hash);
        a.set_next(h, self.get_head(b));
        self.set_head(b, h);
        self.count += 1;
        if self.old.is_empty() {
            if self.count > self.tab.len() + self.tab.len() / 2 {
                let n = self.tab.len() * 2;
                self.old = std::mem::replace(&mut self.tab, vec![0; n]);
                self.moved = 0;
            }
        } else {
            self.migrate(a, MIGRATE_PER_INSERT);
        }
    }

    /// Remove item `h` (found by identity). False if it is not indexed.
    pub fn remove(&mut self, a: &mut Arena, hash: u64, h: u32) -> bool {
        let b = self.bucket(hash);
        let mut cur = self.get_head(b);
        if cur == h {
            self.set_head(b, a.next(h));
            self.count -= 1;
            return true;
        }
        while cur != NONE {
            let nx = a.next(cur);
            if nx == h {
                a.set_next(cur, a.next(h));
                self.count -= 1;
                return true;
            }
            cur = nx;
        }
        false
    }

    /// Put `new` in `old`'s place in its chain (same key).
    pub fn replace(&mut self, a: &mut Arena, hash: u64, old: u32, new: u32) {
        let b = self.bucket(hash);
        a.set_next(new, a.next(old));
        let mut cur = self.get_head(b);
        if cur == old {
            self.set_head(b, new);
            return;
        }
        while cur != NONE {
            let nx = a.next(cur);
            if nx == old {
                a.set_next(cur, new);
                return;
            }
            cur = nx;
        }
        debug_assert!(false, "replace: item not indexed");
    }

    /// For walking the whole index in slices: the chain heads to visit at
    /// position `b` (bucket `b` of the table, and old bucket `b` while a
    /// growth has not moved it yet), or `None` past the last bucket. A
    /// growth between two slices may show an item twice, never hide one.
    pub fn walk_heads(&self, b: usize) -> Option<[u32; 2]> {
        if b >= self.tab.len() {
            return None;
        }
        let old = if b < self.old.len() && b >= self.moved {
            head(self.old[b])
        } else {
            NONE
        };
        Some([head(self.tab[b]), old])
    }

    /// Move up to `n` old buckets into the new table. Returns true while a
    /// move is still under way.
    pub fn migrate(&mut self, a: &mut Arena, n: usize) -> bool {
        if self.old.is_empty() {
            return false;
        }
        let mask = self.tab.len() - 1;
        let end = (self.moved + n).min(self.old.len());
        for ob in self.moved..end {
            let mut h = head(self.old[ob]);
            self.old[ob] = 0;
            while h != NONE {
                let nx = a.next(h);
                let nb = self.hasher.hash_one(a.key(h)) as usize & mask;
                a.set_next(h, head(self.tab[nb]));
                self.tab[nb] = slot(h);
                h = nx;
            }
        }
        self.moved = end;
        if self.moved == self.old.len() {
            self.old = Vec::new();
            self.moved = 0;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::slab::item_size;

    fn setup() -> (Arena, Index) {
        (
            Arena::new(256 << 20, 48, 1.25),
            Index::new(16, ahash::RandomState::with_seeds(1, 2, 3, 4)),
        )
    }

    fn put(a: &mut Arena, ix: &mut Index, key: &[u8]) -> u32 {
        let c = a.class_for(item_size(key.len(), 0, 0));
        let h = match a.alloc_fast(c) {
            Some(h) => h,
            None => {
                assert!(a.try_claim(c));
                a.alloc_fast(c).unwrap()
            }
        };
        a.init_item(h, key, 0, 0, 0, 1);
        let hash = ix.hash(key);
        ix.insert(a, hash, h);
        h
    }

    #[test]
    fn grows_under_load_without_losing_keys() {
        let (mut a, mut ix) = setup();
        let n = 100_000;
        let mut hs = Vec::new();
        let mut saw_growing = false;
        for i in 0..n {
            let k = format!("key:{i}");
            hs.push(put(&mut a, &mut ix, k.as_bytes()));
            saw_growing |= ix.is_growing();
            // every key stays findable during incremental growth
            if i % 997 == 0 {
                for j in (0..=i).step_by(101) {
                    let k = format!("key:{j}");
                    assert_eq!(ix.find(&a, ix.hash(k.as_bytes()), k.as_bytes()), hs[j]);
                }
            }
        }
        assert!(saw_growing);
        while ix.migrate(&mut a, 1000) {}
        assert_eq!(ix.len(), n);
        assert!(ix.buckets() * 2 >= n, "load stays below 2");
        for (i, &h) in hs.iter().enumerate() {
            let k = format!("key:{i}");
            assert_eq!(ix.find(&a, ix.hash(k.as_bytes()), k.as_bytes()), h);
        }
        assert_eq!(ix.find(&a, ix.hash(b"nope"), b"nope"), NONE);
    }

    #[test]
    fn deletes_and_replace() {
        let (mut a, mut ix) = setup();
        let mut hs = Vec::new();
        for i in 0..5000 {
            let k = format!("k{i}");
            hs.push(put(&mut a, &mut ix, k.as_bytes()));
        }
        // delete every other key, some while the table is growing
        for i in (0..5000).step_by(2) {
            let k = format!("k{i}");
            let hash = ix.hash(k.as_bytes());
            assert!(ix.remove(&mut a, hash, hs[i]));
            assert!(!ix.remove(&mut a, hash, hs[i]));
            assert_eq!(ix.find(&a, hash, k.as_bytes()), NONE);
        }
        assert_eq!(ix.len(), 2500);
        for i in (1..5000).step_by(2) {
            let k = format!("k{i}");
            assert_eq!(ix.find(&a, ix.hash(k.as_bytes()), k.as_bytes()), hs[i]);
        }
        // replace k1's item with a fresh copy
        let c = a.class_for(item_size(2, 0, 0));
        let h = a.alloc_fast(c).unwrap();
        a.init_item(h, b"k1", 0, 0, 0, 1);
        let hash = ix.hash(b"k1");
        ix.replace(&mut a, hash, hs[1], h);
        assert_eq!(ix.find(&a, hash, b"k1"), h);
        assert_eq!(ix.len(), 2500);
    }
}
