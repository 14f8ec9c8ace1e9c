//! The executor: one [`Request`] in, responses appended to the connection's
//! output buffer. Protocol agnostic: the request's [`Ctx`] picks the encoder.
//!
//! A table operation locks the key's shard, does its work and encodes the
//! reply (values are copied straight from the shard into the output buffer)
//! before the lock is released. Nothing here awaits or allocates per request.

use super::env::{emit, ConnState, Env, Next, GET_SLICE_BYTES, GET_SLICE_KEYS};
use crate::protocol::{
    binary, tokens, Command, Ctx, ErrorKind, Keys, Request, Response, StatsGroup, StoreMode,
};
use crate::sasl;
use crate::stats::{
    bump, count_arith, count_delete, count_get, count_store, count_too_large, count_touch,
};
use crate::store::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, Reassign, StoreRequest, StoreResult,
};
use crate::time;
use std::sync::atomic::Ordering::Relaxed;

/// Execute one request.
pub fn execute(req: &Request<'_>, env: &Env<'_>, conn: &mut ConnState, out: &mut Vec<u8>) -> Next {
    let ctx = &req.ctx;
    let st = env.stats;
    let store = &env.shared.store;
    if env.shared.config.sasl
        && !conn.authenticated
        && binary::requires_auth(ctx)
        // Broken framing is answered as such first (memcached checks it
        // before authentication).
        && !matches!(
            req.cmd,
            Command::Close(None) | Command::Close(Some(ErrorKind::UnknownCommand))
        )
    {
        // memcached answers "Auth failure." and drops the connection.
        emit(ctx, Response::Error(ErrorKind::AuthError), out);
        return Next::Close;
    }
    // -C, -F, -X: requests those switches refuse or answer differently.
    if super::ops::GATED.load(Relaxed) {
        match super::ops::gate(req, env, out) {
            None => {}
            Some(super::ops::Gate::Done(next)) => return next,
            Some(super::ops::Gate::Run(instead)) => return execute(&instead, env, conn, out),
        }
    }
    match req.cmd {
        Command::Get { .. } => return resume_get(req, env, 0, out),
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            cas,
        } => {
            super::detail::set(key);
            let now = time::now();
            let exp = time::exptime_to_rel(exptime, now);
            let mut shard = store.lock(key);
            let req = StoreRequest {
                flags,
                exptime: exp,
                cas,
                ..StoreRequest::new(mode.into(), key, data)
            };
            let r = shard.store(&req, now);
            drop(shard);
            count_store(st, mode.into(), mode == StoreMode::Cas || cas != 0, &r);
            let resp = match r {
                StoreResult::Stored { cas, .. } => Response::Stored { cas },
                StoreResult::NotStored => Response::NotStored,
                StoreResult::Exists => Response::Exists,
                StoreResult::NotFound => Response::NotFound,
                StoreResult::TooLarge => Response::StoreFailed(ErrorKind::TooLarge),
                StoreResult::OutOfMemory => Response::StoreFailed(ErrorKind::OutOfMemory),
            };
            emit(ctx, resp, out);
        }
        Command::Delete { key, cas } => {
            super::detail::del(key);
            let now = time::now();
            let mut shard = store.lock(key);
            let req = DeleteRequest {
                cas,
                ..DeleteRequest::new(key)
            };
            let r = shard.delete(&req, now);
            drop(shard);
            count_delete(st, &r, false, false);
            let resp = match r {
                DeleteResult::Deleted => Response::Deleted,
                DeleteResult::NotFound => Response::NotFound,
                DeleteResult::Exists => Response::Exists,
            };
            emit(ctx, resp, out);
        }
        Command::Arith {
            key,
            incr,
            delta,
            initial,
            cas,
        } => {
            let now = time::now();
            let initial = initial.map(|(v, e)| (v, time::exptime_to_rel(e, now)));
            let mut shard = store.lock(key);
            let req = ArithRequest {
                initial,
                cas,
                ..ArithRequest::new(key, incr, delta)
            };
            let r = shard.arith(&req, now);
            drop(shard);
            count_arith(st, incr, &r, false);
            let resp = match r {
                ArithResult::Value { value, cas, .. } => Response::Numeric { value, cas },
                ArithResult::NotFound => Response::NotFound,
                ArithResult::NonNumeric => Response::Error(ErrorKind::NonNumeric),
                ArithResult::Exists => Response::Exists,
                ArithResult::OutOfMemory => Response::Error(ErrorKind::OutOfMemory),
            };
            emit(ctx, resp, out);
        }
        Command::Touch { key, exptime } => {
            let now = time::now();
            let exp = time::exptime_to_rel(exptime, now);
            let mut shard = store.lock(key);
            let r = shard.touch(key, exp, now);
            drop(shard);
            count_touch(st, r.is_some());
            let resp = match r {
                Some(cas) => Response::Touched { cas },
                None => Response::NotFound,
            };
            emit(ctx, resp, out);
        }
        Command::FlushAll { delay } => {
            bump(&st.cmd_flush, 1);
            let Some(delay) = delay else {
                emit(ctx, Response::Error(ErrorKind::InvalidExptime), out);
                return Next::Continue;
            };
            let now = time::now();
            let at = if delay > 0 {
                time::exptime_to_rel(delay, now)
            } else {
                now
            };
            store.flush_all(at, now);
            emit(ctx, Response::Ok, out);
        }
        Command::Version => emit(ctx, Response::Version(super::VERSION), out),
        Command::RefreshCerts => super::tls::refresh_certs(env, ctx, out),
        Command::Verbosity { level } => {
            env.shared
                .verbosity
                .store(level, std::sync::atomic::Ordering::Relaxed);
            emit(ctx, Response::Ok, out)
        }
        Command::Quit => {
            emit(ctx, Response::Quit, out);
            return Next::Close;
        }
        Command::Noop => emit(ctx, Response::Noop, out),
        Command::Stats(StatsGroup::CacheDump(arg)) => super::admin::cachedump(arg, env, out),
        Command::Stats(StatsGroup::Extstore) => super::admin::extstore(out),
        Command::Stats(StatsGroup::Conns) => super::conns::stats(env, ctx, conn.fd, out),
        Command::Stats(group) => super::stats_cmd::stats(group, env, ctx, out),
        Command::LeaseGet { key } => super::admin::lease_get(key, env, out),
        Command::LeaseSet {
            key,
            token,
            flags,
            exptime,
            data,
        } => super::admin::lease_set(key, token, flags, exptime, data, ctx, env, out),
        Command::MetaGetInfo { key } => super::admin::metaget(key, env, out),
        Command::LruCrawler { args } => {
            return super::admin::lru_crawler(args, env, conn.held, out)
        }
        Command::Ops { name, args } => return super::ops::command(name, args, env, conn, out),
        Command::Slabs { args } => slabs(args, env, ctx, out),
        Command::Meta(ref m) => return super::meta_exec::execute(m, ctx, env, out),
        Command::SaslListMechs | Command::SaslAuth { .. } | Command::SaslStep { .. } => {
            sasl(&req.cmd, ctx, env, conn, out)
        }
        Command::Close(e) => {
            if let Some(e) = e {
                emit(ctx, Response::Error(e), out);
            }
            return Next::Close;
        }
        // memcached closes a connection whose line is too long, without a reply.
        Command::Error(ErrorKind::LineTooLong) => return Next::Close,
        Command::Error(e) => emit(ctx, Response::Error(e), out),
        Command::Swallow {
            error,
            skip,
            unlink,
        } => {
            // memcached answers SASL opcodes "unknown command" when SASL is
            // off, before it looks at the body's size.
            let sasl_off = !env.shared.config.sasl && binary::is_sasl_auth(ctx);
            let error = if sasl_off {
                ErrorKind::UnknownCommand
            } else {
                error
            };
            if error == ErrorKind::TooLarge {
                count_too_large(st);
            }
            if let Some(key) = unlink {
                // memcached counts the set for its prefix before it finds
                // the item too large.
                super::detail::set(key);
                let mut shard = store.lock(key);
                shard.delete(&DeleteRequest::new(key), time::now());
            }
            emit(ctx, Response::Error(error), out);
            // Swallow a block of a size a client may plausibly have sent;
            // past that, close instead of reading gigabytes (the block is
            // never parsed as commands either way).
            if !crate::protocol::may_swallow(skip, env.shared.config.max_item_size) {
                return Next::Close;
            }
            return Next::Skip(skip);
        }
    }
    Next::Continue
}

