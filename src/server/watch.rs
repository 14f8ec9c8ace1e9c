//! `watch [fetchers] [mutations] [evictions] [connevents] ...`: memcached
//! 1.6's live log stream, its replies and its line formats.
//!
//! A watcher is a connection that stops taking commands: after `OK` it only
//! receives log lines (what it sends is read and dropped; its EOF ends it).
//! Events happen on any loop (a get on loop 0, an eviction inside shard 1,
//! a connection on loop 1). The producer formats the line once and appends
//! it to each interested watcher's bounded buffer; the watcher's own task
//! drains that buffer on its own loop, polling with a short timer, so no
//! producer ever wakes another core.
//!
//! Cost when nobody watches: one relaxed load of [`Watchers::flags`] (the
//! union of the watchers' flags) per event site. When someone watches: the
//! registry's read lock and each matching watcher's buffer mutex, held for
//! one copy of one line (lock order: shard, registry, buffer; nothing else
//! is taken under them). A watcher too slow to keep up loses lines, counted
//! and announced with a `skipped=N` line before the next one that fits, as
//! memcached does: a watcher holds at most two buffers of [`BUF_SIZE`].

use super::env::{item_total, slab_class, ConnState, Env, Next};
use crate::store::observe::{Evicted, Found, Looked, Observer, Stored};
use crate::store::{StoreMode, StoreResult};
use parking_lot::{Mutex, RwLock};
use std::cell::Cell;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// memcached's log flags (logger.h).
pub const SYSEVENTS: u16 = 1 << 1;
pub const FETCHERS: u16 = 1 << 2;
pub const MUTATIONS: u16 = 1 << 3;
pub const CONNEVENTS: u16 = 1 << 5;
pub const EVICTIONS: u16 = 1 << 6;
pub const RAWCMDS: u16 = 1 << 9;
pub const PROXYREQS: u16 = 1 << 10;
pub const PROXYEVENTS: u16 = 1 << 11;
pub const PROXYUSER: u16 = 1 << 12;

/// memcached's watcher limit (`WATCHER_LIMIT`).
pub const LIMIT: usize = 20;
/// A watcher's buffer (memcached's default `watcher_logbuf_size`).
pub const BUF_SIZE: usize = 256 * 1024;
/// Room kept for a `skipped=N` line in front of a line (memcached's 128).
const SKIP_ROOM: usize = 128;
/// The watcher's poll interval: from this while lines flow...
const POLL_MIN: Duration = Duration::from_millis(2);
/// ...up to this while idle (the longest a peer's EOF goes unnoticed).
const POLL_MAX: Duration = Duration::from_millis(100);

/// memcached's close reasons (`conn_close` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Error,
    Normal,
    IdleTimeout,
    Shutdown,
}

/// Every watcher of the process.
pub struct Watchers {
    /// Union of the watchers' flags: the one load when nobody watches.
    flags: AtomicU16,
    /// memcached's gid: one per logged event (and one per watcher added).
    gid: AtomicU64,
    list: RwLock<Vec<Arc<Watcher>>>,
    /// memcached's `-n` and `-f`: the `clsid` lines print is memcached's.
    chunk: u64,
    factor: f64,
    /// `stats` `log_worker_written` (events logged), `log_watcher_sent`
    /// (lines given to watchers) and `log_watcher_skipped` (lines dropped).
    pub written: AtomicU64,
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
}

