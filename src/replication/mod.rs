//! Partner-host replication: write-through copies of every client mutation
//! to a partner host (docs/REPLICATION.md).
//!
//! - `wire`: the frames (pure encode/decode).
//! - `ring`: one backlog per stream (= per shard), filled by the journal
//!   under the shard lock, read by the sender.
//! - `link`: the tasks on the event loops: the sender (outbound connection
//!   to `--partner`) and the receiver (listener on `--replication-listen`).
//!
//! A host without `--partner` sets no journal (the store's hot path is as
//! without replication) and starts no sender; without
//! `--replication-listen` nothing listens.

mod io;
mod link;
pub mod ring;
pub mod wire;

use crate::config::{ReplicationConfig, ReplicationMode};
use crate::protocol::StatValue as V;
use crate::store::{Change, Journal, Store};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use ring::Ring;
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use wire::{Position, WireChange, NONCE, PROOF};

pub(crate) use link::{apply_frame, max_payload, spawn_tasks, warm_up};

/// Per-stream link states, as `stats replication` names them.
pub const CONNECTING: u8 = 0;
pub const FULL_SYNC: u8 = 1;
pub const STREAMING: u8 = 2;
pub const DOWN: u8 = 3;

fn state_name(s: u8) -> &'static str {
    match s {
        CONNECTING => "connecting",
        FULL_SYNC => "full_sync",
        STREAMING => "streaming",
        _ => "down",
    }
}

/// Recent removals and revisions of one shard, the versions a receiver
/// needs beyond what the store holds (it keeps no tombstones and no
/// revision per item). Direct-mapped and lossy (a collision forgets the
/// older entry): they cover changes within the replication lag, which is
/// where changes of both hosts cross on the wire. Touched only under the
/// shard's lock (the journal's order: shard, then this).
///
/// - Removals (key hash → version): an item version older than a removal
///   is not stored after it. Without it a delete on one host and a
///   concurrent older set on the other cross and the hosts diverge.
/// - Revisions (key hash, CAS → revision): touch, gat, `mg T` and `md x`
///   keep an item's CAS and travel as a revision of it (`rev`, a fresh
///   version). Of two revisions of one CAS the one with the larger `rev`
///   wins on both hosts: each host records its own local revisions and the
///   applied ones here, and a receiver drops an incoming revision not newer
///   than the one recorded for that key and CAS.
pub struct Recent {
    removed: Box<[(u64, u64)]>,
    revised: Box<[(u64, u64, u64)]>,
}

/// Removal slots per shard (16 bytes each).
const TOMBS: usize = 1 << 14;
/// Revision slots per shard (24 bytes each).
const REVS: usize = 1 << 13;

impl Recent {
    fn new() -> Recent {
        Recent {
            removed: vec![(0, 0); TOMBS].into_boxed_slice(),
            revised: vec![(0, 0, 0); REVS].into_boxed_slice(),
        }
    }
    pub fn put(&mut self, hash: u64, cas: u64) {
        let s = &mut self.removed[hash as usize & (TOMBS - 1)];
        if s.0 != hash || s.1 < cas {
            *s = (hash, cas);
        }
    }
    /// Was the key removed at a version newer than `cas`?
    pub fn newer(&self, hash: u64, cas: u64) -> bool {
        let s = self.removed[hash as usize & (TOMBS - 1)];
        s.0 == hash && s.1 > cas
    }
    /// The key's item at `cas` was revised to revision `rev`.
    pub fn put_rev(&mut self, hash: u64, cas: u64, rev: u64) {
        let s = &mut self.revised[hash as usize & (REVS - 1)];
        if s.0 != hash || s.1 != cas || s.2 < rev {
            *s = (hash, cas, rev);
        }
    }
    /// The newest revision known of the key's item at `cas` (0: none).
    pub fn rev_of(&self, hash: u64, cas: u64) -> u64 {
        let s = self.revised[hash as usize & (REVS - 1)];
        if s.0 == hash && s.1 == cas {
            s.2
        } else {
            0
        }
    }
    /// Is a revision at least as new as `rev` of the key's item at `cas`
    /// known here?
    pub fn rev_known(&self, hash: u64, cas: u64, rev: u64) -> bool {
        let s = self.revised[hash as usize & (REVS - 1)];
        s.0 == hash && s.1 == cas && s.2 >= rev
    }
}

