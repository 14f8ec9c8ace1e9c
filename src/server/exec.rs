//! The executor: one [`Request`] in, responses appended to the connection's
//! output buffer. Protocol agnostic: the request's [`Ctx`] picks the encoder.
//!
//! A table operation locks the key's shard, does its work and encodes the
//! reply (values are copied straight from the shard into the output buffer)
//! before the lock is released. Nothing here awaits or allocates per request.

use super::Shared;
use crate::protocol::{
    ascii, binary, tokens, Command, Ctx, ErrorKind, Keys, Request, Response, StatValue, StoreMode,
};
use crate::sasl;
use crate::stats::{bump, WorkerStats};
use crate::store::{ArithResult, DeleteResult, Reassign, StoreResult};
use crate::time;
use std::sync::atomic::Ordering::Relaxed;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Skip this many more input bytes (a data block being swallowed).
    Skip(usize),
    /// Flush the output, then close.
    Close,
    /// A multi-get stopped after a slice of its keys (see [`GET_SLICE_KEYS`],
    /// [`GET_SLICE_BYTES`]); its reply goes on with [`resume_get`] from this
    /// byte offset of its key list once the connection has written (or
    /// yielded).
    More(usize),
}

/// A multi-get hands control back to the connection after this many keys...
pub const GET_SLICE_KEYS: usize = 256;
/// ...or once the output buffer holds this much, whichever comes first, so
/// one request never builds more than one slice (plus one value) of reply.
pub const GET_SLICE_BYTES: usize = 256 * 1024;

/// Per-connection state the executor reads or changes.
#[derive(Debug, Default)]
pub struct ConnState {
    /// SASL: has this connection authenticated?
    pub authenticated: bool,
    /// SASL: an Auth without initial response was answered "continue"; the
    /// credentials come in a Step.
    pub sasl_started: bool,
}

/// Everything a request may touch.
pub struct Env<'a> {
    pub shared: &'a Shared,
    pub stats: &'a WorkerStats,
}

/// Encode one response for the request's protocol.
#[inline]
pub fn emit(ctx: &Ctx, r: Response<'_>, out: &mut Vec<u8>) {
    if ctx.binary {
        binary::encode(&r, ctx, out);
    } else {
        ascii::encode(&r, ctx, out);
    }
}

