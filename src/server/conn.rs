//! Accepting and serving connections.
//!
//! A connection reads into one buffer, parses and executes every complete
//! request in it in order, and writes all their responses with one write per
//! read. Memory and time per connection are bounded:
//!
//! - Output: once the pending output passes [`WBUF_HIGH`] it is written (the
//!   task waits for the client to take it) before any more requests are
//!   executed. A multi-get is served a slice of keys at a time
//!   ([`env::GET_SLICE_KEYS`] keys or [`env::GET_SLICE_BYTES`] of output),
//!   so its reply never sits in memory whole.
//! - Input: the read buffer grows as bytes arrive, never to a value's declared
//!   length ahead of its bytes: at most what has arrived plus one step
//!   (as much as it holds, at least [`MIN_READ`], at most [`GROW_STEP`]). Past its
//!   first [`BUF_KEEP`] bytes it may grow only while the connection buffers'
//!   bytes beyond their first [`BUF_KEEP`] each stay, all together, within
//!   `-o read_buf_mem_limit`; when they would not, the
//!   request being received is refused with memcached's
//!   `SERVER_ERROR out of memory storing object` and its data swallowed (a
//!   request line that cannot grow gets `SERVER_ERROR out of memory reading
//!   request` and the connection is closed). A failed allocation of a
//!   connection buffer closes that connection only.
//! - Time: a connection yields to the others on its loop after each slice of
//!   a multi-get and after every [`YIELD_EVERY`] bytes of work, even when
//!   its reads and writes complete at once (monoio's epoll driver runs a
//!   ready read or write without yielding).
//! - Closing: when the server closes a connection (framing error, `quit`,
//!   refusals) it shuts down writing after the last reply, then reads and
//!   discards what the client still sends (at most [`DRAIN_BYTES`] and
//!   [`DRAIN_TIME`]) before closing, so unread input does not turn the close
//!   into a reset that can destroy the reply.

use super::env::{self, ConnState, Env, Next};
use super::exec::{execute, resume};
use super::watch::{as_client, CloseReason};
use super::Worker;
use crate::config::Protocol;
use crate::protocol::{ascii, binary, Command, ErrorKind, Limits, Parsed, Proto, Response};
use crate::stats::{bump, Stats};
use crate::time;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle};
use monoio::net::{TcpListener, UnixListener};
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Initial (base) read buffer; a connection always gets this much.
const RBUF_INIT: usize = 16 * 1024;
/// Read at least this much at a time.
const MIN_READ: usize = 4 * 1024;
/// Largest single growth step of a read buffer.
const GROW_STEP: usize = 1024 * 1024;
/// Pending output above this is written before more requests are executed.
pub(super) const WBUF_HIGH: usize = 256 * 1024;
/// Each buffer's allowance: only bytes beyond it count against
/// `read_buf_mem_limit`, so connections that merely exist (bounded by `-c`)
/// never use up the limit.
const BUF_KEEP: usize = 64 * 1024;
/// An empty read or output buffer larger than this is given back after a
/// batch. Above [`BUF_KEEP`] on purpose: giving back at 64 KiB made every
/// 100 KiB set shrink and regrow both buffers (40-50 vs 33-36 µs of server
/// CPU per request, 50 connections, 1:1; the bytes kept past `BUF_KEEP`
/// still count against the limit).
const BUF_SHRINK: usize = 256 * 1024;
/// Yield to the loop's other connections after this many bytes of input
/// parsed plus output written without a yield.
const YIELD_EVERY: usize = 256 * 1024;
/// After a close the server decided: read and discard at most this much...
const DRAIN_BYTES: usize = 4 * 1024 * 1024;
/// ...for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// A client connection: TCP, a unix socket (`-s`), or TLS over TCP (`-Z`).
pub trait Stream: AsyncReadRent + AsyncWriteRent + 'static {}
impl<S: AsyncReadRent + AsyncWriteRent + 'static> Stream for S {}

/// How long a TLS client may take to finish its handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