/// One watcher: its flags and its buffer.
pub struct Watcher {
    flags: u16,
    out: Mutex<Out>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watcher({:#x})", self.flags)
    }
}

struct Out {
    buf: Vec<u8>,
    /// Lines dropped since the last one that fitted.
    skipped: u64,
}

thread_local! {
    /// The client connection whose request this thread is executing (-1:
    /// none: background work, replication). Set only while someone watches.
    static CLIENT: Cell<i32> = const { Cell::new(-1) };
}

/// Run `f` as the request of client `fd` (lookups and stores it causes are
/// logged with `cfd=fd`). One relaxed load when nobody watches.
#[inline]
pub fn as_client<R>(w: &Watchers, fd: i32, f: impl FnOnce() -> R) -> R {
    if w.flags.load(Relaxed) & (FETCHERS | MUTATIONS) == 0 {
        return f();
    }
    CLIENT.with(|c| c.set(fd));
    let r = f();
    CLIENT.with(|c| c.set(-1));
    r
}

impl Watchers {
    pub fn new(chunk: usize, factor: f64) -> Watchers {
        Watchers {
            flags: AtomicU16::new(0),
            gid: AtomicU64::new(0),
            list: RwLock::new(Vec::new()),
            chunk: chunk as u64,
            factor,
            written: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Does anyone watch any of `flags`?
    #[inline]
    pub fn wants(&self, flags: u16) -> bool {
        self.flags.load(Relaxed) & flags != 0
    }

    /// Number of watchers (`stats` `log_watchers`).
    pub fn count(&self) -> usize {
        self.list.read().len()
    }

    /// Add a watcher; None past the limit.
    fn add(&self, flags: u16) -> Option<Arc<Watcher>> {
        let mut list = self.list.write();
        if list.len() >= LIMIT {
            return None;
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(BUF_SIZE).ok()?;
        // memcached: the watcher's stream starts with OK; events logged
        // before this point are not shown (it takes a gid for that).
        buf.extend_from_slice(b"OK\r\n");
        self.gid.fetch_add(1, Relaxed);
        let w = Arc::new(Watcher {
            flags,
            out: Mutex::new(Out { buf, skipped: 0 }),
        });
        list.push(w.clone());
        self.flags.fetch_or(flags, Relaxed);
        Some(w)
    }

    fn remove(&self, w: &Arc<Watcher>) {
        let mut list = self.list.write();
        list.retain(|x| !Arc::ptr_eq(x, w));
        let union = list.iter().fold(0, |f, x| f | x.flags);
        self.flags.store(union, Relaxed);
    }

    /// Log one event of kind `kind`: the line (after `ts=... gid=... `) is
    /// written by `body`, once, then copied to each watcher of `kind`.
    fn emit(&self, kind: u16, body: impl FnOnce(&mut Line)) {
        if !self.wants(kind) {
            return;
        }
        let gid = self.gid.fetch_add(1, Relaxed) + 1;
        self.written.fetch_add(1, Relaxed);
        let mut l = Line::new();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // memcached: `ts=%lld.%d` (microseconds not zero-padded).
        l.s("ts=")
            .n(ts.as_secs())
            .s(".")
            .n(ts.subsec_micros() as u64);
        l.s(" gid=").n(gid).s(" ");
        body(&mut l);
        l.s("\n");
        let line = l.bytes();
        for w in self.list.read().iter().filter(|w| w.flags & kind != 0) {
            let mut o = w.out.lock();
            if o.buf.len() + line.len() + SKIP_ROOM > BUF_SIZE {
                o.skipped += 1;
                self.skipped.fetch_add(1, Relaxed);
                continue;
            }
            if o.skipped > 0 {
                let mut s = Line::new();
                s.s("skipped=").n(o.skipped).s("\n");
                o.buf.extend_from_slice(s.bytes());
                o.skipped = 0;
            }
            o.buf.extend_from_slice(line);
            self.sent.fetch_add(1, Relaxed);
        }
    }

    fn clsid(&self, key: usize, value: usize, flags: u32) -> u64 {
        // memcached counts the value with its CRLF.
        slab_class(item_total(key, value, flags), self.chunk, self.factor) as u64
    }

    /// A client connection opened (`conn_new`) or closed (`conn_close`);
    /// `addr` is its peer as `stats conns` prints it.
    pub fn conn_event(&self, addr: &str, fd: i32, close: Option<CloseReason>) {
        if !self.wants(CONNEVENTS) {
            return;
        }
        let (rip, rport, transport) = peer(addr);
        self.emit(CONNEVENTS, |l| {
            l.s(if close.is_some() {
                "type=conn_close"
            } else {
                "type=conn_new"
            });
            l.s(" rip=").s(rip).s(" rport=").s(rport);
            l.s(" transport=").s(transport);
            if let Some(r) = close {
                l.s(" reason=").s(match r {
                    CloseReason::Error => "error",
                    CloseReason::Normal => "normal",
                    CloseReason::IdleTimeout => "idle_timeout",
                    CloseReason::Shutdown => "shutdown",
                });
            }
            l.s(" cfd=").i(fd as i64);
        });
    }
}

/// A peer as memcached's log prints it, from its `stats conns` form
/// (`tcp:1.2.3.4:5`, `tcp6:[::1]:5`, `unix:PATH`): (ip, port, transport);
/// a unix socket is `unix`, 0, `local`.
fn peer(addr: &str) -> (&str, &str, &'static str) {
    let tcp = addr
        .strip_prefix("tcp:")
        .or_else(|| addr.strip_prefix("tcp6:"))
        .and_then(|a| a.rsplit_once(':'));
    match tcp {
        Some((ip, port)) => (
            ip.trim_start_matches('[').trim_end_matches(']'),
            port,
            "tcp",
        ),
        None => ("unix", "0", "local"),
    }
}

impl Observer for Watchers {
    #[inline]
    fn lookups(&self) -> bool {
        self.wants(FETCHERS)
    }

    #[inline]
    fn evictions(&self) -> bool {
        self.wants(EVICTIONS)
    }

    #[inline]
    fn stores(&self) -> bool {
        self.wants(MUTATIONS)
    }

    fn looked(&self, x: &Looked<'_>) {
        let fd = CLIENT.with(|c| c.get());
        if fd < 0 {
            return;
        }
        let (status, clsid) = match x.found {
            Found::Hit => ("found", self.clsid(x.key.len(), x.value_len, x.flags)),
            Found::Missing => ("not_found", 0),
            Found::Flushed => ("flushed", 0),
            Found::Expired => ("expired", 0),
        };
        self.emit(FETCHERS, |l| {
            l.s("type=item_get key=").key(x.key).s(" status=").s(status);
            l.s(" clsid=").n(clsid).s(" cfd=").i(fd as i64);
            l.s(" size=").n(x.value_len as u64);
        });
    }

    fn stored(&self, x: &Stored<'_>) {
        let fd = CLIENT.with(|c| c.get());
        if fd < 0 {
            return;
        }
        let status = match x.result {
            StoreResult::Stored { .. } => "stored",
            StoreResult::NotStored => "not_stored",
            StoreResult::Exists => "exists",
            StoreResult::NotFound => "not_found",
            StoreResult::TooLarge => "too_large",
            StoreResult::OutOfMemory => "no_memory",
        };
        let cmd = match x.mode {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas => "cas",
        };
        // memcached: the item's expiry less now, as an unsigned 32-bit number.
        let ttl = match x.exptime {
            0 => 0,
            e => e.wrapping_sub(x.now),
        };
        let clsid = self.clsid(x.key.len(), x.value_len, x.flags);
        self.emit(MUTATIONS, |l| {
            l.s("type=item_store key=")
                .key(x.key)
                .s(" status=")
                .s(status);
            l.s(" cmd=").s(cmd).s(" ttl=").n(ttl as u64);
            l.s(" clsid=").n(clsid).s(" cfd=").i(fd as i64);
            l.s(" size=").n(x.value_len as u64);
        });
    }

    fn evicted(&self, x: &Evicted<'_>) {
        let ttl = match x.exptime {
            0 => -1,
            e => e as i64 - x.now as i64,
        };
        let clsid = self.clsid(x.key.len(), x.value_len, x.flags);
        self.emit(EVICTIONS, |l| {
            l.s("type=eviction key=").key(x.key);
            l.s(" fetch=").s(if x.fetched { "yes" } else { "no" });
            l.s(" ttl=")
                .i(ttl)
                .s(" la=")
                .n(x.now.saturating_sub(x.atime) as u64);
            l.s(" clsid=").n(clsid).s(" size=").n(x.value_len as u64);
        });
    }
}

/// One log line, built on the stack (a key URI-encoded is at most 750
/// bytes; the rest of a line is under 200).
struct Line {
    b: [u8; 1024],
    n: usize,
}

impl Line {
    fn new() -> Line {
        Line { b: [0; 1024], n: 0 }
    }

    fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }

    fn raw(&mut self, s: &[u8]) -> &mut Self {
        let k = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s[..k]);
        self.n += k;
        self
    }

    fn s(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    fn n(&mut self, v: u64) -> &mut Self {
        self.raw(crate::digits::fmt_u64(v, &mut [0u8; 20]))
    }

    fn i(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.s("-");
        }
        self.n(v.unsigned_abs())
    }

    /// memcached's `uriencode`: letters, digits and `-._~` as they are,
    /// every other byte `%XX`.
    fn key(&mut self, k: &[u8]) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &c in k {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                self.raw(&[c]);
            } else {
                self.raw(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
            }
        }
        self
    }
}

/// `watch ...`: memcached's replies; on `OK` the connection becomes a
/// watcher (`conn.watch`; the connection then runs [`stream`]).
pub fn command(args: &[u8], env: &Env<'_>, conn: &mut ConnState, out: &mut Vec<u8>) -> Next {
    let mut reply = |s: &[u8]| {
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    };
    // memcached's set_noreply_maybe: the last word `noreply` silences the
    // reply (the word itself is then a bad flag: nothing starts).
    let words = crate::protocol::tokens(args);
    let noreply = crate::protocol::tokens(args).last() == Some(b"noreply");
    if !env.shared.config.watch_enabled {
        if !noreply {
            reply(b"CLIENT_ERROR watch commands not allowed");
        }
        return Next::Continue;
    }
    if conn.held {
        // a reply still on memcached's response stack (`ConnState::held`)
        if !noreply {
            reply(b"ERROR cannot pipeline other commands before watch");
        }
        return Next::Continue;
    }
    let mut flags = 0u16;
    let mut any = false;
    // memcached's tokenizer keeps 24 tokens: past 22 arguments the rest is
    // one token it does not look at.
    for w in words.take(22) {
        any = true;
        flags |= match w {
            b"rawcmds" => RAWCMDS,
            b"evictions" => EVICTIONS,
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"sysevents" => SYSEVENTS,
            b"connevents" => CONNEVENTS,
            b"proxyreqs" => PROXYREQS,
            b"proxyevents" => PROXYEVENTS,
            b"proxyuser" => PROXYUSER,
            _ => {
                if !noreply {
                    reply(b"ERROR");
                }
                return Next::Continue;
            }
        };
    }
    if !any {
        flags = FETCHERS;
    }
    match env.shared.watch.add(flags) {
        Some(w) => conn.watch = Some(w),
        None => reply(b"WATCHER_TOO_MANY log watcher limit reached"),
    }
    Next::Continue
}

/// Serve a watcher until its client goes away (or the server stops):
/// write what its buffer holds, read and drop what the client sends.
/// `fd` is the connection's socket (its EOF is checked without a read in
/// flight, so the stream is only ever written).
pub async fn stream<S: monoio::io::AsyncWriteRent>(
    stream: &mut S,
    fd: i32,
    w: Arc<Watcher>,
    shared: &super::Shared,
) {
    use monoio::io::AsyncWriteRentExt;
    let mut spare: Vec<u8> = Vec::new();
    if spare.try_reserve_exact(BUF_SIZE).is_err() {
        shared.watch.remove(&w);
        return;
    }
    let mut wait = POLL_MIN;
    loop {
        {
            let mut o = w.out.lock();
            std::mem::swap(&mut o.buf, &mut spare);
        }
        if !spare.is_empty() {
            let (res, b) = stream.write_all(spare).await;
            spare = b;
            spare.clear();
            if res.is_err() {
                break;
            }
            wait = POLL_MIN;
        } else {
            wait = (wait + wait / 8).min(POLL_MAX);
        }
        if shared.shutdown.load(Relaxed) || peer_gone(fd) {
            break;
        }
        monoio::time::sleep(wait).await;
    }
    shared.watch.remove(&w);
}

/// Read and drop what a watcher's client sent; true once it closed (or the
/// socket failed). Never blocks.
fn peer_gone(fd: i32) -> bool {
    let mut buf = [0u8; 512];
    for _ in 0..64 {
        // SAFETY: a non-blocking recv into a stack buffer of the given
        // length, on the open socket of the watcher's own connection.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n == 0 {
            return true;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            return !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::observe::{Evicted, Observer};

    /// An eviction's `la=` is seconds since last access, never negative: an
    /// item stamped by a loop whose clock is a second ahead of the evicting
    /// loop's reads 0, as `me` and `mg l` do.
    #[test]
    fn eviction_la_is_never_negative() {
        let w = Watchers::new(48, 1.25);
        let watcher = w.add(EVICTIONS).unwrap();
        let ev = |atime| Evicted {
            key: b"k",
            value_len: 1,
            flags: 0,
            fetched: false,
            exptime: 0,
            atime,
            now: 100,
        };
        w.evicted(&ev(101));
        w.evicted(&ev(97));
        let out = String::from_utf8(watcher.out.lock().buf.clone()).unwrap();
        let la: Vec<&str> = out.split(' ').filter(|f| f.starts_with("la=")).collect();
        assert_eq!(la, ["la=0", "la=3"], "{out}");
    }
}