/// Go on with a request that answered `Next::More(at)`: a multi-get or a
/// `lru_crawler metadump`.
pub fn resume(req: &Request<'_>, env: &Env<'_>, at: usize, out: &mut Vec<u8>) -> Next {
    match req.cmd {
        Command::LruCrawler { args } => super::admin::resume_metadump(args, env, at, out),
        _ => resume_get(req, env, at, out),
    }
}

/// Serve a retrieval's keys from byte offset `from` of its key list: until
/// the list ends (then `END` follows and the answer is `Continue`) or a slice
/// is done (`More` with the offset of the next key). A value the output
/// buffer cannot grow for closes the connection (counted as
/// `response_obj_oom`): part of the reply may be on the wire already.
pub fn resume_get(req: &Request<'_>, env: &Env<'_>, from: usize, out: &mut Vec<u8>) -> Next {
    let Command::Get {
        keys,
        with_cas,
        touch,
    } = req.cmd
    else {
        return Next::Continue;
    };
    let ctx = &req.ctx;
    let st = env.stats;
    let store = &env.shared.store;
    let now = time::now();
    let exp = touch.map(|e| time::exptime_to_rel(e, now));
    let (list, one) = match keys {
        Keys::One(k) => (k, true),
        Keys::Spaced(s) => (s, false),
    };
    let mut pos = from;
    let mut served = 0;
    loop {
        // The next key: the whole list for a single key, else the next
        // space-separated token.
        let key = if one {
            if pos > 0 {
                break;
            }
            pos = list.len().max(1);
            list
        } else {
            while pos < list.len() && list[pos] == b' ' {
                pos += 1;
            }
            if pos >= list.len() {
                break;
            }
            let end = memchr::memchr(b' ', &list[pos..]).map_or(list.len(), |i| pos + i);
            let k = &list[pos..end];
            pos = end;
            k
        };
        if served == GET_SLICE_KEYS || (served > 0 && out.len() >= GET_SLICE_BYTES) {
            return Next::More(key.as_ptr() as usize - list.as_ptr() as usize);
        }
        served += 1;
        let mut shard = store.lock(key);
        match shard.get(key, now, exp) {
            Some(it) => {
                // memcached counts gat/gats as touches, not gets (a hit is a
                // hit even if its reply cannot be buffered below).
                count_get(st, exp.is_some(), true);
                super::detail::get(key, true);
                // Room for the header line (or binary header) and the value,
                // asked for without aborting if the allocator says no.
                if out.try_reserve(it.value.len() + it.key.len() + 96).is_err() {
                    drop(shard);
                    env.shared.stats.response_obj_oom.fetch_add(1, Relaxed);
                    return Next::Close;
                }
                emit(
                    ctx,
                    Response::Value {
                        key: it.key,
                        flags: it.flags,
                        cas: it.cas,
                        data: it.value,
                        with_cas,
                    },
                    out,
                );
            }
            None => {
                drop(shard);
                count_get(st, exp.is_some(), false);
                super::detail::get(key, false);
                emit(ctx, Response::Miss { key }, out);
            }
        }
    }
    emit(ctx, Response::End, out);
    Next::Continue
}