pub async fn accept_loop(listener: TcpListener, tls: bool, w: Rc<Worker>, cancel: CancelHandle) {
    loop {
        let accepted = listener.cancelable_accept(cancel.clone()).await;
        let stream = accepted.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        let go_on = match (tls, &w.shared.tls) {
            (true, Some(t)) => {
                let acceptor = t.acceptor();
                admit(stream, &w, move |stream, w| async move {
                    let fd = stream.as_raw_fd();
                    // Until `serve` registers it, the connection is counted
                    // by this guard (so a handshake that ends in any way,
                    // a panic included, gives its count back).
                    let counted = Counted(Some(w.clone()));
                    match monoio::time::timeout(HANDSHAKE_TIME, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            counted.hand_over();
                            serve(tls, fd, w).await
                        }
                        _ => {
                            // A failed handshake costs this connection only.
                            if let Some(t) = &w.shared.tls {
                                t.handshake_errors.fetch_add(1, Relaxed);
                            }
                        }
                    }
                })
                .await
            }
            _ => {
                admit(stream, &w, |stream, w| async move {
                    let fd = stream.as_raw_fd();
                    serve(stream, fd, w).await
                })
                .await
            }
        };
        if !go_on {
            return;
        }
    }
}

/// The accept loop of a unix socket (`-s`).
pub async fn accept_unix_loop(listener: UnixListener, w: Rc<Worker>, cancel: CancelHandle) {
    loop {
        let accepted = listener.cancelable_accept(cancel.clone()).await;
        let stream = accepted.map(|(stream, _)| stream);
        let go_on = admit(stream, &w, |stream, w| async move {
            let fd = stream.as_raw_fd();
            serve(stream, fd, w).await
        })
        .await;
        if !go_on {
            return;
        }
    }
}

/// Serve an accepted connection (or refuse it past `-c`); false when the
/// accept loop should end (shutdown).
pub(super) async fn admit<S, F, Fut>(accepted: std::io::Result<S>, w: &Rc<Worker>, start: F) -> bool
where
    S: Stream,
    F: FnOnce(S, Rc<Worker>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    match accepted {
        Ok(stream) => {
            let st = &w.shared.stats;
            let n = st.curr_connections.fetch_add(1, Relaxed) + 1;
            st.total_connections.fetch_add(1, Relaxed);
            if n > w.shared.config.conn_limit as u64 {
                st.curr_connections.fetch_sub(1, Relaxed);
                st.rejected_connections.fetch_add(1, Relaxed);
                monoio::spawn(reject(stream));
                return true;
            }
            monoio::spawn(Isolated::new(start(stream, w.clone()), &w.shared));
            true
        }
        Err(e) => {
            if w.shared.shutdown.load(Relaxed) || e.kind() == std::io::ErrorKind::Interrupted {
                return false;
            }
            // EMFILE and friends: back off instead of spinning.
            monoio::time::sleep(Duration::from_millis(10)).await;
            true
        }
    }
}

/// A connection's task, isolated from its loop: a panic inside it (a bug:
/// the fuzzing of docs/ROBUSTNESS.md reached none from a client's bytes)
/// ends this connection only, instead of unwinding out of the event loop
/// and taking the loop's other connections and its listener with it. The
/// connection's state is dropped (its socket closed, its count and
/// registrations given back by their guards) and the panic is counted in
/// `conn_panics` (general `stats`, shown once one happened). A shard lock
/// held at the panic is released by its guard (parking_lot does not
/// poison); what the panicking operation had half-done in that shard stays
/// as it was left. The replication receiver's links run isolated the same
/// way (`replication::link`).
pub(crate) struct Isolated<F> {
    fut: Option<Pin<Box<F>>>,
    sh: std::sync::Arc<super::Shared>,
}

impl<F: Future<Output = ()>> Isolated<F> {
    pub(crate) fn new(fut: F, sh: &std::sync::Arc<super::Shared>) -> Isolated<F> {
        Isolated {
            fut: Some(Box::pin(fut)),
            sh: sh.clone(),
        }
    }
}

impl<F: Future<Output = ()>> Future for Isolated<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.fut = None;
                Poll::Ready(())
            }
            Err(_) => {
                // The panic hook has printed the message and location.
                this.sh.stats.conn_panics.fetch_add(1, Relaxed);
                let fut = this.fut.take();
                // A drop that panics as well leaks the rest of what it held
                // rather than ending the loop.
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fut)));
                eprintln!(
                    "a connection's task panicked: that connection is closed{}; the server goes on",
                    if dropped.is_err() {
                        " (its state leaked)"
                    } else {
                        ""
                    }
                );
                Poll::Ready(())
            }
        }
    }
}