/// One outbound stream: a shard's backlog and what the partner has of it.
pub struct Stream {
    /// Recent removals and revisions in this shard (local and applied).
    pub recent: Arc<Mutex<Recent>>,
    pub ring: Arc<Mutex<Ring>>,
    /// Last sequence number journaled (sync mode waits for its ack).
    pub journaled: Arc<AtomicU64>,
    /// `journaled` when sync mode last fell back to async.
    pub degrade_mark: AtomicU64,
    pub state: AtomicU8,
    /// Last sequence number the partner acknowledged (this run).
    pub acked: AtomicU64,
    /// Next sequence number to send.
    pub sent: AtomicU64,
    /// Bytes of backlog not yet sent.
    pub unsent_bytes: AtomicU64,
    pub lag_ms: AtomicU64,
    /// Append time (ms, wrapping) of the last record sent.
    pub sent_ms: AtomicU64,
    pub records_sent: AtomicU64,
    pub snapshot_items_sent: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub full_syncs: AtomicU64,
}

/// What the receiver holds of the partner's streams.
#[derive(Default)]
pub struct RecvState {
    /// The partner run whose sequence numbers `positions` count.
    pub known_run: u64,
    pub positions: Vec<Position>,
}

/// Counters of the whole link.
#[derive(Default)]
pub struct Counters {
    pub auth_failures: AtomicU64,
    pub bad_frames: AtomicU64,
    /// `--replication-tls`: handshakes that failed, either way (a peer
    /// without TLS, a certificate that does not chain to ssl_ca_cert ...).
    pub tls_handshake_errors: AtomicU64,
    /// Peers refused (or refusing us) for another wire version.
    pub version_refusals: AtomicU64,
    pub sync_timeouts: AtomicU64,
    /// Times sync mode fell back to async because the partner was down.
    pub sync_degraded: AtomicU64,
    /// Replies that waited for the partner's ack.
    pub sync_waits: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub inbound_sessions: AtomicU64,
    pub inbound_connected: AtomicU64,
    pub records_applied: AtomicU64,
    pub snapshot_items_applied: AtomicU64,
    pub conflicts: AtomicU64,
    pub apply_failed: AtomicU64,
    /// Times this host changed its HLC host bit because its partner had
    /// the same one (`link::settle_host_bit`).
    pub host_bit_changes: AtomicU64,
}

/// The replication state of a running server (`Shared::replication`).
pub struct Replication {
    pub cfg: ReplicationConfig,
    pub node_id: u64,
    pub run_id: u64,
    /// The HLC host bit of this host's CAS values: first `host_bit()`,
    /// changed when the partner turns out to have the same
    /// (`link::settle_host_bit`).
    pub host_bit: std::sync::atomic::AtomicBool,
    pub streams: Box<[Stream]>,
    pub recv: Mutex<RecvState>,
    /// Bumped by each authenticated inbound session: an older session
    /// seeing a newer one ends.
    pub inbound_gen: AtomicU64,
    pub c: Counters,
    /// Sync mode is on (`--replication-mode sync` with a partner).
    pub sync: bool,
    /// Sync mode fell back to async (timeout or partner down) until the
    /// partner is streaming and caught up again.
    pub degraded: std::sync::atomic::AtomicBool,
    /// Warm rejoin is over: client listeners may accept.
    pub warm: std::sync::atomic::AtomicBool,
    listener: Mutex<Option<std::net::TcpListener>>,
}

/// Fill `b` from the kernel's random source.
fn random_bytes(b: &mut [u8]) {
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom writes at most `len` bytes into the live slice.
        let n = unsafe {
            libc::getrandom(b[got..].as_mut_ptr() as *mut libc::c_void, b.len() - got, 0)
        };
        if n > 0 {
            got += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness: mix the time and pid (run ids only
            // need to differ between runs; nonces are then weaker).
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ ((std::process::id() as u64) << 32);
            for (i, x) in b[got..].iter_mut().enumerate() {
                *x = (t.rotate_left(i as u32 * 8) & 0xff) as u8;
            }
            return;
        }
    }
}

pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_le_bytes(b).max(1)
}

pub(crate) fn nonce() -> [u8; NONCE] {
    let mut b = [0u8; NONCE];
    random_bytes(&mut b);
    b
}

/// The handshake proof: HMAC-SHA256 over the role and both nonces, keyed
/// by the shared secret (empty when none is configured, so a host with a
/// secret refuses one without, and the other way round).
pub(crate) fn proof(secret: &[u8], role: &[u8], a: &[u8; NONCE], b: &[u8; NONCE]) -> [u8; PROOF] {
    mac(secret, role, a, b).finalize().into_bytes().into()
}

