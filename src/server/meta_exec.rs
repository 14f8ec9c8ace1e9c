//! Executes meta commands (mg, ms, md, ma, me).
//!
//! Each command locks the key's shard once, does its table operation(s)
//! through the store's meta methods (the stale/win state machine lives in
//! the store, see `store::MetaGet`), and encodes its reply with
//! `protocol::meta::encode` before the lock is released. No heap allocation
//! here: a base64 key is decoded into a stack buffer.
//!
//! Counters are counted by `stats::count_*`, the same steps as the text and
//! binary commands (memcached 1.6.18's rules): mg counts as a get (a hit
//! with `T` as a touch), ms as a set, md as a delete, ma as incr/decr;
//! `cmd_meta` counts only `me`.

use super::env::{item_total, slab_class, Env, Next};
use crate::protocol::ascii::error_text;
use crate::protocol::meta::{
    self, encode_debug, encode_miss, Code, DebugInfo, MetaCommand, Reply, Verb,
};
use crate::protocol::{Ctx, ErrorKind, MAX_KEY_LEN};
use crate::stats::{bump, count_arith, count_delete, count_get, count_store, count_too_large};
use crate::store::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, MetaGet, Shard, StoreMode,
    StoreRequest, StoreResult,
};
use crate::time;

/// Encode a meta reply (with `-C`, its CAS is 0).
fn encode(m: &MetaCommand<'_>, r: &Reply<'_>, out: &mut Vec<u8>) {
    meta::encode(m, &super::env::meta_reply(r), out);
}

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
    let mut shard = env.shared.store.lock(key);
    match shard.meta_get(key, now, &op) {
        Some((it, oc)) => {
            count_get(st, o.ttl.is_some(), true);
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
            // memcached: a miss is a get miss, with or without T.
            count_get(st, false, false);
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
        count_too_large(st);
        let mut shard = store.lock(key);
        shard.delete(&DeleteRequest::new(key), now);
        drop(shard);
        error(ErrorKind::TooLarge, out);
        let skip = o.data_len + 2;
        if !crate::protocol::may_swallow(skip, env.shared.config.max_item_size) {
            return Next::Close;
        }
        return Next::Skip(skip);
    }
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
    let req = StoreRequest {
        mode,
        key,
        flags: o.client_flags,
        exptime,
        data: m.data,
        cas,
        new_cas: o.new_cas.unwrap_or(0),
        invalidate: o.invalidate,
        vivify: o
            .vivify
            .filter(|_| appending)
            .map(|e| time::exptime_to_rel(e, now)),
    };
    let mut shard = store.lock(key);
    let r = if o.compare_cas == Some(0) && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        // `C0` is a compare against CAS 0, which no item has (memcached
        // 1.6.18: EX on an existing item, NF on a missing one); a CAS of 0
        // below means "no compare".
        zero_cas(&mut shard, key, now)
    } else {
        shard.store(&req, now)
    };
    drop(shard);
    count_store(st, mode, o.compare_cas.is_some(), &r);
    // The stored item's size (after append/prepend, the combined one).
    let size = match r {
        StoreResult::Stored { len, .. } => len,
        _ => m.data.len(),
    };
    let (code, new_cas) = match r {
        StoreResult::Stored { cas, .. } => (Code::Hd, cas),
        StoreResult::NotStored | StoreResult::TooLarge => (Code::Ns, 0),
        StoreResult::Exists => (Code::Ex, 0),
        StoreResult::NotFound => (Code::Nf, 0),
        StoreResult::OutOfMemory => {
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
fn zero_cas(shard: &mut Shard, key: &[u8], now: u32) -> StoreResult {
    match shard.meta_get(key, now, &MetaGet::default()) {
        Some(_) => StoreResult::Exists,
        None => StoreResult::NotFound,
    }
}

fn delete(m: &MetaCommand<'_>, key: &[u8], now: u32, env: &Env<'_>, out: &mut Vec<u8>) {
    let o = &m.opts;
    let st = env.stats;
    let req = DeleteRequest {
        key,
        cas: o.compare_cas.unwrap_or(0),
        invalidate: o.invalidate,
        touch: o.ttl.map(|e| time::exptime_to_rel(e, now)),
        new_cas: o.new_cas.unwrap_or(0),
        remove_value: o.remove_value,
        flags: o.client_flags,
        exptime: time::exptime_to_rel(o.ttl.unwrap_or(0), now),
    };
    let mut shard = env.shared.store.lock(key);
    let r = if o.compare_cas == Some(0) {
        // `C0` compares against CAS 0: EX on an existing item, as memcached.
        match zero_cas(&mut shard, key, now) {
            StoreResult::Exists => DeleteResult::Exists,
            _ => DeleteResult::NotFound,
        }
    } else {
        shard.delete(&req, now)
    };
    drop(shard);
    count_delete(st, &r, o.invalidate, true);
    let code = match r {
        DeleteResult::Deleted => Code::Hd,
        DeleteResult::NotFound => Code::Nf,
        DeleteResult::Exists => Code::Ex,
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
    // T applies at its place on the line: a created item takes T's expiry
    // when T came after N, else N's.
    let create_exp = |n: i64| match o.ttl {
        Some(t) if o.pos_t > o.pos_n => rel(t),
        _ => rel(n),
    };
    let req = ArithRequest {
        key,
        incr,
        delta: o.delta,
        initial: o.vivify.map(|n| (o.initial, create_exp(n))),
        cas: o.compare_cas.unwrap_or(0),
        new_cas: o.new_cas.unwrap_or(0),
        touch: o.ttl.map(rel),
    };
    let r = env.shared.store.lock(key).arith(&req, now);
    let created = matches!(r, ArithResult::Value { created: true, .. });
    count_arith(st, incr, &r, created);
    let code = match r {
        ArithResult::Value {
            value,
            cas,
            created,
            exptime,
        } => {
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
                ttl: if created { -1 } else { remaining(exptime, now) },
                ttl_touch: o.ttl.map_or(-1, |e| remaining(rel(e), now)),
                ttl_vivify: o.vivify.map_or(-1, |e| remaining(rel(e), now)),
                created,
                ..Reply::default()
            };
            encode(m, &r, out);
            return;
        }
        ArithResult::NotFound => Code::Nf,
        ArithResult::Exists => Code::Ex,
        ArithResult::NonNumeric => {
            error(ErrorKind::NonNumeric, out);
            return;
        }
        ArithResult::OutOfMemory => {
            error(ErrorKind::Server("SERVER_ERROR out of memory"), out);
            return;
        }
    };
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
    let mut shard = env.shared.store.lock(key);
    match shard.meta_get(key, now, &MetaGet::default()) {
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