/// A connection counted in `curr_connections` before `serve` registers it
/// (a TLS handshake): gives the count back when dropped, unless handed over.
struct Counted(Option<Rc<Worker>>);

impl Counted {
    /// `serve` counts the connection from here on.
    fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.shared.stats.curr_connections.fetch_sub(1, Relaxed);
        }
    }
}

/// memcached's answer past `-c`: one error line, then close.
/// (No drain here: such a client has rarely sent anything yet, and a
/// connection past the limit must not hold its descriptor any longer.)
async fn reject<S: Stream>(mut stream: S) {
    let _ = stream
        .write_all(&b"ERROR Too many open connections\r\n"[..])
        .await;
}

/// Unregisters a connection however its task ends.
struct ConnGuard {
    w: Rc<Worker>,
    fd: i32,
    info: std::sync::Arc<super::conns::ConnInfo>,
    /// Why it closed, for `watch connevents` (memcached's reasons).
    reason: std::cell::Cell<CloseReason>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let shared = &self.w.shared;
        shared
            .watch
            .conn_event(&self.info.addr, self.fd, Some(self.reason.get()));
        shared.conn_table.remove(&self.info);
        if shared.verbosity.load(Relaxed) >= 2 {
            eprintln!("<{} connection closed.", self.fd);
        }
        self.w.conns.borrow_mut().remove(&self.fd);
        self.w.shared.stats.curr_connections.fetch_sub(1, Relaxed);
    }
}

/// Keeps the `read_buf_*` / `response_obj_*` stats equal to the capacity of
/// one connection's buffers, and gives it back when the connection ends.
struct Meter<'a> {
    st: &'a Stats,
    r: usize,
    w: usize,
}

/// The part of a buffer's capacity that counts against the limit.
fn over(cap: usize) -> usize {
    cap.saturating_sub(BUF_KEEP)
}

fn adjust(a: &AtomicU64, old: usize, new: usize) {
    if new > old {
        a.fetch_add((new - old) as u64, Relaxed);
    } else if old > new {
        a.fetch_sub((old - new) as u64, Relaxed);
    }
}

impl<'a> Meter<'a> {
    fn new(st: &'a Stats) -> Self {
        st.read_buf_count.fetch_add(1, Relaxed);
        st.response_obj_count.fetch_add(1, Relaxed);
        Meter { st, r: 0, w: 0 }
    }

    /// Record the buffers' current capacities.
    fn sync(&mut self, rbuf: &Vec<u8>, wbuf: &Vec<u8>) {
        let (r, w) = (rbuf.capacity(), wbuf.capacity());
        if r != self.r || w != self.w {
            adjust(
                &self.st.conn_buf_over,
                over(self.r) + over(self.w),
                over(r) + over(w),
            );
        }
        if r != self.r {
            adjust(&self.st.read_buf_bytes, self.r, r);
            self.r = r;
        }
        if w != self.w {
            adjust(&self.st.response_obj_bytes, self.w, w);
            self.w = w;
        }
    }
}

impl Drop for Meter<'_> {
    fn drop(&mut self) {
        adjust(&self.st.conn_buf_over, over(self.r) + over(self.w), 0);
        adjust(&self.st.read_buf_bytes, self.r, 0);
        adjust(&self.st.response_obj_bytes, self.w, 0);
        self.st.read_buf_count.fetch_sub(1, Relaxed);
        self.st.response_obj_count.fetch_sub(1, Relaxed);
    }
}

/// Why the read buffer could not make room.
enum NoRoom {
    /// Growing would pass `read_buf_mem_limit`.
    Limit,
    /// The allocator said no.
    Alloc,
}

