//! Operator commands beyond the data path, text protocol only:
//!
//! - mcrouter's `lease-get`, `lease-set` and `metaget` (memcached answers
//!   `ERROR` to them, which makes mcrouter drop the backend connection).
//!   Leases live on the meta protocol's win/stale state: a miss vivifies an
//!   empty item whose win goes to the caller, with the item's CAS as the
//!   lease token; a stale item (`md ... I`) is a miss whose first reader
//!   wins; anyone else reading either gets the hot-miss token 1. A
//!   `lease-set` stores only while the item is in that state and carries
//!   the token's CAS.
//! - `stats cachedump`, `lru_crawler metadump|crawl|enable|disable|sleep|
//!   tocrawl`, `stats extstore`, with memcached 1.6.18's replies.
//!
//! Dumps walk each shard in slices of [`SLICE_BUCKETS`] index buckets: lock,
//! copy the slice's lines into the output, unlock; no lock is held across
//! I/O (the connection writes the output after the command).

use super::env::{
    emit, item_total, slab_class, Env, Next, CRAWLER_ON, CRAWLER_SLEEP, CRAWLER_TOCRAWL,
    GET_SLICE_BYTES,
};
use crate::protocol::{
    fields, put_i64, put_u64, strtoul32, tokens, Ctx, ErrorKind, Fields, Response,
};
use crate::stats::{count_get, count_store};
use crate::store::{MetaGet, StoreMode, StoreRequest, StoreResult, WalkItem};
use crate::time;
use std::sync::atomic::Ordering::Relaxed;

/// Index buckets visited per shard lock during a dump.
const SLICE_BUCKETS: usize = 256;
/// memcached's `stats cachedump` reply cap (2 MiB, `END` included).
const CACHEDUMP_MAX: usize = 2 * 1024 * 1024;
/// memcached's MAX_NUMBER_OF_SLAB_CLASSES: class ids are below this.
const MAX_CLASSES: u32 = 64;
/// How long an unfilled lease (the empty item a `lease-get` miss creates)
/// lives, in seconds.
pub const LEASE_TTL: i64 = 10;
/// mcrouter's hot-miss token: a lease is out, wait and retry.
pub const HOT_MISS: u64 = 1;

