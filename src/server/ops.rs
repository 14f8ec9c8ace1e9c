//! memcached's operator switches, enforced with memcached 1.6.18's replies:
//! `-C` (no CAS), `-F` (no `flush_all`), `-X` (no dumps), `-W` (no
//! `watch`), `-A` (the `shutdown` command).
//!
//! The executor calls [`gate`] first for every request, but only when one of
//! the switches is set ([`GATED`], one relaxed load otherwise); `env::emit`
//! zeroes reply CAS values when CAS is off.

use super::env::{emit, Env, Next, CRAWLER_ON, CRAWLER_SLEEP, CRAWLER_TOCRAWL};
use crate::config::Config;
use crate::protocol::meta::{self, Code, MetaCommand, Reply, Verb};
use crate::protocol::StatsGroup;
use crate::protocol::{
    binary, fields, Command, Ctx, ErrorKind, Request, Response, StoreMode, MAX_KEY_LEN,
};
use crate::stats::{bump, count_delete, count_store};
use crate::store::{DeleteResult, MetaGet, StoreResult};
use crate::time;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Some switch is set: the executor asks [`gate`] about each request.
pub static GATED: AtomicBool = AtomicBool::new(false);

/// Apply the configuration's run-time switches (once, at start-up).
pub fn init(cfg: &Config) {
    super::env::CAS_OFF.store(!cfg.use_cas, Relaxed);
    GATED.store(
        !cfg.use_cas || !cfg.flush_enabled || !cfg.dump_enabled,
        Relaxed,
    );
    CRAWLER_ON.store(cfg.ext.lru_crawler, Relaxed);
    CRAWLER_SLEEP.store(cfg.ext.lru_crawler_sleep, Relaxed);
    CRAWLER_TOCRAWL.store(cfg.ext.lru_crawler_tocrawl, Relaxed);
    super::detail::init(cfg);
}

fn line(out: &mut Vec<u8>, ctx: &Ctx, s: &[u8]) {
    if !ctx.noreply {
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    }
}

/// What [`gate`] decided about a request.
pub enum Gate<'a> {
    /// Answered (or refused) here; the connection goes on with this.
    Done(Next),
    /// Run this request instead (memcached's `-C` reading of it).
    Run(Request<'a>),
}

/// Refuse or answer a request a switch forbids; `None` lets it through.
pub fn gate<'a>(req: &Request<'a>, env: &Env<'_>, out: &mut Vec<u8>) -> Option<Gate<'a>> {
    let cfg = &env.shared.config;
    let ctx = &req.ctx;
    match req.cmd {
        Command::FlushAll { .. } if !cfg.flush_enabled => {
            if ctx.binary {
                // memcached: "Auth failure.", not counted.
                emit(ctx, Response::Error(ErrorKind::AuthError), out);
            } else {
                // memcached counts the refused flush in cmd_flush.
                bump(&env.stats.cmd_flush, 1);
                line(out, ctx, b"CLIENT_ERROR flush_all not allowed");
            }
        }
        Command::Stats(StatsGroup::CacheDump(_)) if !cfg.dump_enabled => {
            line(out, ctx, b"CLIENT_ERROR stats cachedump not allowed")
        }
        Command::LruCrawler { args } if !cfg.dump_enabled => {
            let f = fields::<2>(args);
            if !(f.n == 2 && f.v[0] == b"metadump") {
                return None;
            }
            if !CRAWLER_ON.load(Relaxed) {
                line(out, ctx, b"CLIENT_ERROR lru crawler disabled");
            } else {
                line(out, ctx, b"ERROR metadump not allowed");
            }
        }
        _ if cfg.use_cas => return None,
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            cas,
        } if ctx.binary && cas != 0 => {
            // memcached -C: a binary set/add/replace's CAS is dropped (its
            // items have no CAS field), so it stores as its opcode says.
            let mode = match ctx.opcode {
                binary::op::SET | binary::op::SETQ => StoreMode::Set,
                binary::op::ADD | binary::op::ADDQ => StoreMode::Add,
                binary::op::REPLACE | binary::op::REPLACEQ => StoreMode::Replace,
                _ => mode,
            };
            let req = Request {
                cmd: Command::Store {
                    mode,
                    key,
                    flags,
                    exptime,
                    data,
                    cas: 0,
                },
                ctx: req.ctx,
            };
            return Some(Gate::Run(req));
        }
        Command::Store { mode, key, .. } if mode == StoreMode::Cas => {
            // memcached -C: items carry no CAS, a compare never matches.
            let r = if exists(key, env) {
                StoreResult::Exists
            } else {
                StoreResult::NotFound
            };
            count_store(env.stats, mode.into(), true, &r);
            let resp = match r {
                StoreResult::Exists => Response::Exists,
                _ => Response::NotFound,
            };
            emit(ctx, resp, out);
        }
        Command::Delete { key, cas } | Command::Arith { key, cas, .. } if cas != 0 => {
            let found = exists(key, env);
            if let Command::Delete { .. } = req.cmd {
                let r = if found {
                    DeleteResult::Exists
                } else {
                    DeleteResult::NotFound
                };
                count_delete(env.stats, &r, false, false);
            }
            emit(
                ctx,
                if found {
                    Response::Exists
                } else {
                    Response::NotFound
                },
                out,
            );
        }
        Command::Meta(ref m) => return meta_compare(m, env, out).map(Gate::Done),
        _ => return None,
    }
    Some(Gate::Done(Next::Continue))
}