fn mac(secret: &[u8], role: &[u8], a: &[u8; NONCE], b: &[u8; NONCE]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(wire::HMAC_LABEL);
    m.update(role);
    m.update(a);
    m.update(b);
    m
}

/// Constant-time check of a proof.
pub(crate) fn verify(
    secret: &[u8],
    role: &[u8],
    a: &[u8; NONCE],
    b: &[u8; NONCE],
    got: &[u8; PROOF],
) -> bool {
    mac(secret, role, a, b).verify_slice(got).is_ok()
}

/// The HLC host bit a host starts with: the partners must differ, without
/// a flag. The host whose replication address is the lower of the two gets
/// 0; a host that only sends (no `--replication-listen`) gets 1, its
/// partner (no `--partner` back) 0. Addresses do not always tell (both
/// hosts listening on 0.0.0.0, a relay or NAT between them): a host that
/// sees its partner's HELLO with its own bit settles it
/// (`link::settle_host_bit`).
pub fn host_bit(cfg: Option<&ReplicationConfig>) -> bool {
    match cfg {
        None => false,
        Some(c) => match (c.listen, c.partner) {
            (Some(l), Some(p)) => l > p,
            (None, Some(_)) => true,
            _ => false,
        },
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Wall clock, ms, wrapping at 2^32 (backlog entry stamps, lag).
#[inline]
pub(crate) fn now_ms() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32)
}

/// Relative time → absolute Unix seconds (0 stays never).
#[inline]
pub(crate) fn rel_to_abs(rel: u32) -> i64 {
    if rel == 0 {
        0
    } else {
        crate::time::to_unix(rel)
    }
}

/// Absolute Unix seconds → relative time (0 stays never; the past is 1,
/// already expired).
#[inline]
pub(crate) fn abs_to_rel(abs: i64) -> u32 {
    if abs == 0 {
        return 0;
    }
    let base = crate::time::to_unix(0);
    if abs <= base {
        1
    } else {
        u32::try_from(abs - base).unwrap_or(u32::MAX)
    }
}

/// The wire form of a journaled change.
pub(crate) fn to_wire<'a>(c: &Change<'a>) -> WireChange<'a> {
    match *c {
        Change::Item {
            key,
            value,
            flags,
            exptime,
            cas,
            stale,
            rev,
        } => WireChange::Item {
            key,
            value,
            flags,
            exp: rel_to_abs(exptime),
            cas,
            stale,
            rev,
        },
        Change::Removed { key, cas } => WireChange::Removed { key, cas },
        Change::Flush { at, cas } => WireChange::Flush {
            at: crate::time::to_unix(at),
            cas,
        },
    }
}

/// The store form of a received change.
pub(crate) fn from_wire<'a>(w: &WireChange<'a>) -> Change<'a> {
    match *w {
        WireChange::Item {
            key,
            value,
            flags,
            exp,
            cas,
            stale,
            rev,
        } => Change::Item {
            key,
            value,
            flags,
            exptime: abs_to_rel(exp),
            cas,
            stale,
            rev,
        },
        WireChange::Removed { key, cas } => Change::Removed { key, cas },
        WireChange::Flush { at, cas } => Change::Flush {
            at: abs_to_rel(at).max(1),
            cas,
        },
    }
}

