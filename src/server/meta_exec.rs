//! Executes meta commands (mg, ms, md, ma, me).
//!
//! Each command locks the key's shard once, does its table operation(s)
//! through the store's meta methods (the stale/win state machine lives in
//! the store, see `store::MetaGet`), and encodes its reply with
//! `protocol::meta::encode` before the lock is released. No heap allocation
//! here: a base64 key is decoded into a stack buffer.
//!
//! Counters follow memcached 1.6.18: mg counts as a get (or, with `T`, as a
//! touch), ms as a set (plus the CAS counters in CAS mode), md as a delete
//! (`I` counts nothing), ma as incr/decr; `cmd_meta` counts only `me`.

use super::exec::{Env, Next};
use crate::protocol::ascii::error_text;
use crate::protocol::meta::{
    self, encode, encode_debug, encode_miss, Code, DebugInfo, MetaCommand, Reply, Verb,
};
use crate::protocol::{Ctx, ErrorKind, MAX_KEY_LEN};
use crate::stats::bump;
use crate::store::{
    ArithResult, DeleteOpts, DeleteResult, MetaGet, Shard, StoreMode, StoreOpts, StoreResult,
};
use crate::time;

/// memcached's default `slab_chunk_max` (half a 1 MiB page).
const SLAB_CHUNK_MAX: u64 = 512 * 1024;

pub fn execute(m: &MetaCommand<'_>, _ctx: &Ctx, env: &Env<'_>, out: &mut Vec<u8>) -> Next {
    let mut kb = [0u8; MAX_KEY_LEN];
    let key = m.key(&mut kb);
    let now = time::now();
    match m.verb {
        Verb::Get => get(m, key, now, env, out),
        Verb::Set => return set(m, key, now, env, out),
        Verb::Delete => delete(m, key, now, env, out),
        Verb::Arith => arith(m, key, now, env, out),
        Verb::Debug => debug(m, key, now, env, out),
    }
    Next::Continue
}

fn error(e: ErrorKind, out: &mut Vec<u8>) {
    out.extend_from_slice(error_text(e));
    out.extend_from_slice(b"\r\n");
}

/// Remaining TTL as meta replies print it: -1 for none.
fn remaining(exp: u32, now: u32) -> i64 {
    if exp == 0 {
        -1
    } else {
        exp as i64 - now as i64
    }
}

fn get(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) {
    let o = &m.opts;
    let st = env.stats;
    let rel = |e: i64| time::exptime_to_rel(e, now);
    let touch = o.ttl.map(rel);
    let vivify = o.vivify.map(rel);
    // A created item ends with whichever of N/T came last on the line.
    let vivify_final = match (vivify, touch) {
        (Some(_), Some(t)) if o.pos_t > o.pos_n => Some(t),
        (v, _) => v,
    };
    let op = MetaGet {
        bump: !o.no_bump,
        touch,
        recache: o.recache.map(rel),
        recache_after_touch: o.pos_t != 0 && o.pos_t < o.pos_r,
        vivify: vivify_final,
        new_cas: o.new_cas.unwrap_or(0),
        claim_win: true,
    };
    let (mut shard, h) = env.shared.store.lock(key);
    match shard.meta_get(h, key, now, &op) {
        Some((it, oc)) => {
            if o.ttl.is_some() {
                bump(&st.cmd_touch, 1);
                bump(&st.touch_hits, 1);
            } else {
                bump(&st.cmd_get, 1);
                bump(&st.get_hits, 1);
            }
            // C: skip the value when the CAS matches.
            let with_value = o.value && o.compare_cas != Some(it.cas);
            let r = Reply {
                code: if with_value { Code::Va } else { Code::Hd },
                key,
                value: if with_value { it.value } else { b"" },
                flags: it.flags,
                cas: it.cas,
                size: it.value.len(),
                ttl: if oc.created {
                    -1
                } else {
                    remaining(it.exptime, now)
                },
                ttl_touch: touch.map_or(-1, |e| remaining(e, now)),
                ttl_vivify: vivify.map_or(-1, |e| remaining(e, now)),
                last_access: now.saturating_sub(it.atime),
                hit_before: it.fetched,
                created: oc.created,
                win_before: it.win,
                stale: it.stale,
                won: oc.won,
            };
            encode(m, &r, out);
        }
        None => {
            drop(shard);
            bump(&st.cmd_get, 1);
            bump(&st.get_misses, 1);
            let r = Reply {
                code: Code::En,
                key,
                ..Reply::default()
            };
            encode(m, &r, out);
        }
    }
}