/// `slabs reassign <src> <dst>` / `slabs automove <0|1|2>`, memcached's
/// replies (a text command).
fn slabs(args: &[u8], env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let mut t = args
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty() && *t != b"\r" && *t != b"\n");
    let num =
        |t: Option<&[u8]>| -> Option<i64> { std::str::from_utf8(t?).ok()?.trim().parse().ok() };
    let store = &env.shared.store;
    // memcached: `slabs reassign` takes exactly two arguments, else ERROR.
    let argc = tokens(args).count();
    let reply: &[u8] = match t.next() {
        Some(b"reassign") if argc != 3 => b"ERROR",
        Some(b"reassign") if !env.shared.config.ext.slab_reassign => {
            b"CLIENT_ERROR slab reassignment disabled"
        }
        Some(b"reassign") => match (num(t.next()), num(t.next())) {
            (Some(src), Some(dst)) => match store.reassign(src, dst) {
                Reassign::Ok => b"OK",
                Reassign::Busy => b"BUSY currently processing reassign request",
                Reassign::BadClass => b"BADCLASS invalid src or dst class id",
                Reassign::NoSpare => b"NOSPARE source class has no spare pages",
                Reassign::Same => b"SAME src and dst class are identical",
            },
            _ => b"CLIENT_ERROR bad command line format",
        },
        Some(b"automove") => match t.next() {
            // memcached: a level it cannot read is a format error, a number
            // other than 0, 1, 2 is ERROR.
            Some(w) => match crate::protocol::strtoul32(w) {
                Some(level @ 0..=2) => {
                    store.set_automove(level as u8);
                    b"OK"
                }
                Some(_) => b"ERROR",
                None if w == b"ratio" => b"ERROR",
                None => b"CLIENT_ERROR bad command line format",
            },
            None => b"ERROR",
        },
        _ => b"ERROR",
    };
    emit(ctx, Response::Line(reply), out);
}

