//! What every part of the executor shares: the request environment
//! ([`Env`]), the connection's answer to a request ([`Next`]) and its
//! per-connection state, the one place that picks a response's encoder
//! ([`emit`]), memcached's item geometry (the size and slab class its stats
//! and dumps print) and the `lru_crawler` settings.
//!
//! Dependency direction inside `server`: `conn` → `exec` (the dispatcher) →
//! `meta_exec`, `stats_cmd`, `admin` → `env`. Nothing here imports from those.

use super::Shared;
use crate::protocol::meta::Reply;
use crate::protocol::{Ctx, Response, StatValue};
use crate::stats::WorkerStats;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Skip this many more input bytes (a data block being swallowed).
    Skip(usize),
    /// Flush the output, then close.
    Close,
    /// A multi-get stopped after a slice of its keys (see [`GET_SLICE_KEYS`],
    /// [`GET_SLICE_BYTES`]); its reply goes on with [`resume_get`](super::exec::resume_get) from this
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
    /// The connection's socket (`stats conns` marks the asking one).
    pub fd: i32,
    /// `watch` made this connection a watcher: it stops taking commands
    /// and streams log lines.
    pub watch: Option<std::sync::Arc<super::watch::Watcher>>,
    /// A reply of this read is held, as on memcached's response stack: set
    /// after every command but a get family, `mn` or `quit` (memcached
    /// writes those out at once, emptying the stack; a `noreply` command's
    /// silent reply stays on it), cleared when a new read is parsed.
    /// `lru_crawler metadump` and `watch` refuse while it is set ("cannot
    /// pipeline other commands before ...").
    pub held: bool,
}

/// Whether memcached keeps `req`'s reply on its response stack rather than
/// writing it out at once ([`ConnState::held`]).
pub fn holds(req: &crate::protocol::Request<'_>) -> bool {
    use crate::protocol::Command;
    !matches!(req.cmd, Command::Get { .. } | Command::Noop | Command::Quit)
}

/// Everything a request may touch.
pub struct Env<'a> {
    pub shared: &'a Shared,
    pub stats: &'a WorkerStats,
}

/// Encode one response; the request's protocol picks the bytes.
#[inline]
pub fn emit(ctx: &Ctx, r: Response<'_>, out: &mut Vec<u8>) {
    // `-C`: every CAS in a reply is 0.
    let r = if CAS_OFF.load(Relaxed) { no_cas(r) } else { r };
    crate::protocol::encode(&r, ctx, out);
}

/// Shorthand for a stat line.
pub fn stat<'a>(ctx: &Ctx, name: &'a str, value: StatValue<'a>, out: &mut Vec<u8>) {
    emit(ctx, Response::Stat { name, value }, out);
}

// ---- memcached's item geometry ----

/// memcached's default `slab_chunk_max` (half a 1 MiB page).
const SLAB_CHUNK_MAX: u64 = crate::item::CHUNK_MAX as u64;

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

// ---- lru_crawler settings ----

/// `lru_crawler enable|disable` state. corecached has no crawler thread (the
/// timing wheel expires items within a second); the switch gates `crawl`
/// and `metadump` as memcached's does.
pub static CRAWLER_ON: AtomicBool = AtomicBool::new(true);
/// `lru_crawler sleep` / `tocrawl`: shown by `stats settings`; there is no
/// crawler for them to pace.
pub static CRAWLER_SLEEP: AtomicU32 = AtomicU32::new(100);
pub static CRAWLER_TOCRAWL: AtomicU32 = AtomicU32::new(0);

/// `lru_crawler sleep` and `tocrawl` as set (for `stats settings`).
pub fn crawler_settings() -> (u32, u32) {
    (CRAWLER_SLEEP.load(Relaxed), CRAWLER_TOCRAWL.load(Relaxed))
}

/// `-C`: CAS is off (replies carry CAS 0; compares fail). Set once at
/// start-up by `ops::init`.
pub static CAS_OFF: AtomicBool = AtomicBool::new(false);

/// A response as memcached sends it with `-C`: every CAS is 0.
#[inline]
pub fn no_cas(r: Response<'_>) -> Response<'_> {
    match r {
        Response::Value {
            key,
            flags,
            data,
            with_cas,
            ..
        } => Response::Value {
            key,
            flags,
            cas: 0,
            data,
            with_cas,
        },
        Response::Stored { .. } => Response::Stored { cas: 0 },
        Response::Touched { .. } => Response::Touched { cas: 0 },
        Response::Numeric { value, .. } => Response::Numeric { value, cas: 0 },
        r => r,
    }
}

/// A meta reply with `-C`: `c` prints 0.
#[inline]
pub fn meta_reply<'a>(r: &Reply<'a>) -> Reply<'a> {
    let mut r = *r;
    if CAS_OFF.load(Relaxed) {
        r.cas = 0;
    }
    r
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