/// Make room for the next read: at least [`MIN_READ`] spare bytes. Growth
/// doubles what is buffered (a step of at most [`GROW_STEP`]: a 100 KiB
/// value takes 3 steps from 16 KiB, where quarter steps took 8) and never past the pending request's known size (`need`)
/// by more than [`MIN_READ`]; past [`BUF_KEEP`] it must fit the limit.
fn make_room(
    rbuf: &mut Vec<u8>,
    need: Option<usize>,
    st: &Stats,
    limit: usize,
) -> Result<(), NoRoom> {
    let (len, cap) = (rbuf.len(), rbuf.capacity());
    if cap - len >= MIN_READ {
        return Ok(());
    }
    let mut target = len + len.clamp(MIN_READ, GROW_STEP);
    if let Some(n) = need {
        target = target.min(n.max(len + MIN_READ));
    }
    let target = target.max(RBUF_INIT);
    let more = over(target) - over(cap);
    if more > 0 && limit != 0 && st.conn_buf_over.load(Relaxed) as usize + more > limit {
        return Err(NoRoom::Limit);
    }
    rbuf.try_reserve_exact(target - len)
        .map_err(|_| NoRoom::Alloc)
}

/// A fresh base-size buffer in place of `buf` (given back first).
fn fresh(buf: &mut Vec<u8>) -> bool {
    *buf = Vec::new();
    buf.try_reserve_exact(RBUF_INIT).is_ok()
}

/// The request at the front of `rbuf` carries a value that cannot be
/// received (its read buffer may not grow): answer it as memcached answers a
/// value it has no memory for (`SERVER_ERROR out of memory storing object`,
/// the key's old value dropped for a set) and return (bytes of the request
/// head, bytes of data to swallow after it). `None` when the front is not a
/// value-carrying request.
fn refuse_value(
    rbuf: &[u8],
    p: Proto,
    env: &Env<'_>,
    state: &mut ConnState,
    wbuf: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    // Parsed as if every value were too large, a storage request becomes the
    // "swallow its data" request; its error is then made the memory one.
    let none = Limits { max_item_size: 0 };
    let parsed = match p {
        Proto::Ascii => ascii::parse(rbuf, &none),
        Proto::Binary => binary::parse(rbuf, &none),
    };
    let Parsed::Done(mut req, used) = parsed else {
        return None;
    };
    let mark = wbuf.len();
    let meta = match req.cmd {
        Command::Swallow { ref mut error, .. } if *error == ErrorKind::TooLarge => {
            *error = ErrorKind::OutOfMemory;
            false
        }
        Command::Swallow {
            error: ErrorKind::OutOfMemory,
            ..
        } => false,
        Command::Meta(ref m) if m.opts.too_large => true,
        _ => return None,
    };
    let Next::Skip(skip) = execute(&req, env, state, wbuf) else {
        return None;
    };
    if meta {
        // The meta executor answered "too large" and counted it so; make it
        // the memory error.
        let too_large = b"SERVER_ERROR object too large for cache\r\n";
        if wbuf[mark..] == too_large[..] {
            wbuf.truncate(mark);
            wbuf.extend_from_slice(ascii::error_text(ErrorKind::OutOfMemory));
            wbuf.extend_from_slice(b"\r\n");
            bump(&env.stats.store_too_large, u64::MAX); // undo its count
        }
    }
    bump(&env.stats.store_no_memory, 1);
    Some((used, skip))
}

pub(super) async fn serve<S: Stream>(stream: S, fd: i32, w: Rc<Worker>) {
    serve_with(stream, fd, w, |_, _| {}).await
}