thread_local! {
    /// Set by a journal record on this thread (the thread of the client
    /// connection whose request made the change); taken by the connection
    /// right after the request (`journaled`).
    static JOURNALED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Did a request executed on this thread since the last call journal a
/// change? Sync mode waits for the partner's ack only before replies
/// that follow such a request: reads never wait.
#[inline]
pub fn journaled() -> bool {
    JOURNALED.with(|j| j.replace(false))
}

/// The journal of one shard: every client mutation's post-image goes into
/// the stream's ring. Called under the shard lock; no allocation, no wait
/// beyond the ring's own short mutex.
struct StreamJournal {
    ring: Arc<Mutex<Ring>>,
    recent: Arc<Mutex<Recent>>,
    hasher: ahash::RandomState,
    journaled: Arc<AtomicU64>,
    stream: u16,
}

impl Journal for StreamJournal {
    fn record(&mut self, change: &Change<'_>) {
        match *change {
            Change::Removed { key, cas } => {
                self.recent.lock().put(self.hasher.hash_one(key), cas);
            }
            Change::Item { key, cas, rev, .. } if rev != 0 => {
                self.recent
                    .lock()
                    .put_rev(self.hasher.hash_one(key), cas, rev);
            }
            _ => {}
        }
        let w = to_wire(change);
        let seq = self.ring.lock().push(self.stream, &w, now_ms());
        self.journaled.store(seq, Relaxed);
        JOURNALED.with(|j| j.set(true));
    }
}

impl Replication {
    /// Set up replication for `store`: bind the replication listener (if
    /// asked) and, with a partner, give every shard its journal. Errors
    /// are start-up failures.
    pub fn start(cfg: &ReplicationConfig, store: &Store) -> Result<Replication, String> {
        let listener = match cfg.listen {
            None => None,
            Some(a) => Some(bind(a).map_err(|e| format!("replication listen {a}: {e}"))?),
        };
        let n = store.shard_count();
        let per = (cfg.backlog / n).max(64 << 10);
        let streams: Box<[Stream]> = (0..n)
            .map(|_| Stream {
                // Only a host that sends needs the memory.
                ring: Arc::new(Mutex::new(Ring::new(if cfg.partner.is_some() {
                    per
                } else {
                    64
                }))),
                journaled: Arc::new(AtomicU64::new(0)),
                recent: Arc::new(Mutex::new(Recent::new())),
                degrade_mark: AtomicU64::new(0),
                state: AtomicU8::new(if cfg.partner.is_some() {
                    CONNECTING
                } else {
                    DOWN
                }),
                acked: AtomicU64::new(0),
                sent: AtomicU64::new(1),
                unsent_bytes: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                sent_ms: AtomicU64::new(0),
                records_sent: AtomicU64::new(0),
                snapshot_items_sent: AtomicU64::new(0),
                partial_syncs: AtomicU64::new(0),
                full_syncs: AtomicU64::new(0),
            })
            .collect();
        if cfg.partner.is_some() {
            for (i, s) in streams.iter().enumerate() {
                let seeds = crate::store::SEEDS;
                let j = StreamJournal {
                    ring: s.ring.clone(),
                    recent: s.recent.clone(),
                    hasher: ahash::RandomState::with_seeds(seeds[0], seeds[1], seeds[2], seeds[3]),
                    journaled: s.journaled.clone(),
                    stream: i as u16,
                };
                store.lock_shard(i).set_journal(Some(Box::new(j)));
            }
        }
        let id_src = format!("{:?}", cfg.listen);
        Ok(Replication {
            node_id: if cfg.listen.is_some() {
                fnv(id_src.as_bytes())
            } else {
                random_u64()
            },
            run_id: random_u64(),
            host_bit: std::sync::atomic::AtomicBool::new(host_bit(Some(cfg))),
            cfg: cfg.clone(),
            streams,
            recv: Mutex::new(RecvState::default()),
            inbound_gen: AtomicU64::new(0),
            c: Counters::default(),
            warm: std::sync::atomic::AtomicBool::new(false),
            sync: cfg.mode == ReplicationMode::Sync && cfg.partner.is_some(),
            degraded: std::sync::atomic::AtomicBool::new(false),
            listener: Mutex::new(listener),
        })
    }

    /// `stats replication`: one call of `out` per line.
    pub fn stats(&self, out: &mut dyn FnMut(&str, V<'_>)) {
        let c = &self.c;
        let mode = match self.cfg.mode {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
        };
        let addr = |a: Option<SocketAddr>| a.map_or("none".to_string(), |a| a.to_string());
        out("mode", V::Str(mode));
        out("partner", V::Str(&addr(self.cfg.partner)));
        out("listen", V::Str(&addr(self.cfg.listen)));
        out("node_id", V::Str(&format!("{:016x}", self.node_id)));
        out("run_id", V::Str(&format!("{:016x}", self.run_id)));
        out("host_bit", V::U64(self.host_bit.load(Relaxed) as u64));
        out("host_bit_changes", V::U64(c.host_bit_changes.load(Relaxed)));
        out("streams", V::U64(self.streams.len() as u64));
        out("warm", V::U64(self.warm.load(Relaxed) as u64));
        let sum = |f: fn(&Stream) -> &AtomicU64| -> u64 {
            self.streams.iter().map(|s| f(s).load(Relaxed)).sum()
        };
        out("partial_syncs", V::U64(sum(|s| &s.partial_syncs)));
        out("full_syncs", V::U64(sum(|s| &s.full_syncs)));
        out("records_sent", V::U64(sum(|s| &s.records_sent)));
        out(
            "snapshot_items_sent",
            V::U64(sum(|s| &s.snapshot_items_sent)),
        );
        out("records_applied", V::U64(c.records_applied.load(Relaxed)));
        out(
            "snapshot_items_applied",
            V::U64(c.snapshot_items_applied.load(Relaxed)),
        );
        out("conflicts", V::U64(c.conflicts.load(Relaxed)));
        out("apply_failed", V::U64(c.apply_failed.load(Relaxed)));
        out("auth_failures", V::U64(c.auth_failures.load(Relaxed)));
        out("bad_frames", V::U64(c.bad_frames.load(Relaxed)));
        out("tls", V::U64(self.cfg.tls as u64));
        out(
            "tls_handshake_errors",
            V::U64(c.tls_handshake_errors.load(Relaxed)),
        );
        out("version_refusals", V::U64(c.version_refusals.load(Relaxed)));
        out("sync_timeouts", V::U64(c.sync_timeouts.load(Relaxed)));
        out("sync_degraded", V::U64(c.sync_degraded.load(Relaxed)));
        out("sync_waits", V::U64(c.sync_waits.load(Relaxed)));
        out("sync_async_now", V::U64(self.degraded.load(Relaxed) as u64));
        out("connects", V::U64(c.connects.load(Relaxed)));
        out("disconnects", V::U64(c.disconnects.load(Relaxed)));
        out("inbound_sessions", V::U64(c.inbound_sessions.load(Relaxed)));
        out(
            "inbound_connected",
            V::U64(c.inbound_connected.load(Relaxed)),
        );
        for (i, s) in self.streams.iter().enumerate() {
            let (next, used, cap, first) = {
                let r = s.ring.lock();
                (r.next_seq(), r.used(), r.capacity(), r.first_seq())
            };
            let acked = s.acked.load(Relaxed);
            let st = s.state.load(Relaxed);
            let mut line = |name: &str, v: V<'_>| out(&format!("stream{i}:{name}"), v);
            line("state", V::Str(state_name(st)));
            line("next_seq", V::U64(next));
            line("acked_seq", V::U64(acked));
            line("lag_records", V::U64((next - 1).saturating_sub(acked)));
            line("lag_bytes", V::U64(s.unsent_bytes.load(Relaxed)));
            line("lag_ms", V::U64(s.lag_ms.load(Relaxed)));
            line("backlog_bytes", V::U64(used));
            line("backlog_capacity", V::U64(cap as u64));
            line("backlog_first_seq", V::U64(first));
            line("records_sent", V::U64(s.records_sent.load(Relaxed)));
            line(
                "snapshot_items_sent",
                V::U64(s.snapshot_items_sent.load(Relaxed)),
            );
            line("partial_syncs", V::U64(s.partial_syncs.load(Relaxed)));
            line("full_syncs", V::U64(s.full_syncs.load(Relaxed)));
        }
        let recv = self.recv.lock();
        for (i, p) in recv.positions.iter().enumerate() {
            out(&format!("inbound{i}:applied_seq"), V::U64(p.seq));
            out(&format!("inbound{i}:synced"), V::U64(p.synced as u64));
        }
    }
}

impl Replication {
    /// Remember what was journaled when sync mode gave up.
    fn mark_degraded(&self) {
        for s in self.streams.iter() {
            s.degrade_mark.store(s.journaled.load(Relaxed), Relaxed);
        }
    }

    /// Sync mode: before a connection writes replies that include a
    /// write's (see `journaled`), wait until the partner acknowledged every
    /// record journaled so far (this client's writes among them), at most
    /// `--replication-timeout`. On timeout, or
    /// with the partner not streaming, fall back to async (counted, logged)
    /// until every stream is streaming and caught up again. Returns at once
    /// in async mode or when nothing is unacknowledged.
    pub async fn sync_wait(&self) {
        if !self.sync {
            return;
        }
        let behind = |s: &Stream| s.acked.load(Relaxed) < s.journaled.load(Relaxed);
        if self.degraded.load(Relaxed) {
            // Back to sync once every stream streams and the partner has
            // acknowledged what was journaled when sync mode gave up.
            let close = self.streams.iter().all(|s| {
                s.state.load(Relaxed) == STREAMING
                    && s.acked.load(Relaxed) >= s.degrade_mark.load(Relaxed)
            });
            if !close {
                return;
            }
            self.degraded.store(false, Relaxed);
            eprintln!("replication: partner caught up, back to sync mode");
        }
        if !self.streams.iter().any(behind) {
            return;
        }
        // What to wait for: everything journaled so far (no allocation:
        // streams past the 64th are compared with their current count).
        let mut targets = [0u64; 64];
        for (t, s) in targets.iter_mut().zip(self.streams.iter()) {
            *t = s.journaled.load(Relaxed);
        }
        self.c.sync_waits.fetch_add(1, Relaxed);
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(self.cfg.timeout_ms);
        loop {
            let done = self.streams.iter().enumerate().all(|(i, s)| {
                let t = targets.get(i).copied().unwrap_or(0);
                let t = if i < 64 { t } else { s.journaled.load(Relaxed) };
                s.acked.load(Relaxed) >= t
            });
            if done {
                return;
            }
            if self
                .streams
                .iter()
                .any(|s| s.state.load(Relaxed) != STREAMING)
            {
                if !self.degraded.swap(true, Relaxed) {
                    self.mark_degraded();
                    self.c.sync_degraded.fetch_add(1, Relaxed);
                    eprintln!("replication: partner not streaming, sync mode runs async");
                }
                return;
            }
            if std::time::Instant::now() >= deadline {
                if !self.degraded.swap(true, Relaxed) {
                    self.mark_degraded();
                    eprintln!(
                        "replication: no ack within {} ms, sync mode runs async",
                        self.cfg.timeout_ms
                    );
                }
                self.c.sync_timeouts.fetch_add(1, Relaxed);
                return;
            }
            monoio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    }
}

/// `stats replication` for a server that may run without replication.
pub fn stats(r: Option<&Replication>, out: &mut dyn FnMut(&str, V<'_>)) {
    match r {
        Some(r) => r.stats(out),
        None => out("mode", V::Str("off")),
    }
}

/// Bind the replication listener. A host restarted right after a crash may
/// find its old listener still open for a moment (most likely because the
/// kernel closes the files of a dead process's io_uring in a worker after the
/// process is gone), and the
/// replication listener (unlike the client ones) has no SO_REUSEPORT, so the
/// bind failed with "Address already in use" in ~1 of 5 quick restarts
/// (scripts/soak --pair). Retry for up to 2 s before giving up.
fn bind(a: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match bind_once(a) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn bind_once(a: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&a.into())?;
    s.listen(16)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_need_the_same_secret_role_and_nonces() {
        let (a, b) = ([1u8; NONCE], [2u8; NONCE]);
        let p = proof(b"s", b"sender", &a, &b);
        assert!(verify(b"s", b"sender", &a, &b, &p));
        assert!(!verify(b"t", b"sender", &a, &b, &p));
        assert!(!verify(b"", b"sender", &a, &b, &p));
        assert!(!verify(b"s", b"receiver", &a, &b, &p));
        assert!(!verify(b"s", b"sender", &b, &a, &p));
    }

    #[test]
    fn host_bits_differ_between_partners() {
        let mk = |l: &str, p: &str| ReplicationConfig {
            partner: Some(p.parse().unwrap()),
            listen: Some(l.parse().unwrap()),
            mode: ReplicationMode::Async,
            timeout_ms: 1,
            secret: crate::config::Secret(Vec::new()),
            backlog: 1 << 20,
            backlog_age_secs: 1,
            rejoin_wait_secs: 0,
            tls: false,
            partner_name: None,
        };
        let a = mk("127.0.0.1:7000", "127.0.0.1:7001");
        let b = mk("127.0.0.1:7001", "127.0.0.1:7000");
        assert_ne!(host_bit(Some(&a)), host_bit(Some(&b)));
        assert!(!host_bit(Some(&a)));
        let c = mk("10.0.0.2:7000", "10.0.0.1:7000");
        let d = mk("10.0.0.1:7000", "10.0.0.2:7000");
        assert_ne!(host_bit(Some(&c)), host_bit(Some(&d)));
        assert!(!host_bit(None));
    }

    #[test]
    fn expiry_travels_as_absolute_time() {
        crate::time::init();
        let now = crate::time::now();
        assert_eq!(rel_to_abs(0), 0);
        assert_eq!(abs_to_rel(0), 0);
        let rel = now + 100;
        assert_eq!(abs_to_rel(rel_to_abs(rel)), rel);
        // A time before this process started is already past.
        assert_eq!(abs_to_rel(crate::time::to_unix(0) - 5), 1);
        assert!(crate::time::is_expired(abs_to_rel(1_000_000_000), now));
    }
}
