//! The replication tasks on the event loops.
//!
//! Sender (loop 0, with `--partner`): connect, handshake, then per stream
//! either resume from the partner's acknowledged position (partial sync)
//! or walk the shard (full sync) while the live records keep flowing;
//! reconnect with backoff. It polls the rings on a short timer (1 ms while
//! there is work, backing off to 16 ms when idle), so a client request
//! never wakes another core. Output per write is bounded (`OUT_MAX`); a
//! partner that does not keep up only makes its streams fall out of the
//! rings (then a full sync), never a client wait.
//!
//! Receiver (loop 1 % loops, with `--replication-listen`): authenticate,
//! apply records with the store's apply (LWW by CAS, never journaled, so
//! applied copies are not forwarded), acknowledge positions after each
//! read batch.
//!
//! No lock is held across an await: the shard and ring locks are taken
//! inside synchronous blocks that copy bytes out.

use super::io::{LinkRead, LinkWrite};
use super::wire::{self, Frame, Position, WireChange, WireError, HDR};
use super::{Replication, CONNECTING, DOWN, FULL_SYNC, STREAMING};
use crate::server::Shared;
use crate::store::Applied;
use monoio::io::Splitable;
use monoio::net::TcpStream;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Output gathered per write to the partner.
const OUT_MAX: usize = 256 << 10;
/// Bytes copied out of one ring per lock hold.
const READ_CHUNK: usize = 64 << 10;
/// Index buckets walked per shard-lock hold in a full sync.
const WALK_BUCKETS: usize = 256;

const ROLE_SENDER: &[u8] = b"sender";
const ROLE_RECEIVER: &[u8] = b"receiver";

fn log(sh: &Shared, msg: std::fmt::Arguments<'_>) {
    if sh.verbosity.load(Relaxed) >= 1 {
        eprintln!("replication: {msg}");
    }
}

/// Start this loop's replication tasks, if any.
pub(crate) fn spawn_tasks(loop_id: usize, sh: &Arc<Shared>) {
    let Some(r) = sh.replication.as_ref() else {
        return;
    };
    if loop_id == 0 && r.cfg.partner.is_some() {
        monoio::spawn(sender(sh.clone()));
    }
    if loop_id == 1 % sh.config.threads {
        if let Some(l) = r.listener.lock().take() {
            match monoio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    monoio::spawn(listener(sh.clone(), l));
                }
                Err(e) => eprintln!("replication listener: {e}"),
            }
        }
    }
}