/// SASL list mechanisms / auth / step (binary only).
fn sasl(cmd: &Command<'_>, ctx: &Ctx, env: &Env<'_>, conn: &mut ConnState, out: &mut Vec<u8>) {
    let cfg = &env.shared.config;
    if !cfg.sasl {
        emit(ctx, Response::Error(ErrorKind::UnknownCommand), out);
        return;
    }
    // memcached (re)initialises the connection's SASL state on every SASL
    // opcode it gets to: any attempt, even a failed one, drops an earlier login.
    let (mech, data, step) = match *cmd {
        Command::SaslListMechs => {
            conn.authenticated = false;
            emit(ctx, Response::SaslMechs(sasl::MECHS), out);
            return;
        }
        Command::SaslAuth { mech, data } => (mech, data, false),
        Command::SaslStep { mech, data } => (mech, data, true),
        _ => return,
    };
    if mech.len() > sasl::MAX_MECH_LEN {
        emit(ctx, Response::Error(ErrorKind::InvalidArguments), out);
        return;
    }
    conn.authenticated = false;
    // Mechanism names are case-insensitive (Cyrus SASL accepts "plain").
    let result =
        if !mech.eq_ignore_ascii_case(sasl::MECHS.as_bytes()) || (step && !conn.sasl_started) {
            sasl::Plain::Fail
        } else if step && data.is_empty() {
            // PLAIN has nothing more to ask for.
            sasl::Plain::Fail
        } else {
            sasl::plain(&cfg.sasl_db, data)
        };
    conn.sasl_started = result == sasl::Plain::Continue;
    match result {
        sasl::Plain::Ok => {
            conn.authenticated = true;
            bump(&env.stats.auth_cmds, 1);
            emit(ctx, Response::AuthOk, out);
        }
        sasl::Plain::Continue => emit(ctx, Response::AuthContinue, out),
        sasl::Plain::Fail => {
            bump(&env.stats.auth_cmds, 1);
            bump(&env.stats.auth_errors, 1);
            emit(ctx, Response::Error(ErrorKind::AuthError), out);
        }
    }
}

/// A protocol's store verb → the store's semantics (one to one).
impl From<StoreMode> for crate::store::StoreMode {
    fn from(m: StoreMode) -> Self {
        use crate::store::StoreMode as S;
        match m {
            StoreMode::Set => S::Set,
            StoreMode::Add => S::Add,
            StoreMode::Replace => S::Replace,
            StoreMode::Append => S::Append,
            StoreMode::Prepend => S::Prepend,
            StoreMode::Cas => S::Cas,
        }
    }
}