fn set(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) -> Next {
    let o = &m.opts;
    let st = env.stats;
    let store = &env.shared.store;
    if o.too_large {
        // memcached: count it, drop any old value, swallow the data block.
        bump(&st.store_too_large, 1);
        let (mut shard, h) = store.lock(key);
        shard.delete(h, key, 0, now);
        drop(shard);
        error(ErrorKind::TooLarge, out);
        let skip = o.data_len + 2;
        if !crate::protocol::may_swallow(skip, env.shared.config.max_item_size) {
            return Next::Close;
        }
        return Next::Skip(skip);
    }
    bump(&st.cmd_set, 1);
    let mode = match o.mode {
        b'E' => StoreMode::Add,
        b'A' => StoreMode::Append,
        b'P' => StoreMode::Prepend,
        b'R' => StoreMode::Replace,
        _ => StoreMode::Set,
    };
    let appending = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    let cas = o.compare_cas.unwrap_or(0);
    let exptime = time::exptime_to_rel(o.ttl.unwrap_or(0), now);
    let opts = StoreOpts {
        invalidate: o.invalidate,
        new_cas: o.new_cas.unwrap_or(0),
        vivify: o
            .vivify
            .filter(|_| appending)
            .map(|e| time::exptime_to_rel(e, now)),
    };
    let (mut shard, h) = store.lock(key);
    let r = if o.compare_cas == Some(0) && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        // `C0` is a compare against CAS 0, which no item has (memcached
        // 1.6.18: EX on an existing item, NF on a missing one); a CAS of 0
        // below means "no compare".
        zero_cas(&mut shard, h, key, now)
    } else {
        shard.store_with(
            h,
            key,
            mode,
            o.client_flags,
            exptime,
            m.data,
            cas,
            now,
            &opts,
        )
    };
    let mut size = m.data.len();
    if appending && matches!(r, StoreResult::Stored { .. }) {
        if let Some((it, _)) = shard.meta_get(h, key, now, &MetaGet::default()) {
            size = it.value.len();
        }
    }
    drop(shard);
    let cas_mode = o.compare_cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace);
    let (code, new_cas) = match r {
        StoreResult::Stored { cas } => {
            if cas_mode {
                bump(&st.cas_hits, 1);
            }
            (Code::Hd, cas)
        }
        StoreResult::NotStored | StoreResult::TooLarge => (Code::Ns, 0),
        StoreResult::Exists => {
            if cas_mode {
                bump(&st.cas_badval, 1);
            }
            (Code::Ex, 0)
        }
        StoreResult::NotFound => {
            bump(&st.cas_misses, 1);
            (Code::Nf, 0)
        }
        StoreResult::OutOfMemory => {
            bump(&st.store_no_memory, 1);
            error(ErrorKind::OutOfMemory, out);
            return Next::Continue;
        }
    };
    let r = Reply {
        code,
        key,
        cas: new_cas,
        size,
        ..Reply::default()
    };
    encode(m, &r, out);
    Next::Continue
}

/// A store or delete with `C0`: no item has CAS 0, so an existing item is
/// `Exists` and a missing one `NotFound` (nothing changes, nothing bumps).
fn zero_cas(shard: &mut Shard, h: u64, key: &[u8], now: u32) -> StoreResult {
    match shard.meta_get(h, key, now, &MetaGet::default()) {
        Some(_) => StoreResult::Exists,
        None => StoreResult::NotFound,
    }
}

fn delete(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) {
    let o = &m.opts;
    let st = env.stats;
    let opts = DeleteOpts {
        cas: o.compare_cas.unwrap_or(0),
        invalidate: o.invalidate,
        touch: o.ttl.map(|e| time::exptime_to_rel(e, now)),
        new_cas: o.new_cas.unwrap_or(0),
        remove_value: o.remove_value,
        flags: o.client_flags,
        exptime: time::exptime_to_rel(o.ttl.unwrap_or(0), now),
    };
    let (mut shard, h) = env.shared.store.lock(key);
    let r = if o.compare_cas == Some(0) {
        // `C0` compares against CAS 0: EX on an existing item, as memcached.
        match zero_cas(&mut shard, h, key, now) {
            StoreResult::Exists => DeleteResult::Exists,
            _ => DeleteResult::NotFound,
        }
    } else {
        shard.delete_with(h, key, now, &opts)
    };
    drop(shard);
    let code = match r {
        DeleteResult::Deleted => {
            if !o.invalidate {
                bump(&st.delete_hits, 1);
            }
            Code::Hd
        }
        DeleteResult::NotFound => {
            bump(&st.delete_misses, 1);
            Code::Nf
        }
        DeleteResult::Exists => {
            bump(&st.delete_misses, 1);
            Code::Ex
        }
    };
    let r = Reply {
        code,
        key,
        ..Reply::default()
    };
    encode(m, &r, out);
}