/// [`serve`], telling `at_read` before each read what is buffered: the
/// bytes of a request not yet complete and how many bytes of a data block
/// are still to be swallowed (both empty: the connection is between
/// requests). The fuzzing harness (`super::fuzzing`) drives a connection
/// through this; `serve` passes a no-op.
pub(super) async fn serve_with<S: Stream>(
    mut stream: S,
    fd: i32,
    w: Rc<Worker>,
    mut at_read: impl FnMut(&[u8], usize),
) {
    w.conns.borrow_mut().insert(fd);
    let info = w.shared.conn_table.register(fd, time::now());
    if w.shared.verbosity.load(Relaxed) >= 2 {
        eprintln!("<{fd} new client connection from {}", info.addr);
    }
    let guard = ConnGuard {
        w,
        fd,
        info: info.clone(),
        reason: std::cell::Cell::new(CloseReason::Error),
    };
    let shared = &*guard.w.shared;
    shared.watch.conn_event(&info.addr, fd, None);
    let idle_timeout = match shared.config.ext.idle_timeout {
        0 => None,
        secs => Some(Duration::from_secs(secs as u64)),
    };
    let st = &shared.stats;
    let env = Env {
        shared,
        stats: &st.workers[guard.w.id],
    };
    let limits = Limits {
        max_item_size: shared.config.max_item_size,
    };
    let limit = shared.config.read_buf_mem_limit;
    let mut meter = Meter::new(st);
    let mut rbuf: Vec<u8> = Vec::new();
    let mut wbuf: Vec<u8> = Vec::new();
    if !fresh(&mut rbuf) || !fresh(&mut wbuf) {
        st.read_buf_oom.fetch_add(1, Relaxed);
        return;
    }
    let mut proto: Option<Proto> = None;
    let mut skip = 0usize;
    let mut need: Option<usize> = None;
    let mut work = 0usize;
    let mut state = ConnState {
        fd,
        ..ConnState::default()
    };
    let mut conn_state = super::conns::NEW;
    // Sync replication: the replies written next include a write's, so
    // they wait for the partner's ack first (reads alone never wait).
    let sync = shared.replication.as_ref().is_some_and(|r| r.sync);
    let mut wrote = false;
    // `-o idle_timeout`: when the last whole request was served (a client
    // trickling a request line is as idle as a silent one).
    let mut last_request = std::time::Instant::now();
    loop {
        meter.sync(&rbuf, &wbuf);
        if let Err(why) = make_room(&mut rbuf, need, st, limit) {
            st.read_buf_oom.fetch_add(1, Relaxed);
            let refused = match (why, proto) {
                (NoRoom::Limit, Some(p)) if need.is_some() => {
                    let r = refuse_value(&rbuf, p, &env, &mut state, &mut wbuf);
                    wrote |= sync && crate::replication::journaled();
                    r
                }
                _ => None,
            };
            let Some((used, n)) = refused else {
                // memcached's answer when it cannot grow a buffer for a
                // request line; then close.
                if proto == Some(Proto::Ascii) {
                    let e = ErrorKind::Server("SERVER_ERROR out of memory reading request");
                    env::emit(&Default::default(), Response::Error(e), &mut wbuf);
                }
                if flush(&mut stream, &mut wbuf, &env, &mut wrote)
                    .await
                    .is_some()
                {
                    release(&mut rbuf, &mut wbuf, &mut meter);
                    close_gracefully(stream, fd, rbuf).await;
                }
                return;
            };
            // Everything buffered after the request's head is its data.
            let have = rbuf.len() - used;
            if n >= have {
                skip = n - have;
                rbuf.clear();
            } else {
                rbuf.drain(..used + n);
            }
            need = None;
            if rbuf.is_empty() && rbuf.capacity() > RBUF_INIT && !fresh(&mut rbuf) {
                return;
            }
            if flush(&mut stream, &mut wbuf, &env, &mut wrote)
                .await
                .is_none()
            {
                return;
            }
            continue;
        }
        at_read(&rbuf, skip);
        // Read into the spare capacity after what is already buffered.
        let len = rbuf.len();
        let (res, b) = match idle_timeout {
            None => stream.read(rbuf.slice_mut(len..)).await,
            // `-o idle_timeout`: a client that sent no whole request for
            // this long is closed, as memcached closes it (counted in
            // `idle_kicks`); in the middle of a value's data, one that sent
            // no byte for this long (memcached never closes those).
            Some(t) => {
                let wait = if need.is_some() || skip > 0 {
                    t
                } else {
                    t.saturating_sub(last_request.elapsed())
                };
                match monoio::time::timeout(wait, stream.read(rbuf.slice_mut(len..))).await {
                    Ok(r) => r,
                    Err(_) => {
                        guard.reason.set(CloseReason::IdleTimeout);
                        st.idle_kicks.fetch_add(1, Relaxed);
                        if shared.verbosity.load(Relaxed) >= 2 {
                            eprintln!("<{fd} idle timeout: closing");
                        }
                        return;
                    }
                }
            }
        };
        rbuf = b.into_inner();
        match res {
            Ok(0) => {
                guard.reason.set(CloseReason::Normal);
                break;
            }
            Err(_) => break,
            Ok(n) => bump(&env.stats.bytes_read, n as u64),
        }
        info.last_cmd.store(time::now(), Relaxed);
        // `-R`: requests served from this read before the others get a turn.
        let mut reqs = 0usize;
        let mut pos = 0;
        let mut close = false;
        need = None;
        state.held = false;
        let mut served = false;
        while pos < rbuf.len() {
            if skip > 0 {
                let k = skip.min(rbuf.len() - pos);
                pos += k;
                skip -= k;
                continue;
            }
            // With SASL on, every connection is binary (memcached binds to
            // the binary protocol): text is refused by the magic check.
            // `-B` binds every connection to one protocol.
            let p = *proto.get_or_insert_with(|| match shared.config.protocol {
                Protocol::Binary => Proto::Binary,
                Protocol::Ascii => Proto::Ascii,
                Protocol::Auto if shared.config.sasl => Proto::Binary,
                Protocol::Auto => Proto::detect(rbuf[pos]),
            });
            let parsed = match p {
                Proto::Ascii => ascii::parse(&rbuf[pos..], &limits),
                Proto::Binary => binary::parse(&rbuf[pos..], &limits),
            };
            match parsed {
                Parsed::Incomplete { need: n } => {
                    need = n;
                    break;
                }
                Parsed::Done(req, used) => {
                    pos += used;
                    work += used;
                    reqs += 1;
                    served = true;
                    let mut next = as_client(&shared.watch, fd, || {
                        execute(&req, &env, &mut state, &mut wbuf)
                    });
                    state.held = super::env::holds(&req);
                    wrote |= sync && crate::replication::journaled();
                    // A multi-get: write what it has so far, let the other
                    // connections run, go on with its next slice of keys.
                    while let Next::More(at) = next {
                        if wbuf.len() >= WBUF_HIGH {
                            meter.sync(&rbuf, &wbuf);
                            match flush(&mut stream, &mut wbuf, &env, &mut wrote).await {
                                Some(_) => {}
                                None => return,
                            }
                        }
                        yield_now(&env).await;
                        work = 0;
                        next = as_client(&shared.watch, fd, || resume(&req, &env, at, &mut wbuf));
                        wrote |= sync && crate::replication::journaled();
                    }
                    match next {
                        Next::Continue | Next::More(_) => {}
                        Next::Skip(n) => skip = n,
                        Next::Close => {
                            guard.reason.set(match req.cmd {
                                Command::Quit => CloseReason::Normal,
                                Command::Ops {
                                    name: b"shutdown", ..
                                } => CloseReason::Shutdown,
                                _ => CloseReason::Error,
                            });
                            close = true;
                            break;
                        }
                    }
                    if let Some(w) = state.watch.take() {
                        // `watch`: what this read holds after it is dropped
                        // (memcached stops reading commands); the replies
                        // before it go out, then only log lines.
                        meter.sync(&rbuf, &wbuf);
                        if !wbuf.is_empty()
                            && flush(&mut stream, &mut wbuf, &env, &mut wrote)
                                .await
                                .is_none()
                        {
                            return;
                        }
                        release(&mut rbuf, &mut wbuf, &mut meter);
                        info.state.store(super::conns::WATCH, Relaxed);
                        super::watch::stream(&mut stream, fd, w, shared).await;
                        guard.reason.set(CloseReason::Normal);
                        return;
                    }
                }
            }
            if wbuf.len() >= WBUF_HIGH {
                meter.sync(&rbuf, &wbuf);
                match flush(&mut stream, &mut wbuf, &env, &mut wrote).await {
                    Some(n) => work += n,
                    None => return,
                }
            }
            if work >= YIELD_EVERY || reqs >= shared.config.reqs_per_event {
                yield_now(&env).await;
                work = 0;
                reqs = 0;
            }
        }
        rbuf.drain(..pos);
        if served && idle_timeout.is_some() {
            last_request = std::time::Instant::now();
        }
        // `stats conns`: waiting for a value's data (memcached's conn_nread)
        // or for a command.
        let st_now = if need.is_some() {
            super::conns::NREAD
        } else {
            super::conns::READ
        };
        if st_now != conn_state {
            conn_state = st_now;
            info.state.store(st_now, Relaxed);
        }
        // `need` counted from the request's start, which is now the front.
        meter.sync(&rbuf, &wbuf);
        if !wbuf.is_empty() {
            match flush(&mut stream, &mut wbuf, &env, &mut wrote).await {
                Some(n) => work += n,
                None => return,
            }
        }
        if close {
            release(&mut rbuf, &mut wbuf, &mut meter);
            close_gracefully(stream, fd, rbuf).await;
            return;
        }
        if rbuf.is_empty() && rbuf.capacity() > BUF_SHRINK && !fresh(&mut rbuf) {
            st.read_buf_oom.fetch_add(1, Relaxed);
            return;
        }
        if wbuf.capacity() > BUF_SHRINK && !fresh(&mut wbuf) {
            st.response_obj_oom.fetch_add(1, Relaxed);
            return;
        }
    }
    drop(meter);
    drop(guard);
}