/// Is `key` live? (Reads only: no bump, no counters.)
fn exists(key: &[u8], env: &Env<'_>) -> bool {
    let mut shard = env.shared.store.lock(key);
    shard
        .meta_get(key, time::now(), &MetaGet::default())
        .is_some()
}

/// `-C`: a meta store, delete or arith with `C<cas>` (a compare that never
/// matches: `EX` on a live item, `NF` on a missing one).
fn meta_compare(m: &MetaCommand<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Option<Next> {
    if m.opts.compare_cas.is_none()
        || !matches!(m.verb, Verb::Set | Verb::Delete | Verb::Arith)
        || m.opts.too_large
    {
        return None;
    }
    let mut kb = [0u8; MAX_KEY_LEN];
    let key = m.key(&mut kb);
    let found = exists(key, env);
    match m.verb {
        Verb::Set => {
            let r = if found {
                StoreResult::Exists
            } else {
                StoreResult::NotFound
            };
            count_store(env.stats, StoreMode::Set.into(), true, &r);
        }
        Verb::Delete => {
            let r = if found {
                DeleteResult::Exists
            } else {
                DeleteResult::NotFound
            };
            count_delete(env.stats, &r, false, false);
        }
        _ => {}
    }
    let r = Reply {
        code: if found { Code::Ex } else { Code::Nf },
        key,
        ..Reply::default()
    };
    meta::encode(m, &r, out);
    Some(Next::Continue)
}

/// `shutdown [graceful]` (`-A`), memcached's replies. Enabled, it stops the
/// server as SIGTERM does (systemd hears `STOPPING=1`) and closes the
/// asking connection without a reply.
pub fn shutdown(args: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Next {
    let ctx = Ctx::default();
    if !env.shared.config.enable_shutdown {
        line(out, &ctx, b"ERROR: shutdown not enabled");
        return Next::Continue;
    }
    let f = fields::<1>(args);
    match (f.n, f.v[0]) {
        (0, _) | (1, b"graceful") => {
            super::notify::stopping("shutdown command");
            env.shared
                .shutdown
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Next::Close
        }
        _ => {
            line(out, &ctx, b"CLIENT_ERROR invalid shutdown mode");
            Next::Continue
        }
    }
}

/// `cache_memlimit <MiB> [noreply]`: memcached's replies; a new limit for
/// the shared page budget. Growing takes effect at once; shrinking frees
/// the page pool at once and the shards' tickers give pages back (evicting
/// as needed) until the budget is within the new limit.
pub fn memlimit(args: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Next {
    // memcached: one or two words after the command, else a plain ERROR.
    let f = fields::<2>(args);
    if f.n == 0 || f.n > 2 {
        line(out, &Ctx::default(), b"ERROR");
        return Next::Continue;
    }
    let ctx = Ctx {
        noreply: f.v[f.n - 1] == b"noreply",
        ..Ctx::default()
    };
    match crate::protocol::strtoul32(f.v[0]) {
        None => line(out, &ctx, b"ERROR"),
        Some(m) if m < 8 => line(
            out,
            &ctx,
            b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m",
        ),
        Some(m) if m > 1_000_000_000 => line(
            out,
            &ctx,
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes",
        ),
        Some(m) => {
            env.shared.store.budget().set_limit((m as usize) << 20);
            if env.shared.verbosity.load(Relaxed) > 0 {
                eprintln!("maxbytes adjusted to {m}m");
            }
            line(out, &ctx, b"OK");
        }
    }
    Next::Continue
}

/// `shutdown ...`, `watch ...` and `cache_memlimit ...`.
pub fn command(
    name: &[u8],
    args: &[u8],
    env: &Env<'_>,
    conn: &mut super::env::ConnState,
    out: &mut Vec<u8>,
) -> Next {
    match name {
        b"shutdown" => shutdown(args, env, out),
        b"cache_memlimit" => memlimit(args, env, out),
        _ => super::watch::command(args, env, conn, out),
    }
}