fn arith(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) {
    let o = &m.opts;
    let st = env.stats;
    let rel = |e: i64| time::exptime_to_rel(e, now);
    let incr = !matches!(o.mode, b'D' | b'-');
    let (mut shard, h) = env.shared.store.lock(key);
    let existed = o.vivify.is_none() || shard.meta_get(h, key, now, &MetaGet::default()).is_some();
    let initial = o.vivify.map(|n| (o.initial, rel(n)));
    let r = shard.arith_with(
        h,
        key,
        incr,
        o.delta,
        initial,
        o.compare_cas.unwrap_or(0),
        now,
        o.new_cas.unwrap_or(0),
    );
    let (hits, misses) = if incr {
        (&st.incr_hits, &st.incr_misses)
    } else {
        (&st.decr_hits, &st.decr_misses)
    };
    let code = match r {
        ArithResult::Value { value, cas } => {
            let created = !existed;
            if !created {
                bump(hits, 1);
            }
            // T applies at its place on the line: a created item keeps N's
            // expiry when N came after T.
            let apply_t = !created || o.pos_t > o.pos_n;
            let op = MetaGet {
                touch: o.ttl.filter(|_| apply_t).map(rel),
                ..MetaGet::default()
            };
            let before = shard.meta_get(h, key, now, &op).map(|(it, _)| it.exptime);
            drop(shard);
            if o.opaque_too_long {
                // memcached reports this only after the update.
                error(ErrorKind::Client(meta::E_OPAQUE), out);
                return;
            }
            let mut digits = [0u8; 20];
            let value = crate::protocol::fmt_u64(value, &mut digits);
            let r = Reply {
                code: if o.value { Code::Va } else { Code::Hd },
                key,
                value,
                cas,
                ttl: if created {
                    -1
                } else {
                    before.map_or(-1, |e| remaining(e, now))
                },
                ttl_touch: o.ttl.map_or(-1, |e| remaining(rel(e), now)),
                ttl_vivify: o.vivify.map_or(-1, |e| remaining(rel(e), now)),
                created,
                ..Reply::default()
            };
            encode(m, &r, out);
            return;
        }
        ArithResult::NotFound => {
            bump(misses, 1);
            Code::Nf
        }
        ArithResult::Exists => Code::Ex,
        ArithResult::NonNumeric => {
            drop(shard);
            error(ErrorKind::NonNumeric, out);
            return;
        }
        ArithResult::OutOfMemory => {
            drop(shard);
            error(ErrorKind::Server("SERVER_ERROR out of memory"), out);
            return;
        }
    };
    drop(shard);
    if o.opaque_too_long {
        error(ErrorKind::Client(meta::E_OPAQUE), out);
        return;
    }
    let r = Reply {
        code,
        key,
        ..Reply::default()
    };
    encode(m, &r, out);
}

fn debug(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) {
    bump(&env.stats.cmd_meta, 1);
    let cfg = env.shared.store.config();
    let (mut shard, h) = env.shared.store.lock(key);
    match shard.meta_get(h, key, now, &MetaGet::default()) {
        Some((it, _)) => {
            let size = item_total(it.key.len(), it.value.len(), it.flags);
            let d = DebugInfo {
                exp: remaining(it.exptime, now),
                la: now.saturating_sub(it.atime),
                cas: it.cas,
                fetched: it.fetched,
                cls: slab_class(size, cfg.chunk_size as u64, cfg.growth_factor),
                size,
            };
            encode_debug(key, m.opts.base64, &d, out);
        }
        None => encode_miss(out),
    }
}

/// memcached's ITEM_ntotal: 48-byte header, 8-byte CAS, key + NUL,
/// value + CRLF, 4 bytes of client flags when they are non-zero.
pub(crate) fn item_total(nkey: usize, nval: usize, flags: u32) -> u64 {
    crate::item::total(nkey, flags, nval) as u64
}

/// The slab class memcached would put an item of `total` bytes in, given
/// `-n` (`chunk`) and `-f` (`factor`): classes start at 48 + chunk bytes,
/// grow by `factor` (8-byte aligned) up to half a page; larger items are
/// chunked into the largest class.
pub(crate) fn slab_class(total: u64, chunk: u64, factor: f64) -> u32 {
    let mut size = 48 + chunk;
    let mut cls = 1u32;
    loop {
        if size as f64 >= SLAB_CHUNK_MAX as f64 / factor {
            // the largest class holds slab_chunk_max (and chunked items)
            return cls;
        }
        if !size.is_multiple_of(8) {
            size += 8 - size % 8;
        }
        if total <= size {
            return cls;
        }
        size = (size as f64 * factor) as u64;
        cls += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_classes_match_memcached_defaults() {
        // memcached -n 48 -f 1.25: 96, 120, 152, 192, 240, 304, ...
        assert_eq!(slab_class(65, 48, 1.25), 1);
        assert_eq!(slab_class(96, 48, 1.25), 1);
        assert_eq!(slab_class(97, 48, 1.25), 2);
        assert_eq!(slab_class(120, 48, 1.25), 2);
        assert_eq!(slab_class(121, 48, 1.25), 3);
        assert_eq!(slab_class(1 << 20, 48, 1.25), 39);
        assert_eq!(item_total(3, 3, 5), 69);
        assert_eq!(item_total(3, 3, 0), 65);
    }
}