/// Execute one request.
pub fn execute(req: &Request<'_>, env: &Env<'_>, conn: &mut ConnState, out: &mut Vec<u8>) -> Next {
    let ctx = &req.ctx;
    let st = env.stats;
    let store = &env.shared.store;
    if ctx.binary
        && env.shared.config.sasl
        && !conn.authenticated
        && !binary::allowed_unauthenticated(ctx.opcode)
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
            bump(&st.cmd_set, 1);
            let now = time::now();
            let exp = time::exptime_to_rel(exptime, now);
            let (mut shard, h) = store.lock(key);
            let r = shard.store(h, key, mode.into(), flags, exp, data, cas, now);
            drop(shard);
            let compare = mode == StoreMode::Cas;
            let resp = match r {
                StoreResult::Stored { cas } => {
                    if compare {
                        bump(&st.cas_hits, 1);
                    }
                    Response::Stored { cas }
                }
                StoreResult::NotStored => Response::NotStored,
                StoreResult::Exists => {
                    bump(&st.cas_badval, 1);
                    Response::Exists
                }
                StoreResult::NotFound => {
                    bump(&st.cas_misses, 1);
                    Response::NotFound
                }
                StoreResult::TooLarge => {
                    bump(&st.store_too_large, 1);
                    too_big_or_oom(ctx, mode, ErrorKind::TooLarge)
                }
                StoreResult::OutOfMemory => {
                    bump(&st.store_no_memory, 1);
                    too_big_or_oom(ctx, mode, ErrorKind::OutOfMemory)
                }
            };
            emit(ctx, resp, out);
        }
        Command::Delete { key, cas } => {
            let now = time::now();
            let (mut shard, h) = store.lock(key);
            let r = shard.delete(h, key, cas, now);
            drop(shard);
            let resp = match r {
                DeleteResult::Deleted => {
                    bump(&st.delete_hits, 1);
                    Response::Deleted
                }
                DeleteResult::NotFound => {
                    bump(&st.delete_misses, 1);
                    Response::NotFound
                }
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
            let (mut shard, h) = store.lock(key);
            let r = shard.arith(h, key, incr, delta, initial, cas, now);
            drop(shard);
            let (hits, misses) = if incr {
                (&st.incr_hits, &st.incr_misses)
            } else {
                (&st.decr_hits, &st.decr_misses)
            };
            let resp = match r {
                ArithResult::Value { value, cas } => {
                    bump(hits, 1);
                    Response::Numeric { value, cas }
                }
                ArithResult::NotFound => {
                    bump(misses, 1);
                    Response::NotFound
                }
                ArithResult::NonNumeric => Response::Error(ErrorKind::NonNumeric),
                ArithResult::Exists => Response::Exists,
                ArithResult::OutOfMemory => Response::Error(ErrorKind::OutOfMemory),
            };
            emit(ctx, resp, out);
        }
        Command::Touch { key, exptime } => {
            bump(&st.cmd_touch, 1);
            let now = time::now();
            let exp = time::exptime_to_rel(exptime, now);
            let (mut shard, h) = store.lock(key);
            let r = shard.touch(h, key, exp, now);
            drop(shard);
            let resp = match r {
                Some(cas) => {
                    bump(&st.touch_hits, 1);
                    Response::Touched { cas }
                }
                None => {
                    bump(&st.touch_misses, 1);
                    Response::NotFound
                }
            };
            emit(ctx, resp, out);
        }
        Command::FlushAll { delay } => {
            bump(&st.cmd_flush, 1);
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
        Command::Verbosity { level } => {
            env.shared
                .verbosity
                .store(level, std::sync::atomic::Ordering::Relaxed);
            emit(ctx, Response::Ok, out)
        }
        Command::Quit => {
            // Binary Quit is answered before closing (QuitQ is not).
            if ctx.binary {
                emit(ctx, Response::Ok, out);
            }
            return Next::Close;
        }
        Command::Noop => emit(ctx, Response::Noop, out),
        Command::Stats {
            group: g @ (b"cachedump" | b"extstore"),
            arg,
        } if !ctx.binary => super::admin::stats(g, arg, env, out),
        Command::Stats { group, arg } => super::stats_cmd::stats(group, arg, env, ctx, out),
        Command::LeaseGet { key } => super::admin::lease_get(key, env, out),
        Command::LeaseSet {
            key,
            token,
            flags,
            exptime,
            data,
        } => super::admin::lease_set(key, token, flags, exptime, data, ctx, env, out),
        Command::MetaGetInfo { key } => super::admin::metaget(key, env, out),
        Command::LruCrawler { args } => return super::admin::lru_crawler(args, env, out),
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
            let sasl_off = ctx.binary
                && !env.shared.config.sasl
                && matches!(ctx.opcode, binary::op::SASL_AUTH | binary::op::SASL_STEP);
            let error = if sasl_off {
                ErrorKind::UnknownCommand
            } else {
                error
            };
            if error == ErrorKind::TooLarge {
                bump(&st.store_too_large, 1);
            }
            if let Some(key) = unlink {
                let (mut shard, h) = store.lock(key);
                shard.delete(h, key, 0, time::now());
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
    // memcached counts gat/gats as touches, not gets.
    let (cmd, hits, misses) = if exp.is_some() {
        (&st.cmd_touch, &st.touch_hits, &st.touch_misses)
    } else {
        (&st.cmd_get, &st.get_hits, &st.get_misses)
    };
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
        bump(cmd, 1);
        let (mut shard, h) = store.lock(key);
        match shard.get(h, key, now, exp) {
            Some(it) => {
                // Room for the header line (or binary header) and the value,
                // asked for without aborting if the allocator says no.
                if out.try_reserve(it.value.len() + it.key.len() + 96).is_err() {
                    drop(shard);
                    env.shared.stats.response_obj_oom.fetch_add(1, Relaxed);
                    return Next::Close;
                }
                bump(hits, 1);
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
                bump(misses, 1);
                emit(ctx, Response::Miss { key }, out);
            }
        }
    }
    emit(ctx, Response::End, out);
    Next::Continue
}

/// `slabs reassign <src> <dst>` / `slabs automove <0|1|2>`, memcached's
/// replies (text protocol only).
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
    if !ctx.noreply {
        out.extend_from_slice(reply);
        out.extend_from_slice(b"\r\n");
    }
}

/// A store that failed for size or memory. memcached's binary append and
/// prepend report these as "not stored" (the value itself fitted; the
/// combined item did not).
fn too_big_or_oom(ctx: &Ctx, mode: StoreMode, e: ErrorKind) -> Response<'static> {
    if ctx.binary && matches!(mode, StoreMode::Append | StoreMode::Prepend) {
        Response::NotStored
    } else {
        Response::Error(e)
    }
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

/// Shorthand for a stat line.
pub fn stat<'a>(ctx: &Ctx, name: &'a str, value: StatValue<'a>, out: &mut Vec<u8>) {
    emit(ctx, Response::Stat { name, value }, out);
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
