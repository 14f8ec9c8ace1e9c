//! memcached's item size: the one rule deciding whether an item is "too
//! large" (`-I`), used by the text, binary and meta parsers and by the store
//! (append/prepend, whose combined item is only known there).
//!
//! memcached 1.6.18 (`item_make_header`, `item_size_ok`, `slabs_clsid`)
//! sizes an item as its 48-byte header, the 8-byte CAS, the key and its
//! NUL, the value and its CRLF, and 4 bytes for the client flags when they
//! are non-zero; an item fits when that total is at most `-I`. Our own
//! items are laid out differently (`store::ITEM_HEADER_BYTES`); the limit is
//! memcached's so that the same requests are refused.

/// memcached's `sizeof(item)` on a 64-bit host.
const HEADER: usize = 48;
/// memcached's CAS field (`-C` not given).
const CAS: usize = 8;

/// memcached's `ITEM_ntotal`: the bytes an item of this key, flags and
/// value counts against `-I`.
#[inline]
pub fn total(key_len: usize, flags: u32, value_len: usize) -> usize {
    HEADER + CAS + key_len + 1 + value_len + 2 + if flags != 0 { 4 } else { 0 }
}

/// memcached's default `slab_chunk_max` (half a 1 MiB page): an item whose
/// [`total`] is larger is stored in chunks, and memcached's incr/decr refuse
/// a chunked value as non-numeric ("too large to be a number") before any
/// CAS compare.
pub const CHUNK_MAX: usize = 512 * 1024;

/// Would memcached store this item in chunks (see [`CHUNK_MAX`])?
#[inline]
pub fn chunked(key_len: usize, flags: u32, value_len: usize) -> bool {
    total(key_len, flags, value_len) > CHUNK_MAX
}

/// Does an item with this key, client flags and value fit `-I`
/// (`max_item`)? With `-I 1m`, a 3-byte key and flags 0 the largest value
/// is 1 MiB - 62 bytes; non-zero flags take 4 bytes more.
#[inline]
pub fn item_fits(key_len: usize, flags: u32, value_len: usize, max_item: usize) -> bool {
    total(key_len, flags, value_len) <= max_item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_sizes() {
        assert_eq!(total(3, 5, 3), 69);
        assert_eq!(total(3, 0, 3), 65);
        // -I 1k, key "k": 964 bytes fit with flags 0, 960 with flags
        // (checked against memcached 1.6.18 in tests/store_differential.rs).
        assert!(item_fits(1, 0, 964, 1024));
        assert!(!item_fits(1, 0, 965, 1024));
        assert!(item_fits(1, 5, 960, 1024));
        assert!(!item_fits(1, 5, 961, 1024));
    }
}