/// Before draining a closing connection: give back its output buffer and
/// all but a base read buffer (the drain reads into it).
fn release(rbuf: &mut Vec<u8>, wbuf: &mut Vec<u8>, meter: &mut Meter<'_>) {
    *wbuf = Vec::new();
    rbuf.clear();
    if rbuf.capacity() > RBUF_INIT {
        *rbuf = Vec::new();
    }
    meter.sync(rbuf, wbuf);
}

/// Write all pending output; the byte count, or `None` if the peer is gone.
/// In sync replication mode, output that includes a write's reply
/// (`wrote`: a request executed since the last flush journaled a change)
/// waits for the partner's ack first; output of reads alone goes at once.
async fn flush<S: Stream>(
    stream: &mut S,
    wbuf: &mut Vec<u8>,
    env: &Env<'_>,
    wrote: &mut bool,
) -> Option<usize> {
    if std::mem::take(wrote) {
        if let Some(r) = env.shared.replication.as_ref() {
            r.sync_wait().await; // sync replication: the partner has it first
        }
    }
    let (res, mut b) = stream.write_all(std::mem::take(wbuf)).await;
    b.clear();
    *wbuf = b;
    match res {
        Ok(n) => {
            bump(&env.stats.bytes_written, n as u64);
            Some(n)
        }
        Err(_) => None,
    }
}