/// Warm rejoin, awaited by every loop before it accepts clients. With a
/// partner and a listener: wait up to `--replication-rejoin-wait` for the
/// partner's sender to connect; if it does, wait until every one of its
/// streams has been fully synced into this host (at most 10 minutes, then
/// serve anyway, logged). False if the server shuts down meanwhile.
pub(crate) async fn warm_up(sh: &Shared) -> bool {
    let Some(r) = sh.replication.as_ref() else {
        return true;
    };
    if r.cfg.partner.is_none() || r.cfg.listen.is_none() || r.cfg.rejoin_wait_secs == 0 {
        return true;
    }
    let started = Instant::now();
    let wait = Duration::from_secs(r.cfg.rejoin_wait_secs);
    let mut told = false;
    loop {
        if sh.shutdown.load(Relaxed) {
            return false;
        }
        if r.warm.load(Relaxed) {
            return true;
        }
        let synced = {
            let st = r.recv.lock();
            r.c.inbound_connected.load(Relaxed) > 0
                && !st.positions.is_empty()
                && st.positions.iter().all(|p| p.synced)
        };
        let seen = r.c.inbound_sessions.load(Relaxed) > 0;
        let waited = started.elapsed();
        let done = synced || (!seen && waited > wait) || waited > Duration::from_secs(600);
        if done {
            if !r.warm.swap(true, Relaxed) {
                let how = if synced {
                    "filled from the partner"
                } else if seen {
                    "the partner's full sync did not finish in 10 minutes"
                } else {
                    "the partner did not connect"
                };
                log(sh, format_args!("serving clients after {waited:?}: {how}"));
            }
            return true;
        }
        if seen && !told {
            told = true;
            log(
                sh,
                format_args!("warm rejoin: filling from the partner before serving"),
            );
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn repl(sh: &Shared) -> &Replication {
    sh.replication
        .as_ref()
        .expect("replication tasks run only with replication")
}

/// Largest frame payload accepted: the largest item plus room for a key.
/// Largest handshake frame (HELLO, CHALLENGE, AUTH, READY; READY with 1024
/// streams is about 9 KiB). A peer that has not proved the secret yet can
/// make the host buffer no more than this.
const HANDSHAKE_MAX: usize = 16 << 10;

pub(crate) fn max_payload(sh: &Shared) -> usize {
    sh.config.max_item_size + (128 << 10)
}

fn handshake_timeout(r: &Replication) -> Duration {
    Duration::from_millis(r.cfg.timeout_ms.max(2000))
}

#[derive(Debug)]
pub(crate) enum LinkError {
    Io(String),
    Protocol(String),
    Auth,
    Refused(u8),
    Closed,
    /// The peer's frames carry this wire version, not ours.
    Version(u8),
    /// `--replication-tls`: the handshake failed.
    Tls(String),
}

/// A decoding error as a link error; a frame of another version and a TLS
/// record where a frame was expected say so.
fn wire_error(e: WireError, buf: &[u8]) -> LinkError {
    match e {
        WireError::BadVersion(v) => LinkError::Version(v),
        // 0x15: a TLS alert, 0x16: a TLS handshake record.
        WireError::BadMagic if matches!(buf.first(), Some(0x15 | 0x16)) => LinkError::Protocol(
            "the peer speaks TLS: --replication-tls is given on one side only".into(),
        ),
        e => LinkError::Protocol(e.to_string()),
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "i/o: {e}"),
            LinkError::Protocol(e) => write!(f, "protocol: {e}"),
            LinkError::Auth => write!(f, "authentication failed"),
            LinkError::Refused(wire::refuse::VERSION) => write!(
                f,
                "refused by the partner: it does not speak wire version {}",
                wire::VERSION
            ),
            LinkError::Refused(r) => write!(f, "refused by the partner (reason {r})"),
            LinkError::Closed => write!(f, "connection closed"),
            LinkError::Version(v) => write!(
                f,
                "the peer speaks replication wire version {v}, this host {}: refused",
                wire::VERSION
            ),
            LinkError::Tls(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

/// Read until `buf` starts with one whole frame (or `deadline` passes);
/// returns that frame's length.
async fn read_frame<S: LinkRead>(
    s: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Option<Instant>,
) -> Result<usize, LinkError> {
    loop {
        match wire::peek(buf, max) {
            Err(e) => return Err(wire_error(e, buf)),
            Ok(Some((_, len))) if buf.len() >= HDR + len => return Ok(HDR + len),
            Ok(Some((_, len))) => {
                let want = HDR + len - buf.len();
                buf.reserve(want.max(16 << 10));
            }
            Ok(None) => buf.reserve(16 << 10),
        }
        let read = s.read_more(std::mem::take(buf));
        let (res, b) = match deadline {
            None => read.await,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, read).await {
                    Ok(x) => x,
                    Err(_) => return Err(LinkError::Io("timed out".into())),
                }
            }
        };
        *buf = b;
        match res {
            Ok(0) => return Err(LinkError::Closed),
            Ok(_) => {}
            Err(e) => return Err(LinkError::Io(e.to_string())),
        }
    }
}

async fn write<S: LinkWrite>(
    s: &mut S,
    out: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), LinkError> {
    let b = std::mem::take(out);
    match monoio::time::timeout(limit, s.write_all_vec(b)).await {
        Ok((Ok(()), mut b)) => {
            b.clear();
            *out = b;
            Ok(())
        }
        Ok((Err(e), _)) => Err(LinkError::Io(e.to_string())),
        Err(_) => Err(LinkError::Io("write timed out".into())),
    }
}

// ---------------------------------------------------------------- sender

async fn sender(sh: Arc<Shared>) {
    let r = repl(&sh);
    let partner = r.cfg.partner.expect("sender needs a partner");
    let mut backoff = 50u64;
    let mut last_err = String::new();
    while !sh.shutdown.load(Relaxed) {
        for s in r.streams.iter() {
            s.state.store(CONNECTING, Relaxed);
        }
        let started = Instant::now();
        let res = session(&sh, partner).await;
        for s in r.streams.iter() {
            s.state.store(DOWN, Relaxed);
        }
        if let Err(e) = res {
            match e {
                LinkError::Auth => {
                    r.c.auth_failures.fetch_add(1, Relaxed);
                }
                LinkError::Tls(_) => {
                    r.c.tls_handshake_errors.fetch_add(1, Relaxed);
                }
                LinkError::Version(_) | LinkError::Refused(wire::refuse::VERSION) => {
                    r.c.version_refusals.fetch_add(1, Relaxed);
                }
                _ => {}
            }
            // Say it once, not on every retry.
            let msg = e.to_string();
            if msg != last_err {
                log(&sh, format_args!("link to {partner}: {msg}"));
                last_err = msg;
            }
        } else {
            last_err.clear();
        }
        if started.elapsed() > Duration::from_secs(2) {
            backoff = 50;
        }
        monoio::time::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(2000);
    }
}

/// Where the sender is in one stream.
enum Local {
    Streaming {
        c: super::ring::Cursor,
    },
    Full {
        c: super::ring::Cursor,
        /// Next index position to walk.
        walk: usize,
        begun: bool,
    },
}

/// `--replication-tls`: the configurations as of the last certificate
/// (re)load, so a reload applies to the next link.
fn tls_configs(sh: &Shared) -> Option<crate::server::tls::ReplicationTls> {
    if !repl(sh).cfg.tls {
        return None;
    }
    sh.tls.as_ref().and_then(|t| t.replication())
}

async fn session(sh: &Arc<Shared>, partner: std::net::SocketAddr) -> Result<(), LinkError> {
    let r = repl(sh);
    let hs = handshake_timeout(r);
    let deadline = Instant::now() + hs;
    let stream = match monoio::time::timeout(hs, TcpStream::connect(partner)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(LinkError::Io(e.to_string())),
        Err(_) => return Err(LinkError::Io("connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    if r.cfg.tls {
        let Some(cfg) = tls_configs(sh) else {
            return Err(LinkError::Tls("no TLS configuration".into()));
        };
        let name = r
            .cfg
            .partner_name
            .clone()
            .unwrap_or_else(|| partner.ip().to_string());
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| LinkError::Tls(format!("--partner is no TLS server name: {e}")))?;
        let conn = rustls::ClientConnection::new(cfg.client, name)
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let (rd, wr) =
            match monoio::time::timeout(left, super::io::handshake(stream, conn.into())).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(LinkError::Tls(e.to_string())),
                Err(_) => return Err(LinkError::Tls("timed out".into())),
            };
        session_on(sh, partner, rd, wr, fd, deadline).await
    } else {
        let (rd, wr) = stream.into_split();
        session_on(sh, partner, rd, wr, fd, deadline).await
    }
}

/// The handshake and the stream, over plain TCP or TLS halves of the
/// socket `fd`.
async fn session_on<R: LinkRead, W: LinkWrite>(
    sh: &Arc<Shared>,
    partner: std::net::SocketAddr,
    mut rd: R,
    mut wr: W,
    fd: std::os::fd::RawFd,
    deadline: Instant,
) -> Result<(), LinkError> {
    let r = repl(sh);
    let max = HANDSHAKE_MAX;
    let hs = handshake_timeout(r);
    let deadline = Some(deadline);
    let secret = &r.cfg.secret.0;
    let na = super::nonce();
    let mut out = Vec::with_capacity(OUT_MAX + (64 << 10));
    let n = r.streams.len();
    let bit = r.host_bit.load(Relaxed);
    wire::put_hello(&mut out, r.node_id, r.run_id, n as u16, bit, &na);
    write(&mut wr, &mut out, hs).await?;
    let mut buf = Vec::with_capacity(16 << 10);
    let used = read_frame(&mut rd, &mut buf, max, deadline).await?;
    let nb = match wire::decode(&buf, max) {
        Ok(Some((
            Frame::Challenge {
                run_id,
                nonce,
                proof,
                ..
            },
            _,
        ))) => {
            if run_id == r.run_id {
                return Err(LinkError::Protocol("connected to myself".into()));
            }
            if !super::verify(secret, ROLE_RECEIVER, &na, &nonce, &proof) {
                return Err(LinkError::Auth);
            }
            nonce
        }
        Ok(Some((Frame::Refused { reason }, _))) => return Err(LinkError::Refused(reason)),
        Ok(_) => return Err(LinkError::Protocol("expected CHALLENGE".into())),
        Err(e) => return Err(wire_error(e, &buf)),
    };
    buf.drain(..used);
    let p = super::proof(secret, ROLE_SENDER, &nb, &na);
    wire::put_auth(&mut out, &p);
    write(&mut wr, &mut out, hs).await?;
    let used = read_frame(&mut rd, &mut buf, max, deadline).await?;
    let (known_run, positions): (u64, Vec<Position>) = match wire::decode(&buf, max) {
        Ok(Some((
            Frame::Ready {
                known_run,
                positions,
            },
            _,
        ))) => (known_run, positions.iter().collect()),
        Ok(Some((Frame::Refused { reason }, _))) => {
            if reason == wire::refuse::AUTH {
                return Err(LinkError::Auth);
            }
            return Err(LinkError::Refused(reason));
        }
        Ok(_) => return Err(LinkError::Protocol("expected READY".into())),
        Err(e) => return Err(wire_error(e, &buf)),
    };
    buf.drain(..used);
    r.c.connects.fetch_add(1, Relaxed);
    // Per stream: resume or full sync.
    let now = super::now_ms();
    let age = r.cfg.backlog_age_secs.saturating_mul(1000);
    let mut local: Vec<Local> = Vec::with_capacity(n);
    for (i, s) in r.streams.iter().enumerate() {
        let ring = s.ring.lock();
        let resume = match positions.get(i) {
            Some(p) if known_run == r.run_id && p.synced => ring.locate(p.seq, now, age),
            _ => None,
        };
        match resume {
            Some(c) => {
                s.acked.store(c.seq - 1, Relaxed);
                s.partial_syncs.fetch_add(1, Relaxed);
                s.state.store(STREAMING, Relaxed);
                local.push(Local::Streaming { c });
            }
            None => {
                s.full_syncs.fetch_add(1, Relaxed);
                s.state.store(FULL_SYNC, Relaxed);
                let c = ring.head();
                s.acked.store(c.seq - 1, Relaxed);
                local.push(Local::Full {
                    c,
                    walk: 0,
                    begun: false,
                });
            }
        }
    }
    log(
        sh,
        format_args!(
            "link to {partner} up: {} partial, {} full",
            local
                .iter()
                .filter(|l| matches!(l, Local::Streaming { .. }))
                .count(),
            local
                .iter()
                .filter(|l| matches!(l, Local::Full { .. }))
                .count()
        ),
    );
    let dead = Rc::new(Cell::new(false));
    monoio::spawn(ack_reader(sh.clone(), rd, buf, dead.clone()));
    let res = pump(sh, &mut wr, &mut local, &mut out, &dead).await;
    dead.set(true);
    // End both directions: the ack reader's pending read returns and the
    // partner's session sees the close (a half-open old session would
    // otherwise wait for bytes that never come).
    // SAFETY: `wr` still owns (its half of) the socket here, so `fd` is
    // open and ours.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    drop(wr);
    r.c.disconnects.fetch_add(1, Relaxed);
    res
}

/// Read ACKs until the link ends.
async fn ack_reader<R: LinkRead>(
    sh: Arc<Shared>,
    mut rd: R,
    mut buf: Vec<u8>,
    dead: Rc<Cell<bool>>,
) {
    let r = repl(&sh);
    let max = 64 << 10;
    while !dead.get() {
        let used = match read_frame(&mut rd, &mut buf, max, None).await {
            Ok(u) => u,
            Err(e) => {
                if !matches!(e, LinkError::Closed) {
                    log(&sh, format_args!("ack reader: {e}"));
                }
                break;
            }
        };
        match wire::decode(&buf, max) {
            Ok(Some((Frame::Ack { entries }, _))) => {
                for (s, q) in entries.iter() {
                    if let Some(st) = r.streams.get(s as usize) {
                        st.acked.fetch_max(q, Relaxed);
                    }
                }
            }
            Ok(Some((Frame::Refused { reason }, _))) => {
                log(&sh, format_args!("partner refused the link ({reason})"));
                break;
            }
            _ => {
                r.c.bad_frames.fetch_add(1, Relaxed);
                break;
            }
        }
        buf.drain(..used);
    }
    dead.set(true);
}

/// Copy what stream `i` has to send into `out`. Never awaits.
fn fill(sh: &Shared, i: usize, l: &mut Local, out: &mut Vec<u8>) {
    let r = repl(sh);
    let s = &r.streams[i];
    let stream = i as u16;
    let restart = |l: &mut Local, ring: &super::ring::Ring| {
        s.full_syncs.fetch_add(1, Relaxed);
        s.state.store(FULL_SYNC, Relaxed);
        *l = Local::Full {
            c: ring.head(),
            walk: 0,
            begun: false,
        };
    };
    match l {
        Local::Streaming { c } => {
            let ring = s.ring.lock();
            match ring.read(c, out, READ_CHUNK) {
                Some(rd) => note_sent(s, &ring, c, rd),
                None => restart(l, &ring),
            }
        }
        Local::Full { c, walk, begun } => {
            if !*begun {
                wire::put_sync_begin(out, stream, c.seq);
                *begun = true;
            }
            {
                let ring = s.ring.lock();
                match ring.read(c, out, READ_CHUNK) {
                    Some(rd) => note_sent(s, &ring, c, rd),
                    None => {
                        restart(l, &ring);
                        return;
                    }
                }
                if ring.next_seq() != c.seq || out.len() >= OUT_MAX {
                    return;
                }
            }
            // A walk slice: shard lock, then the ring's (the journal's
            // order). Records appended since the read above go out first,
            // then the items as the walk sees them: every record after
            // them was made after the walk read its item.
            let now = crate::time::now();
            let mut shard = sh.store.lock_shard(i);
            let ring = s.ring.lock();
            match ring.read(c, out, usize::MAX) {
                Some(rd) => note_sent(s, &ring, c, rd),
                None => {
                    restart(l, &ring);
                    return;
                }
            }
            // An item revised lately (touch ...) goes as that revision, so
            // a receiver holding the same CAS takes its expiry.
            let recent = s.recent.lock();
            let mut items = 0u64;
            let mut done = false;
            for _ in 0..WALK_BUCKETS {
                let next = shard.walk(*walk, 1, now, |it| {
                    let rev = recent.rev_of(sh.store.hash(it.key), it.cas);
                    let w = WireChange::Item {
                        key: it.key,
                        value: it.value,
                        flags: it.flags,
                        exp: super::rel_to_abs(it.exptime),
                        cas: it.cas,
                        stale: it.stale,
                        rev,
                    };
                    if let Some(p) = wire::record_parts(true, stream, 0, &w) {
                        p.write_to(out);
                        items += 1;
                    }
                });
                match next {
                    Some(p) => *walk = p,
                    None => {
                        done = true;
                        break;
                    }
                }
                if out.len() >= OUT_MAX {
                    break;
                }
            }
            drop(recent);
            drop(ring);
            drop(shard);
            s.snapshot_items_sent.fetch_add(items, Relaxed);
            if done {
                wire::put_sync_end(out, stream);
                s.state.store(STREAMING, Relaxed);
                *l = Local::Streaming { c: *c };
            }
        }
    }
}

fn note_sent(
    s: &super::Stream,
    ring: &super::ring::Ring,
    c: &super::ring::Cursor,
    rd: super::ring::Read,
) {
    s.sent.store(c.seq, Relaxed);
    s.unsent_bytes.store(ring.head().off - c.off, Relaxed);
    if rd.records > 0 {
        s.sent_ms.store(rd.last_ms as u64, Relaxed);
        s.records_sent.fetch_add(rd.records, Relaxed);
    }
}

/// Send until the link dies or the server shuts down.
async fn pump<W: LinkWrite>(
    sh: &Arc<Shared>,
    wr: &mut W,
    local: &mut [Local],
    out: &mut Vec<u8>,
    dead: &Rc<Cell<bool>>,
) -> Result<(), LinkError> {
    let r = repl(sh);
    let n = local.len();
    let stall = Duration::from_millis(r.cfg.timeout_ms.max(5000));
    let mut idle = 1u64;
    let mut first = 0;
    // (stream, seq, append ms) of sent batches not yet acknowledged: lag.
    let mut pending: std::collections::VecDeque<(usize, u64, u32)> = Default::default();
    let mut last_progress = Instant::now();
    let mut last_acked: u64 = 0;
    while !dead.get() && !sh.shutdown.load(Relaxed) {
        out.clear();
        for k in 0..n {
            if out.len() >= OUT_MAX {
                break;
            }
            let i = (first + k) % n;
            let before = r.streams[i].sent.load(Relaxed);
            fill(sh, i, &mut local[i], out);
            let after = r.streams[i].sent.load(Relaxed);
            if after > before {
                pending.push_back((i, after - 1, r.streams[i].sent_ms.load(Relaxed) as u32));
            }
        }
        first = (first + 1) % n.max(1);
        // Lag: the oldest sent batch not yet acknowledged.
        let now = super::now_ms();
        while let Some(&(i, seq, _)) = pending.front() {
            if r.streams[i].acked.load(Relaxed) >= seq {
                pending.pop_front();
            } else {
                break;
            }
        }
        for s in r.streams.iter() {
            s.lag_ms.store(0, Relaxed);
        }
        for &(i, _, ms) in pending.iter() {
            let s = &r.streams[i];
            if s.lag_ms.load(Relaxed) == 0 {
                s.lag_ms.store(now.wrapping_sub(ms) as u64, Relaxed);
            }
        }
        let acked: u64 = r.streams.iter().map(|s| s.acked.load(Relaxed)).sum();
        if acked != last_acked || pending.is_empty() {
            last_acked = acked;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall {
            return Err(LinkError::Io("partner stopped acknowledging".into()));
        }
        if out.is_empty() {
            monoio::time::sleep(Duration::from_millis(idle)).await;
            idle = (idle * 2).min(if r.sync { 1 } else { 16 });
            continue;
        }
        idle = 1;
        write(wr, out, stall).await?;
    }
    Ok(())
}

// -------------------------------------------------------------- receiver

async fn listener(sh: Arc<Shared>, l: monoio::net::TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                // A panic applying what a peer sent ends that link only.
                let link = inbound(sh.clone(), s, peer);
                monoio::spawn(crate::server::Isolated::new(link, &sh));
            }
            Err(_) => {
                if sh.shutdown.load(Relaxed) {
                    return;
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn refuse<W: LinkWrite>(s: &mut W, reason: u8) {
    let mut out = Vec::with_capacity(16);
    wire::put_refused(&mut out, reason);
    let _ = write(s, &mut out, Duration::from_secs(1)).await;
}

async fn inbound(sh: Arc<Shared>, s: TcpStream, peer: std::net::SocketAddr) {
    let r = repl(&sh);
    let deadline = Instant::now() + handshake_timeout(r);
    if !r.cfg.tls {
        let (rd, wr) = s.into_split();
        return inbound_on(&sh, rd, wr, peer, deadline).await;
    }
    // --replication-tls: a handshake that fails costs this connection only
    // (its own task, bounded by the handshake timeout), and is counted.
    let res = match tls_configs(&sh) {
        None => Err("no TLS configuration".to_string()),
        Some(cfg) => match rustls::ServerConnection::new(cfg.server) {
            Err(e) => Err(e.to_string()),
            Ok(conn) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, super::io::handshake(s, conn.into())).await {
                    Ok(Ok(x)) => Ok(x),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            }
        },
    };
    match res {
        Ok((rd, wr)) => inbound_on(&sh, rd, wr, peer, deadline).await,
        Err(e) => {
            r.c.tls_handshake_errors.fetch_add(1, Relaxed);
            log(&sh, format_args!("inbound {peer}: TLS handshake: {e}"));
        }
    }
}

/// The partners' CAS values must differ in the HLC host bit (`hlc.rs`):
/// the bit each host starts with comes from the addresses (`host_bit`),
/// which do not always tell. On a clash exactly one side changes: a host
/// without `--partner` (it only receives), else the one with the lower
/// run id. Both sides decide from the same two HELLOs, so they never both
/// change; values already given keep their bit (a later clock value
/// still differs).
fn settle_host_bit(sh: &Shared, peer: std::net::SocketAddr, their_run: u64, their_bit: bool) {
    let r = repl(sh);
    let mine = r.host_bit.load(Relaxed);
    if their_bit != mine || (r.cfg.partner.is_some() && r.run_id >= their_run) {
        return;
    }
    r.host_bit.store(!mine, Relaxed);
    sh.store.set_host_bit(!mine);
    r.c.host_bit_changes.fetch_add(1, Relaxed);
    log(
        sh,
        format_args!(
            "inbound {peer}: the partner has HLC host bit {}; this host now uses {}",
            their_bit as u8, !mine as u8
        ),
    );
}

async fn inbound_on<R: LinkRead, W: LinkWrite>(
    sh: &Arc<Shared>,
    mut rd: R,
    mut s: W,
    peer: std::net::SocketAddr,
    deadline: Instant,
) {
    let r = repl(sh);
    let max = HANDSHAKE_MAX;
    let deadline = Some(deadline);
    let mut buf = Vec::with_capacity(16 << 10);
    let secret = &r.cfg.secret.0;
    let bad = |e: &LinkError| {
        if matches!(e, LinkError::Protocol(_)) {
            r.c.bad_frames.fetch_add(1, Relaxed);
        }
    };
    // HELLO
    let hello = match read_frame(&mut rd, &mut buf, max, deadline).await {
        Ok(used) => match wire::decode(&buf, max) {
            Ok(Some((
                Frame::Hello {
                    run_id,
                    streams,
                    nonce,
                    host_bit,
                    ..
                },
                _,
            ))) => {
                buf.drain(..used);
                (run_id, streams as usize, nonce, host_bit)
            }
            _ => {
                r.c.bad_frames.fetch_add(1, Relaxed);
                refuse(&mut s, wire::refuse::PROTOCOL).await;
                return;
            }
        },
        Err(LinkError::Version(v)) => {
            // Another wire version: say so in a frame it can read.
            r.c.version_refusals.fetch_add(1, Relaxed);
            log(
                sh,
                format_args!("inbound {peer}: {}", LinkError::Version(v)),
            );
            let mut out = Vec::with_capacity(16);
            wire::put_refused_as(&mut out, v, wire::refuse::VERSION);
            let _ = write(&mut s, &mut out, Duration::from_secs(1)).await;
            return;
        }
        Err(e) => {
            bad(&e);
            log(sh, format_args!("inbound {peer}: {e}"));
            if matches!(e, LinkError::Protocol(_)) {
                refuse(&mut s, wire::refuse::PROTOCOL).await;
            }
            return;
        }
    };
    let (run_id, n, na, their_bit) = hello;
    if n > wire::MAX_STREAMS {
        refuse(&mut s, wire::refuse::STREAMS).await;
        return;
    }
    let nb = super::nonce();
    let mut out = Vec::with_capacity(64 << 10);
    let p = super::proof(secret, ROLE_RECEIVER, &na, &nb);
    wire::put_challenge(&mut out, r.node_id, r.run_id, &nb, &p);
    if write(&mut s, &mut out, Duration::from_secs(5))
        .await
        .is_err()
    {
        return;
    }
    let used = match read_frame(&mut rd, &mut buf, max, deadline).await {
        Ok(u) => u,
        Err(e) => {
            bad(&e);
            // A peer that hangs up instead of proving is refused too.
            r.c.auth_failures.fetch_add(1, Relaxed);
            log(sh, format_args!("inbound {peer}: no AUTH: {e}"));
            return;
        }
    };
    let ok = match wire::decode(&buf, max) {
        Ok(Some((Frame::Auth { proof }, _))) => {
            super::verify(secret, ROLE_SENDER, &nb, &na, &proof)
        }
        _ => false,
    };
    buf.drain(..used);
    if !ok {
        r.c.auth_failures.fetch_add(1, Relaxed);
        log(sh, format_args!("inbound {peer}: authentication failed"));
        refuse(&mut s, wire::refuse::AUTH).await;
        return;
    }
    let gen = r.inbound_gen.fetch_add(1, Relaxed) + 1;
    r.c.inbound_sessions.fetch_add(1, Relaxed);
    settle_host_bit(sh, peer, run_id, their_bit);
    {
        let mut st = r.recv.lock();
        if st.known_run != run_id {
            // A new run of the partner: its sequence numbers start again.
            st.known_run = run_id;
            st.positions.clear();
        }
        st.positions.resize(n, Position::default());
        wire::put_ready(&mut out, st.known_run, &st.positions);
    }
    if write(&mut s, &mut out, Duration::from_secs(5))
        .await
        .is_err()
    {
        return;
    }
    r.c.inbound_connected.fetch_add(1, Relaxed);
    let res = receive(sh, &mut rd, &mut s, &mut buf, &mut out, gen, run_id).await;
    r.c.inbound_connected.fetch_sub(1, Relaxed);
    if let Err(e) = res {
        bad(&e);
        if !matches!(e, LinkError::Closed) {
            log(sh, format_args!("inbound {peer}: {e}"));
        }
        if matches!(e, LinkError::Protocol(_)) {
            refuse(&mut s, wire::refuse::PROTOCOL).await;
        }
    }
}

/// Apply frames and acknowledge until the link ends.
async fn receive<R: LinkRead, W: LinkWrite>(
    sh: &Arc<Shared>,
    rd: &mut R,
    s: &mut W,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    gen: u64,
    run_id: u64,
) -> Result<(), LinkError> {
    let r = repl(sh);
    let max = max_payload(sh);
    let mut dirty: Vec<u16> = Vec::with_capacity(64);
    loop {
        if r.inbound_gen.load(Relaxed) != gen {
            return Err(LinkError::Io("replaced by a newer session".into()));
        }
        // Apply every whole frame at hand, then acknowledge.
        {
            let mut st = r.recv.lock();
            if st.known_run != run_id {
                return Err(LinkError::Io("replaced by a newer run".into()));
            }
            let mut at = 0;
            loop {
                let (f, used) = match wire::decode(&buf[at..], max) {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(wire_error(e, &buf[at..])),
                };
                apply_frame(sh, &mut st.positions, f, &mut dirty)?;
                at += used;
            }
            buf.drain(..at);
            if !dirty.is_empty() {
                let pos = &st.positions;
                wire::put_ack(out, dirty.iter().map(|&i| (i, pos[i as usize].seq)));
                dirty.clear();
            }
        }
        if !out.is_empty() {
            write(s, out, Duration::from_secs(10)).await?;
        }
        // Then read more: a whole frame's worth of room if one is started.
        match wire::peek(buf, max) {
            Ok(Some((_, len))) if buf.len() < HDR + len => buf.reserve(HDR + len - buf.len()),
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
            _ => buf.reserve(64 << 10),
        }
        let (res, b) = rd.read_more(std::mem::take(buf)).await;
        *buf = b;
        match res {
            Ok(0) => return Err(LinkError::Closed),
            Ok(_) => {}
            Err(e) => return Err(LinkError::Io(e.to_string())),
        }
        // Give back a buffer grown for a large item.
        if buf.is_empty() && buf.capacity() > (1 << 20) {
            *buf = Vec::with_capacity(64 << 10);
        }
    }
}

fn apply_change(sh: &Shared, w: &WireChange<'_>) {
    let r = repl(sh);
    let c = super::from_wire(w);
    let now = crate::time::now();
    let res = match w {
        WireChange::Item { key, cas, rev, .. } => {
            let h = sh.store.hash(key);
            let mut shard = sh.store.lock(key);
            let mut recent = r.streams[sh.store.shard_of(h)].recent.lock();
            // Older: removed here after this version was made, or a newer
            // revision of this CAS was made or applied here.
            if recent.newer(h, *cas) || (*rev != 0 && recent.rev_known(h, *cas, *rev)) {
                Applied::Older
            } else {
                let res = shard.apply(&c, now);
                if *rev != 0 && matches!(res, Applied::Stored | Applied::Revised) {
                    recent.put_rev(h, *cas, *rev);
                }
                res
            }
        }
        WireChange::Removed { key, cas } => {
            let h = sh.store.hash(key);
            let mut shard = sh.store.lock(key);
            let res = shard.apply(&c, now);
            r.streams[sh.store.shard_of(h)].recent.lock().put(h, *cas);
            res
        }
        WireChange::Flush { .. } => {
            // The partner's shards need not be ours: a flush reaches all.
            let mut last = Applied::Flushed;
            for i in 0..sh.store.shard_count() {
                last = sh.store.lock_shard(i).apply(&c, now);
            }
            last
        }
    };
    match res {
        Applied::Older => {
            r.c.conflicts.fetch_add(1, Relaxed);
        }
        Applied::OutOfMemory | Applied::TooLarge => {
            r.c.apply_failed.fetch_add(1, Relaxed);
        }
        Applied::Stored | Applied::Revised | Applied::Removed | Applied::Flushed => {}
    }
}

pub(crate) fn apply_frame(
    sh: &Shared,
    positions: &mut [Position],
    f: Frame<'_>,
    dirty: &mut Vec<u16>,
) -> Result<(), LinkError> {
    let r = repl(sh);
    let mark = |dirty: &mut Vec<u16>, s: u16| {
        if !dirty.contains(&s) {
            dirty.push(s);
        }
    };
    let pos = |positions: &mut [Position], s: u16| -> Result<usize, LinkError> {
        if (s as usize) < positions.len() {
            Ok(s as usize)
        } else {
            Err(LinkError::Protocol(format!("stream {s} out of range")))
        }
    };
    match f {
        Frame::Record {
            stream,
            seq,
            change,
        } => {
            let i = pos(positions, stream)?;
            let p = &mut positions[i];
            if seq <= p.seq {
                return Ok(()); // a resend of what was applied
            }
            if seq != p.seq + 1 {
                p.synced = false;
                return Err(LinkError::Protocol(format!(
                    "stream {stream}: record {seq} after {}",
                    p.seq
                )));
            }
            apply_change(sh, &change);
            p.seq = seq;
            r.c.records_applied.fetch_add(1, Relaxed);
            mark(dirty, stream);
        }
        Frame::Snapshot { stream, change } => {
            pos(positions, stream)?;
            apply_change(sh, &change);
            r.c.snapshot_items_applied.fetch_add(1, Relaxed);
        }
        Frame::SyncBegin { stream, next_seq } => {
            let i = pos(positions, stream)?;
            positions[i] = Position {
                synced: false,
                seq: next_seq.saturating_sub(1),
            };
            mark(dirty, stream);
        }
        Frame::SyncEnd { stream } => {
            let i = pos(positions, stream)?;
            positions[i].synced = true;
            mark(dirty, stream);
        }
        _ => return Err(LinkError::Protocol("unexpected frame".into())),
    }
    Ok(())
}
