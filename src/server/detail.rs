//! `stats detail on|off|dump` and `-D`: per-prefix counters of gets, hits,
//! sets and deletes, as memcached keeps them. A key's prefix is the part
//! before the first delimiter byte (default `:`, `-D` sets it); keys without
//! the delimiter are not counted.
//!
//! Off (the default), a hook costs one relaxed load and a branch. On, each
//! hook takes one global mutex for a hash-map update (memcached takes its
//! global stats lock the same way); a prefix allocates once, the first time
//! it is seen. At most [`MAX_PREFIXES`] prefixes are kept (memcached has no
//! bound); later new prefixes are not counted.
//!
//! Recorded where memcached records: text and binary get/gat (each key,
//! hit or miss), every text and binary storage command (when it is read,
//! whatever its outcome), text and binary delete. Meta commands are not
//! counted (memcached 1.6.18 does not count them either).

use crate::config::Config;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

/// Recording is on (`stats detail on`, or `-D` given at start).
static ON: AtomicBool = AtomicBool::new(false);
static DELIM: AtomicU8 = AtomicU8::new(b':');
/// Bound on distinct prefixes kept.
pub const MAX_PREFIXES: usize = 100_000;

#[derive(Default, Clone, Copy)]
struct Counts {
    get: u64,
    hit: u64,
    set: u64,
    del: u64,
}

/// Prefix → counters.
type Table = HashMap<Box<[u8]>, Counts, ahash::RandomState>;

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

pub fn init(cfg: &Config) {
    DELIM.store(cfg.prefix_delimiter, Relaxed);
    ON.store(cfg.detail_enabled, Relaxed);
}

/// `stats detail on` / `off`.
pub fn set_enabled(on: bool) {
    ON.store(on, Relaxed);
}

pub fn enabled() -> bool {
    ON.load(Relaxed)
}

pub fn delimiter() -> u8 {
    DELIM.load(Relaxed)
}

/// `stats reset` clears the prefixes, as memcached's does.
pub fn clear() {
    *TABLE.lock() = None;
}

#[inline]
pub fn get(key: &[u8], hit: bool) {
    if ON.load(Relaxed) {
        record(key, |c| {
            c.get += 1;
            c.hit += hit as u64;
        });
    }
}

#[inline]
pub fn set(key: &[u8]) {
    if ON.load(Relaxed) {
        record(key, |c| c.set += 1);
    }
}

#[inline]
pub fn del(key: &[u8]) {
    if ON.load(Relaxed) {
        record(key, |c| c.del += 1);
    }
}

#[cold]
fn record(key: &[u8], f: impl FnOnce(&mut Counts)) {
    let Some(n) = memchr::memchr(DELIM.load(Relaxed), key) else {
        return;
    };
    let prefix = &key[..n];
    let mut t = TABLE.lock();
    let map = t.get_or_insert_with(HashMap::default);
    if let Some(c) = map.get_mut(prefix) {
        f(c);
    } else if map.len() < MAX_PREFIXES {
        let mut c = Counts::default();
        f(&mut c);
        map.insert(prefix.into(), c);
    }
}

/// `stats detail dump`: one `PREFIX <p> get <n> hit <n> set <n> del <n>`
/// line per prefix (sorted by prefix; memcached lists hash order), then
/// `END`.
pub fn dump(out: &mut Vec<u8>) {
    use crate::protocol::put_u64;
    let rows: Vec<(Box<[u8]>, Counts)> = match &*TABLE.lock() {
        Some(m) => m.iter().map(|(k, c)| (k.clone(), *c)).collect(),
        None => Vec::new(),
    };
    let mut rows = rows;
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (p, c) in rows {
        out.extend_from_slice(b"PREFIX ");
        out.extend_from_slice(&p);
        for (name, v) in [
            (&b" get "[..], c.get),
            (b" hit ", c.hit),
            (b" set ", c.set),
            (b" del ", c.del),
        ] {
            out.extend_from_slice(name);
            put_u64(out, v);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}