/// Close a connection the server is done with: end our direction first (the
/// client sees its replies, then EOF), then read and drop what it still
/// sends, bounded in bytes and time, so closing with unread input does not
/// send a reset in place of the FIN.
async fn close_gracefully<S: Stream>(mut stream: S, fd: i32, mut buf: Vec<u8>) {
    // SAFETY: shutdown(2) on the socket this task owns (`fd` is `stream`'s)
    // and has not closed.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    if buf.capacity() == 0 && buf.try_reserve_exact(MIN_READ).is_err() {
        return;
    }
    let deadline = Instant::now() + DRAIN_TIME;
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        buf.clear();
        match monoio::time::timeout(left, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                drained += n;
                buf = b;
            }
            _ => return,
        }
    }
}

/// Give the other tasks of this loop a turn, then come back.
///
/// monoio 0.2 has no `yield_now`, and a task that wakes itself is put back
/// at the *front* of the run queue, so it would run again at once. Here the
/// yielding task parks its waker with a per-loop pump task and wakes the
/// pump; the pump runs after the tasks already queued and wakes the yielders,
/// which go to the back of the queue.
async fn yield_now(env: &Env<'_>) {
    bump(&env.stats.conn_yields, 1);
    YieldNow { parked: false }.await
}

#[derive(Default)]
struct Pump {
    started: bool,
    pump: Option<Waker>,
    parked: Vec<Waker>,
}

thread_local! {
    static PUMP: RefCell<Pump> = RefCell::new(Pump::default());
}

struct YieldNow {
    parked: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        PUMP.with(|p| {
            let mut p = p.borrow_mut();
            p.parked.push(cx.waker().clone());
            if !p.started {
                p.started = true;
                monoio::spawn(PumpTask);
            } else if let Some(w) = p.pump.take() {
                w.wake();
            }
        });
        Poll::Pending
    }
}

/// The per-loop task that wakes parked yielders (never finishes).
struct PumpTask;

impl Future for PumpTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        PUMP.with(|p| {
            let mut p = p.borrow_mut();
            for w in p.parked.drain(..) {
                w.wake();
            }
            p.pump = Some(cx.waker().clone());
        });
        Poll::Pending
    }
}