fn line(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

// ---- mcrouter ----

/// `lease-get <key>`: `VALUE` on a hit; on a miss `LVALUE <key> <token>
/// <flags> <bytes>` with the lease token the caller won, or the hot-miss
/// token 1 (with the stale value, if any) when another caller holds it.
pub fn lease_get(key: &[u8], env: &Env<'_>, out: &mut Vec<u8>) {
    let now = time::now();
    let op = MetaGet {
        bump: true,
        vivify: Some(time::exptime_to_rel(LEASE_TTL, now)),
        claim_win: true,
        ..MetaGet::default()
    };
    let st = env.stats;
    let mut shard = env.shared.store.lock(key);
    let Some((it, oc)) = shard.meta_get(key, now, &op) else {
        drop(shard);
        count_get(st, false, false);
        line(out, b"SERVER_ERROR out of memory");
        return;
    };
    let hit = !oc.created && !it.stale && !it.win;
    count_get(st, false, hit);
    out.extend_from_slice(if hit { b"VALUE " } else { b"LVALUE " });
    out.extend_from_slice(key);
    out.push(b' ');
    if !hit {
        put_u64(out, if oc.won { it.cas } else { HOT_MISS });
        out.push(b' ');
    }
    put_u64(out, it.flags as u64);
    out.push(b' ');
    put_u64(out, it.value.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(it.value);
    drop(shard);
    out.extend_from_slice(b"\r\nEND\r\n");
}

/// `lease-set`: stores (`STORED`) only when the item is still an unfilled
/// or stale lease whose CAS is `token`; anything else is `NOT_STORED`.
#[allow(clippy::too_many_arguments)]
pub fn lease_set(
    key: &[u8],
    token: u64,
    flags: u32,
    exptime: i64,
    data: &[u8],
    ctx: &Ctx,
    env: &Env<'_>,
    out: &mut Vec<u8>,
) {
    let now = time::now();
    let exp = time::exptime_to_rel(exptime, now);
    let r = if token > HOT_MISS {
        let req = StoreRequest {
            flags,
            exptime: exp,
            cas: token,
            ..StoreRequest::new(StoreMode::Set, key, data)
        };
        // one shard call: the lease check and the store
        env.shared.store.lock(key).lease_set(&req, now)
    } else {
        StoreResult::NotStored
    };
    count_store(env.stats, StoreMode::Set, false, &r);
    let resp = match r {
        StoreResult::Stored { cas, .. } => Response::Stored { cas },
        StoreResult::OutOfMemory => Response::Error(ErrorKind::OutOfMemory),
        StoreResult::TooLarge => Response::Error(ErrorKind::TooLarge),
        _ => Response::NotStored,
    };
    emit(ctx, resp, out);
}

/// `metaget <key>`: `META <key> age: unknown; exptime: <unix>; from:
/// unknown; is_transient: 0` then `END`; a miss is `END`. Reads only.
/// (corecached keeps neither an item's store time nor its writer.)
pub fn metaget(key: &[u8], env: &Env<'_>, out: &mut Vec<u8>) {
    let now = time::now();
    let mut shard = env.shared.store.lock(key);
    let exp = shard
        .meta_get(key, now, &MetaGet::default())
        .map(|(it, _)| it.exptime);
    drop(shard);
    if let Some(exp) = exp {
        out.extend_from_slice(b"META ");
        out.extend_from_slice(key);
        out.extend_from_slice(b" age: unknown; exptime: ");
        put_i64(out, unix_exptime(exp, 0));
        out.extend_from_slice(b"; from: unknown; is_transient: 0\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

// ---- dumps ----

/// Walk every shard in slices, calling `f` for each live item. `f` returns
/// false to stop the walk.
fn walk_all(env: &Env<'_>, mut f: impl FnMut(&WalkItem<'_>) -> bool) {
    let store = &env.shared.store;
    for s in 0..store.shard_count() {
        let mut pos = 0;
        loop {
            let mut go = true;
            let next = {
                let mut shard = store.lock_shard(s);
                shard.walk(pos, SLICE_BUCKETS, time::now(), |it| {
                    if go {
                        go = f(it);
                    }
                })
            };
            if !go {
                return;
            }
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
    }
}

/// memcached's class id for an item (what its dumps print and filter on).
fn memcached_class(it: &WalkItem<'_>, env: &Env<'_>) -> u32 {
    let cfg = env.shared.store.config();
    let size = item_total(it.key.len(), it.value_len, it.flags);
    slab_class(size, cfg.chunk_size as u64, cfg.growth_factor)
}

/// `stats extstore`: memcached without extstore in use, an empty block.
pub fn extstore(out: &mut Vec<u8>) {
    out.extend_from_slice(b"END\r\n");
}

/// `stats cachedump <class id> <limit>`.
pub fn cachedump(arg: &[u8], env: &Env<'_>, out: &mut Vec<u8>) {
    let mut t = tokens(arg);
    let (Some(id), Some(limit)) = (t.next(), t.next()) else {
        line(out, b"CLIENT_ERROR bad command line");
        return;
    };
    let (Some(id), Some(limit)) = (strtoul32(id), strtoul32(limit)) else {
        line(out, b"CLIENT_ERROR bad command line format");
        return;
    };
    if id >= MAX_CLASSES {
        line(out, b"CLIENT_ERROR Illegal slab id");
        return;
    }
    let start = out.len();
    let mut shown = 0u32;
    walk_all(env, |it| {
        if limit != 0 && shown >= limit {
            return false;
        }
        if memcached_class(it, env) != id {
            return true;
        }
        let mark = out.len();
        out.extend_from_slice(b"ITEM ");
        out.extend_from_slice(it.key);
        out.extend_from_slice(b" [");
        put_u64(out, it.value_len as u64);
        out.extend_from_slice(b" b; ");
        put_i64(out, unix_exptime(it.exptime, 0));
        out.extend_from_slice(b" s]\r\n");
        if out.len() - start + 6 > CACHEDUMP_MAX {
            out.truncate(mark);
            return false;
        }
        shown += 1;
        true
    });
    out.extend_from_slice(b"END\r\n");
}

/// memcached's `uriencode`: letters, digits and `-._~` as they are, every
/// other byte as `%XX`.
fn uri_encode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// Which classes a crawl covers: `all`, `hash` (every item) or a comma
/// list of ids 1..63. `None`: memcached's BADCLASS.
fn parse_classes(spec: &[u8]) -> Option<u64> {
    if spec == b"all" || spec == b"hash" {
        return Some(u64::MAX);
    }
    let mut mask = 0u64;
    for p in spec.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        let id = strtoul32(p)?;
        if !(1..MAX_CLASSES).contains(&id) {
            return None;
        }
        mask |= 1 << id;
    }
    Some(mask)
}

/// `lru_crawler <sub> ...`, memcached 1.6.18's replies.
pub fn lru_crawler(args: &[u8], env: &Env<'_>, held: bool, out: &mut Vec<u8>) -> Next {
    let Fields { v, n } = fields::<2>(args);
    let reply: &[u8] = match (n, v[0]) {
        (2, b"crawl") => {
            if !CRAWLER_ON.load(Relaxed) {
                b"ERROR an unknown error happened"
            } else if parse_classes(v[1]).is_none() {
                b"BADCLASS invalid class id"
            } else {
                // Expired items are already reclaimed by the timing wheel
                // (every second, without reads): the crawl has nothing left.
                b"OK"
            }
        }
        (2, b"metadump") => {
            if held {
                // memcached streams the dump from its crawler thread and
                // refuses while a reply is on its response stack
                // (`ConnState::held`: e.g. after a `noreply` set, not after
                // a get, which memcached writes out at once).
                b"ERROR cannot pipeline other commands before metadump"
            } else if !CRAWLER_ON.load(Relaxed) {
                b"ERROR an unknown error happened"
            } else if let Some(mask) = parse_classes(v[1]) {
                return metadump(mask, env, 0, out);
            } else {
                b"BADCLASS invalid class id"
            }
        }
        (2, b"tocrawl") => match strtoul32(v[1]) {
            Some(n) => {
                CRAWLER_TOCRAWL.store(n, Relaxed);
                b"OK"
            }
            None => b"CLIENT_ERROR bad command line format",
        },
        (2, b"sleep") => match strtoul32(v[1]) {
            Some(n) if n > 1_000_000 => b"CLIENT_ERROR sleep must be one second or less",
            Some(n) => {
                CRAWLER_SLEEP.store(n, Relaxed);
                b"OK"
            }
            None => b"CLIENT_ERROR bad command line format",
        },
        (1, b"enable") => {
            if CRAWLER_ON.swap(true, Relaxed) {
                // memcached: the crawler thread is already running.
                b"ERROR failed to start lru crawler thread"
            } else {
                b"OK"
            }
        }
        (1, b"disable") => {
            CRAWLER_ON.store(false, Relaxed);
            b"OK"
        }
        _ => b"ERROR",
    };
    line(out, reply);
    Next::Continue
}

/// Go on with a `lru_crawler metadump` that stopped with `Next::More(at)`.
pub fn resume_metadump(args: &[u8], env: &Env<'_>, at: usize, out: &mut Vec<u8>) -> Next {
    let mask = tokens(args).nth(1).and_then(parse_classes).unwrap_or(0);
    metadump(mask, env, at, out)
}

/// A metadump's place: the shard in the high bits, the walk position in
/// the low [`CURSOR_POS_BITS`].
const CURSOR_POS_BITS: u32 = 40;

/// `lru_crawler metadump`: one `key=... exp=... la=... cas=... fetch=...
/// cls=... size=...` line (ended by a bare `\n`, as memcached's) per live
/// item of the selected classes, then `END`.
///
/// The dump is written a slice at a time, like a multi-get: once
/// [`GET_SLICE_BYTES`] of it is waiting the answer is `Next::More(cursor)`,
/// the connection writes (waiting for the client to take it) and calls
/// [`resume_metadump`], so a dump of millions of items holds a bounded
/// buffer, and no shard lock is held while the connection writes.
fn metadump(mask: u64, env: &Env<'_>, from: usize, out: &mut Vec<u8>) -> Next {
    let store = &env.shared.store;
    let mut shard_at = from >> CURSOR_POS_BITS;
    let mut pos = from & ((1usize << CURSOR_POS_BITS) - 1);
    while shard_at < store.shard_count() {
        let next = {
            let mut shard = store.lock_shard(shard_at);
            shard.walk(pos, SLICE_BUCKETS, time::now(), |it| {
                metadump_line(it, mask, env, out)
            })
        };
        match next {
            Some(p) => pos = p,
            None => {
                shard_at += 1;
                pos = 0;
            }
        }
        if out.len() >= GET_SLICE_BYTES && shard_at < store.shard_count() {
            return Next::More(shard_at << CURSOR_POS_BITS | pos);
        }
    }
    out.extend_from_slice(b"END\r\n");
    Next::Continue
}

/// An item's expiry as the dumps print it: a Unix time, or `never` for an
/// item that does not expire (memcached prints 0 in `cachedump` and
/// `metaget`, -1 in `metadump`).
fn unix_exptime(exptime: u32, never: i64) -> i64 {
    if exptime == 0 {
        never
    } else {
        time::to_unix(exptime)
    }
}

/// One item's metadump line, if its class is selected.
fn metadump_line(it: &WalkItem<'_>, mask: u64, env: &Env<'_>, out: &mut Vec<u8>) {
    let cls = memcached_class(it, env);
    if mask & (1u64 << cls.min(63)) == 0 {
        return;
    }
    out.extend_from_slice(b"key=");
    uri_encode(it.key, out);
    out.extend_from_slice(b" exp=");
    put_i64(out, unix_exptime(it.exptime, -1));
    out.extend_from_slice(b" la=");
    put_i64(out, time::to_unix(it.atime));
    out.extend_from_slice(b" cas=");
    put_u64(out, it.cas);
    out.extend_from_slice(if it.fetched {
        &b" fetch=yes cls="[..]
    } else {
        &b" fetch=no cls="[..]
    });
    put_u64(out, cls as u64);
    out.extend_from_slice(b" size=");
    put_u64(out, item_total(it.key.len(), it.value_len, it.flags));
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_like_memcached() {
        let mut v = Vec::new();
        uri_encode(b"a b%c/-._~Z9\xff", &mut v);
        assert_eq!(v, b"a%20b%25c%2F-._~Z9%FF");
    }

    #[test]
    fn crawl_class_lists() {
        assert_eq!(parse_classes(b"all"), Some(u64::MAX));
        assert_eq!(parse_classes(b"1,2"), Some(0b110));
        assert_eq!(parse_classes(b"1,,63"), Some(2 | 1 << 63));
        assert_eq!(parse_classes(b"0"), None);
        assert_eq!(parse_classes(b"64"), None);
        assert_eq!(parse_classes(b"x"), None);
    }
}
