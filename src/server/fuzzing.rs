//! A connection without a socket, for the fuzz targets (tests/fuzz) and
//! their corpus replay: bytes in, the connection's output out.
//!
//! The real connection task ([`conn::serve_with`](super::conn)) runs on a
//! monoio runtime of this thread against an in-memory stream that hands it
//! the input in the chunks given (each read takes at most one chunk, and at
//! most the read buffer's spare room) and takes every write whole. So the
//! parse loop, the output bound, the data-block swallowing, the refusals and
//! the closes are the server's own code; the executor runs against a real,
//! small store of its own (one per call).
//!
//! After the last chunk, if the connection is still open and between
//! requests (nothing buffered, nothing left to swallow), a probe request is
//! sent: `mn` on a text connection, a NOOP on a binary one. Its reply is
//! returned separately, so a target can check that the connection still
//! answers after whatever came before. If the input ended inside a request,
//! the harness first finishes it (at most [`MAX_FILLS`] times, at most
//! [`MAX_FILL`] bytes each): the bytes a data block still being swallowed
//! needs, or what the server's own parser says the pending request lacks
//! (filler ending in CRLF for text, zeros for binary), or a CRLF ending a
//! text line -- then the probe, once the connection is between requests.

use super::conn::{serve_with, WBUF_HIGH};
use super::{Shared, Worker};
use crate::config::{Config, Parsed};
use crate::protocol::Proto;
use crate::protocol::{ascii, binary, Limits, Parsed as ParsedReq};
use crate::replication::wire::Position;
use crate::store::{Store, StoreConfig};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::BufResult;
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

/// The probe on a text connection...
pub const PROBE_TEXT: &[u8] = b"mn\r\n";
/// ...and its reply.
pub const PROBE_TEXT_REPLY: &[u8] = b"MN\r\n";
/// The probe on a binary connection: NOOP, opaque 0x5eed5eed...
pub const PROBE_BINARY: &[u8] = &[
    0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0xed, 0x5e, 0xed, 0, 0, 0, 0, 0, 0, 0, 0,
];
/// ...and its reply.
pub const PROBE_BINARY_REPLY: &[u8] = &[
    0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0xed, 0x5e, 0xed, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The server's arguments for a harness connection: the defaults, with a
/// small memory limit so eviction is reachable.
pub const ARGS: &[&str] = &["corecached", "-m", "2"];
/// The same with a 1 KiB `-I` (values past it are refused and swallowed
/// even in small inputs) and `-R 2` (the connection yields every two
/// requests).
pub const SMALL_ARGS: &[&str] = &["corecached", "-m", "2", "-I", "1k", "-R", "2"];

/// At most this many fills finish a request the input left pending...
pub const MAX_FILLS: usize = 4;
/// ...each at most this long (a larger pending block gets no probe).
pub const MAX_FILL: usize = 1 << 20;

/// What one connection did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Everything the server wrote, probe reply included.
    pub output: Vec<u8>,
    /// The largest single write (the pending output at one flush).
    pub max_write: usize,
    /// The connection's protocol (from the first input byte).
    pub proto: Option<Proto>,
    /// Bytes the harness sent to finish a request the input left pending.
    pub filled: usize,
    /// The probe was sent (the connection was open and between requests
    /// after the input); the probe's reply is `output[probe_at..]`.
    pub probe_at: Option<usize>,
    /// The server ended the connection itself (`quit`, a framing error, a
    /// refusal) instead of reading on after the input.
    pub closed_by_server: bool,
}

impl Outcome {
    /// The probe's reply, when it was sent.
    pub fn probe_reply(&self) -> Option<&[u8]> {
        self.probe_at.map(|at| &self.output[at..])
    }

    /// The probe's expected reply for this connection's protocol.
    pub fn probe_expected(&self) -> &'static [u8] {
        match self.proto {
            Some(Proto::Binary) => PROBE_BINARY_REPLY,
            _ => PROBE_TEXT_REPLY,
        }
    }
}

/// The most one flush may carry: output is written once it passes
/// `WBUF_HIGH` (conn.rs), so a write holds less than that plus what one
/// step of one request adds -- one value with its header (at most `-I`), or
/// a block of stats lines. `slack` is the allowance for that header or
/// block.
pub fn output_bound(max_item_size: usize, slack: usize) -> usize {
    WBUF_HIGH + max_item_size + slack
}

/// `-I` of the harness's server run with `args`.
pub fn max_item_size(args: &'static [&'static str]) -> usize {
    config(args).max_item_size
}

/// The configuration `args` parse to (parsed once per thread).
fn config(args: &'static [&'static str]) -> Config {
    thread_local! {
        static CONFIGS: RefCell<Vec<(&'static [&'static str], Config)>> = const { RefCell::new(Vec::new()) };
    }
    CONFIGS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, cfg)) = c.iter().find(|(a, _)| *a == args) {
            return cfg.clone();
        }
        let cfg = match Config::from_args(args) {
            Parsed::Run(cfg) => *cfg,
            Parsed::Exit(msg, _) => panic!("harness config {args:?}: {msg}"),
        };
        c.push((args, cfg.clone()));
        cfg
    })
}

fn shared(config: Config) -> Shared {
    let store = Store::new(StoreConfig::for_server(
        config.memory_limit,
        1,
        config.max_item_size,
        config.no_evict,
        config.chunk_size,
        config.growth_factor,
    ));
    Shared::new(config, store, 1, None, None)
}

#[derive(Default)]
struct Pipe {
    input: VecDeque<Vec<u8>>,
    /// The probe to send on the next read, once armed.
    probe: Option<&'static [u8]>,
    probe_sent: bool,
    fills: usize,
    /// The connection asked for more after the whole input.
    read_on: bool,
    out: Outcome,
}

/// What an in-memory stream ([`Mem`]) reads from and writes to.
trait Wire {
    /// The bytes for the next read, at most `room` of them; None: end of
    /// stream (the read returns 0).
    fn next_read(&mut self, room: usize) -> Option<Vec<u8>>;
    /// Takes one write, whole.
    fn wrote(&mut self, bytes: &[u8]);
}

/// An in-memory stream over a [`Wire`]: the connection code's socket in the
/// harnesses (vectored reads and writes are not used by connections).
struct Mem<W>(W);

impl<W: Wire> monoio::io::AsyncReadRent for Mem<W> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let Some(chunk) = self.0.next_read(buf.bytes_total()) else {
            return (Ok(0), buf);
        };
        let n = chunk.len().min(buf.bytes_total());
        // SAFETY: `write_ptr` points at `bytes_total()` writable bytes and
        // `n` is at most that; the source is a distinct allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.write_ptr(), n);
            buf.set_init(n);
        }
        (Ok(n), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        (
            Err(std::io::Error::other("readv is not used by connections")),
            buf,
        )
    }
}

impl<W: Wire> monoio::io::AsyncWriteRent for Mem<W> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` points at `bytes_init()` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        self.0.wrote(bytes);
        (Ok(bytes.len()), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (
            Err(std::io::Error::other("writev is not used by connections")),
            buf,
        )
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The in-memory stream `serve_with` reads from and writes to.
struct Stream(Rc<RefCell<Pipe>>);

impl Wire for Stream {
    fn next_read(&mut self, room: usize) -> Option<Vec<u8>> {
        let mut p = self.0.borrow_mut();
        let mut chunk = match p.probe.take() {
            Some(probe) => {
                p.probe_sent = true;
                p.out.probe_at = Some(p.out.output.len());
                probe.to_vec()
            }
            None => p.input.pop_front()?,
        };
        if chunk.len() > room {
            p.input.push_front(chunk.split_off(room));
        }
        Some(chunk)
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let mut p = self.0.borrow_mut();
        p.out.max_write = p.out.max_write.max(bytes.len());
        p.out.output.extend_from_slice(bytes);
    }
}

thread_local! {
    /// One runtime per thread for every harness connection: the loop's
    /// yield pump (conn.rs) is a task that lives as long as its runtime.
    static RUNTIME: RefCell<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> =
        RefCell::new(
            monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("harness runtime"),
        );
    /// A descriptor that is not a socket, for the connection's fd: the
    /// connection table asks it for addresses (none), the close shuts it
    /// down (ENOTSOCK).
    static NOT_A_SOCKET: std::fs::File = std::fs::File::open("/dev/null").expect("/dev/null");
}

/// The process-wide switches a previous connection may have flipped
/// (`stats detail on`, `lru_crawler disable|sleep|tocrawl`), back to a
/// fresh server's, so each run depends on its own input only.
fn reset_switches(config: &Config) {
    use std::sync::atomic::Ordering::Relaxed;
    super::detail::init(config);
    super::detail::clear();
    super::env::CRAWLER_ON.store(true, Relaxed);
    super::env::CRAWLER_SLEEP.store(100, Relaxed);
    super::env::CRAWLER_TOCRAWL.store(0, Relaxed);
}

/// The bytes that finish what the connection has pending: the rest of a
/// data block being swallowed, the rest of a request the parser knows the
/// size of (filler ending in CRLF for text, zeros for binary), the rest of
/// a binary header, or a CRLF ending a text line.
fn fill(buffered: &[u8], skip: usize, proto: Option<Proto>, limits: &Limits) -> Option<Vec<u8>> {
    let binary = proto == Some(Proto::Binary);
    let n = if skip > 0 {
        skip
    } else {
        let parsed = if binary {
            binary::parse(buffered, limits)
        } else {
            ascii::parse(buffered, limits)
        };
        match parsed {
            ParsedReq::Incomplete { need: Some(n) } if n > buffered.len() => n - buffered.len(),
            ParsedReq::Incomplete { .. } if binary => {
                binary::HEADER_LEN.saturating_sub(buffered.len()).max(1)
            }
            ParsedReq::Incomplete { .. } => return Some(b"\r\n".to_vec()),
            ParsedReq::Done(..) => return None,
        }
    };
    if n > MAX_FILL {
        return None;
    }
    let mut v = vec![if binary { 0 } else { b'x' }; n];
    if !binary && skip == 0 {
        let crlf = &b"\r\n"[2usize.saturating_sub(n)..];
        v[n - crlf.len()..].copy_from_slice(crlf);
    }
    Some(v)
}

/// Run one connection over `chunks`, then the probe if it is still open and
/// between requests. A fresh store and stats each time; the server's
/// configuration is [`ARGS`].
pub fn run(chunks: &[&[u8]]) -> Outcome {
    run_with(ARGS, chunks)
}

/// [`run`] with the server configured by `args` (e.g. [`SMALL_ARGS`]).
pub fn run_with(args: &'static [&'static str], chunks: &[&[u8]]) -> Outcome {
    let proto = chunks
        .iter()
        .find_map(|c| c.first())
        .map(|&b| Proto::detect(b));
    let pipe = Rc::new(RefCell::new(Pipe {
        input: chunks
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.to_vec())
            .collect(),
        out: Outcome {
            proto,
            ..Outcome::default()
        },
        ..Pipe::default()
    }));
    let fd = NOT_A_SOCKET.with(|f| f.as_raw_fd());
    let shared = shared(config(args));
    reset_switches(&shared.config);
    let worker = Rc::new(Worker {
        id: 0,
        shared: Arc::new(shared),
        conns: RefCell::new(HashSet::new()),
    });
    let at_read = {
        let pipe = pipe.clone();
        let limits = Limits {
            max_item_size: worker.shared.config.max_item_size,
        };
        move |buffered: &[u8], skip: usize| {
            let mut p = pipe.borrow_mut();
            if !p.input.is_empty() || p.probe_sent {
                return;
            }
            p.read_on = true;
            if buffered.is_empty() && skip == 0 {
                p.probe = Some(match proto {
                    Some(Proto::Binary) => PROBE_BINARY,
                    _ => PROBE_TEXT,
                });
            } else if p.fills < MAX_FILLS {
                if let Some(fill) = fill(buffered, skip, proto, &limits) {
                    p.fills += 1;
                    p.out.filled += fill.len();
                    p.input.push_back(fill);
                    p.read_on = false;
                }
            }
        }
    };
    RUNTIME.with(|rt| {
        rt.borrow_mut()
            .block_on(serve_with(Mem(Stream(pipe.clone())), fd, worker, at_read))
    });
    let mut p = pipe.take();
    p.out.closed_by_server = !p.read_on;
    p.out
}

// ------------------------------------------------------------ replication

/// What the receiver did with a replication byte stream ([`replicate`]).
#[derive(Debug, Default)]
pub struct ReplOutcome {
    /// Frames decoded and handed to the receiver's `apply_frame`.
    pub frames: usize,
    /// Bytes of ACK frames the receiver wrote back.
    pub acked: usize,
    /// Why the link would have ended (a decode or apply error; `None`:
    /// the input ended, the link would read on).
    pub error: Option<String>,
    /// Bytes left buffered (a partial frame) at the end.
    pub pending: usize,
    /// The receiver's payload limit (`link::max_payload`).
    pub max_payload: usize,
}

/// The receiver's side of a replication link after its handshake, over
/// `chunks` (each one read), against a fresh store: the decode / apply /
/// acknowledge loop of `link::receive` (which is bound to a `TcpStream`),
/// calling the receiver's own `apply_frame` on each decoded frame, with
/// `streams` streams announced and the receiver's payload limit
/// (`link::max_payload`). `each` sees every frame with the stream
/// positions before and after it.
pub fn replicate(
    args: &'static [&'static str],
    streams: usize,
    chunks: &[&[u8]],
    mut each: impl FnMut(&crate::replication::wire::Frame<'_>, &[Position], &[Position]),
) -> ReplOutcome {
    use crate::replication::wire::{self, HDR};
    let config = config(args);
    let store = Store::new(StoreConfig::for_server(
        config.memory_limit,
        1,
        config.max_item_size,
        config.no_evict,
        config.chunk_size,
        config.growth_factor,
    ));
    let rcfg = crate::config::ReplicationConfig {
        partner: None,
        listen: None,
        mode: crate::config::ReplicationMode::Async,
        timeout_ms: 1000,
        secret: crate::config::Secret(b"fuzz".to_vec()),
        backlog: 0,
        backlog_age_secs: 0,
        rejoin_wait_secs: 0,
        tls: false,
        partner_name: None,
    };
    let repl = crate::replication::Replication::start(&rcfg, &store).expect("replication");
    let sh = Shared::new(config, store, 1, None, Some(repl));
    let max = crate::replication::max_payload(&sh);
    let mut positions = vec![Position::default(); streams];
    let mut before = positions.clone();
    let mut dirty: Vec<u16> = Vec::with_capacity(64);
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut o = ReplOutcome {
        max_payload: max,
        ..ReplOutcome::default()
    };
    for c in chunks {
        buf.extend_from_slice(c);
        let mut at = 0;
        loop {
            let (f, used) = match wire::decode(&buf[at..], max) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    o.error = Some(e.to_string());
                    return o;
                }
            };
            before.copy_from_slice(&positions);
            let seen = f.clone();
            o.frames += 1;
            let r = crate::replication::apply_frame(&sh, &mut positions, f, &mut dirty);
            each(&seen, &before, &positions);
            if let Err(e) = r {
                o.error = Some(e.to_string());
                return o;
            }
            at += used;
        }
        buf.drain(..at);
        if !dirty.is_empty() {
            wire::put_ack(
                &mut out,
                dirty.iter().map(|&i| (i, positions[i as usize].seq)),
            );
            dirty.clear();
            o.acked += out.len();
            out.clear();
        }
        // link::receive's read sizing: a whole frame's room once started.
        match wire::peek(&buf, max) {
            Ok(Some((_, len))) if buf.len() < HDR + len => buf.reserve(HDR + len - buf.len()),
            Err(e) => {
                o.error = Some(e.to_string());
                return o;
            }
            _ => buf.reserve(64 << 10),
        }
    }
    o.pending = buf.len();
    o
}

// -------------------------------------------------------------------- TLS

/// The certificate files of a TLS harness run (tests/fuzz/tls: a test CA,
/// a server and a client certificate with their keys).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

/// How a TLS harness connection is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// The chunks are the client's raw bytes from the first one on (the
    /// ClientHello and whatever follows): the server's handshake path.
    Raw,
    /// A real rustls client (trusting the test CA) does the handshake,
    /// then sends the chunks as application data; the probe follows when
    /// the connection is between requests: the `serve` path under TLS.
    Plaintext,
    /// A real client does the handshake, then the chunks go on the wire
    /// raw (records the server cannot decrypt or parse); no probe after.
    RawAfterHandshake,
}

/// What one TLS connection did.
#[derive(Debug, Default)]
pub struct TlsOutcome {
    /// The handshake finished on the server (its acceptor returned a
    /// stream and `serve` ran).
    pub served: bool,
    /// The client finished its handshake.
    pub client_handshake_done: bool,
    /// The client's error, if it failed (a bad record from the server...).
    pub client_error: Option<String>,
    /// The server's error from its handshake, if it failed.
    pub server_error: Option<String>,
    /// Raw bytes the server wrote, and the largest single write.
    pub raw_written: usize,
    pub max_write: usize,
    /// Reads the server made (bounded by the harness: see `capped`).
    pub reads: usize,
    /// The harness stopped feeding because the reads passed its cap.
    pub capped: bool,
    /// The replies the client decrypted (probe reply included).
    pub plaintext: Vec<u8>,
    /// Where the probe's reply starts in `plaintext`, if it was sent.
    pub probe_at: Option<usize>,
    /// The probe's expected reply (text or binary by the first byte).
    pub probe_expected: &'static [u8],
}

/// Reads after which the harness only answers end-of-file.
pub const TLS_MAX_READS: usize = 100_000;

struct TlsPipe {
    /// Raw bytes for the server's next reads.
    to_server: VecDeque<Vec<u8>>,
    /// What the server wrote that the client has not taken yet.
    from_server: Vec<u8>,
    client: Option<rustls::ClientConnection>,
    /// Application data the client sends after its handshake...
    plain: VecDeque<Vec<u8>>,
    /// ...or raw bytes that follow the handshake on the wire.
    raw_after: VecDeque<Vec<u8>>,
    probe: &'static [u8],
    /// `serve` announced the read in progress (`at_read`; the drain after
    /// a close is not announced) with nothing of a request buffered.
    between: bool,
    probe_sent: bool,
    /// The server is gone: the client only reads.
    done: bool,
    /// Raw bytes followed the handshake: the records are no longer the
    /// client's, so no probe (it would land inside whatever they began).
    raw_sent: bool,
    out: TlsOutcome,
}

impl TlsPipe {
    /// Let the client take the server's output, then queue what it sends
    /// next. False: nothing more will come (end of file for the server).
    fn pump(&mut self) -> bool {
        let Some(cl) = self.client.as_mut() else {
            return false;
        };
        let mut at = 0;
        let mut failed = None;
        let mut stuck = 0;
        while at < self.from_server.len() && stuck < 2 {
            match cl.read_tls(&mut &self.from_server[at..]) {
                Ok(n) if n > 0 => {
                    at += n;
                    stuck = 0;
                }
                _ => stuck += 1, // its buffer is full: process, then go on
            }
            if let Err(e) = cl.process_new_packets() {
                failed = Some(e.to_string());
                break;
            }
            let mut b = [0u8; 16 << 10];
            while let Ok(n @ 1..) = std::io::Read::read(&mut cl.reader(), &mut b) {
                self.out.plaintext.extend_from_slice(&b[..n]);
            }
        }
        self.from_server.drain(..at);
        if let Some(e) = failed {
            self.out.client_error = Some(e);
            self.client = None;
            return false;
        }
        if self.done {
            return false;
        }
        let mut raw = None;
        if !cl.is_handshaking() {
            self.out.client_handshake_done = true;
            if let Some(p) = self.plain.pop_front() {
                std::io::Write::write_all(&mut cl.writer(), &p).expect("client write");
            } else if let Some(r) = self.raw_after.pop_front() {
                raw = Some(r); // after what the client still has to send
                self.raw_sent = true;
            } else if self.between && !self.probe_sent && self.out.served && !self.raw_sent {
                self.probe_sent = true;
                self.out.probe_at = Some(self.out.plaintext.len());
                std::io::Write::write_all(&mut cl.writer(), self.probe).expect("client write");
            }
        }
        while cl.wants_write() {
            let mut v = Vec::new();
            if cl.write_tls(&mut v).is_err() || v.is_empty() {
                break;
            }
            self.to_server.push_back(v);
        }
        self.to_server.extend(raw);
        !self.to_server.is_empty()
    }
}

/// The in-memory stream under the server's TLS acceptor.
struct TlsWire(Rc<RefCell<TlsPipe>>);

impl Wire for TlsWire {
    fn next_read(&mut self, room: usize) -> Option<Vec<u8>> {
        let mut p = self.0.borrow_mut();
        p.out.reads += 1;
        if p.out.reads > TLS_MAX_READS {
            p.out.capped = true;
            return None;
        }
        if p.to_server.is_empty() && !p.pump() {
            return None;
        }
        let mut chunk = p.to_server.pop_front().expect("pumped");
        if chunk.len() > room {
            p.to_server.push_front(chunk.split_off(room));
        }
        Some(chunk)
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let mut p = self.0.borrow_mut();
        p.out.max_write = p.out.max_write.max(bytes.len());
        p.out.raw_written += bytes.len();
        p.from_server.extend_from_slice(bytes);
    }
}

/// The TLS stream as `serve` sees it: a read ends what `at_read`
/// announced, so the probe goes only to an announced read.
struct Announced<S>(S, Rc<RefCell<TlsPipe>>);

impl<S: monoio::io::AsyncReadRent> monoio::io::AsyncReadRent for Announced<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.0.read(buf).await;
        self.1.borrow_mut().between = false;
        r
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let r = self.0.readv(buf).await;
        self.1.borrow_mut().between = false;
        r
    }
}

impl<S: monoio::io::AsyncWriteRent> monoio::io::AsyncWriteRent for Announced<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.0.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.0.writev(buf).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.0.shutdown().await
    }
}

/// The server's TLS settings for a harness run: the test certificate,
/// and with `client_auth` memcached's `ssl_verify_mode=2` (a client
/// certificate from the test CA required).
fn tls_settings(files: &TlsFiles, client_auth: bool) -> crate::config::TlsSettings {
    crate::config::TlsSettings {
        chain_cert: Some(files.server_cert.clone()),
        key: Some(files.server_key.clone()),
        ca_cert: client_auth.then(|| files.ca.clone()),
        verify_mode: if client_auth { 2 } else { 0 },
        min_version: 2,
        session_cache: false,
        replication: false,
    }
}

fn tls_client(
    files: &TlsFiles,
    client_auth: bool,
    tls12: bool,
) -> Result<rustls::ClientConnection, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let pem = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = |p: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        rustls_pemfile::certs(&mut &pem(p)?[..])
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&files.ca)? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let cfg = if client_auth {
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut &pem(&files.client_key)?[..])
                .map_err(|e| e.to_string())?
                .ok_or("no client key")?;
        b.with_client_auth_cert(certs(&files.client_cert)?, key)
            .map_err(|e| e.to_string())?
    } else {
        b.with_no_client_auth()
    };
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())
}

/// One TLS connection to a server configured as `args` plus `-Z` with the
/// test certificate (`client_auth`: `ssl_verify_mode=2` with the test CA;
/// `tls12`: the harness's client speaks TLS 1.2 instead of 1.3), driven as
/// `mode` says over `chunks`: the server's own `Tls::load`, its acceptor
/// and then `serve`, all over an in-memory stream, as `accept_loop` runs
/// them (without its 10 s handshake timer: the harness ends every input
/// with end-of-file).
pub fn tls_run(
    args: &'static [&'static str],
    files: &TlsFiles,
    mode: TlsMode,
    client_auth: bool,
    tls12: bool,
    chunks: &[&[u8]],
) -> TlsOutcome {
    let mut config = config(args);
    let settings = tls_settings(files, client_auth);
    config.tls = Some(settings.clone());
    let tls = super::tls::Tls::load(&settings, crate::time::now()).expect("test certificates");
    let acceptor = tls.acceptor();
    let chunks: VecDeque<Vec<u8>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect();
    let first = match mode {
        TlsMode::Plaintext => chunks.iter().find_map(|c| c.first().copied()),
        _ => None,
    };
    let client = match mode {
        TlsMode::Raw => None,
        _ => Some(tls_client(files, client_auth, tls12).expect("harness client")),
    };
    let (to_server, plain, raw_after) = match mode {
        TlsMode::Raw => (chunks, VecDeque::new(), VecDeque::new()),
        TlsMode::Plaintext => (VecDeque::new(), chunks, VecDeque::new()),
        TlsMode::RawAfterHandshake => (VecDeque::new(), VecDeque::new(), chunks),
    };
    let probe_binary = first.map(Proto::detect) == Some(Proto::Binary);
    let pipe = Rc::new(RefCell::new(TlsPipe {
        to_server,
        from_server: Vec::new(),
        client,
        plain,
        raw_after,
        probe: if probe_binary {
            PROBE_BINARY
        } else {
            PROBE_TEXT
        },
        between: false,
        probe_sent: false,
        done: false,
        raw_sent: false,
        out: TlsOutcome {
            probe_expected: if probe_binary {
                PROBE_BINARY_REPLY
            } else {
                PROBE_TEXT_REPLY
            },
            ..TlsOutcome::default()
        },
    }));
    let fd = NOT_A_SOCKET.with(|f| f.as_raw_fd());
    let shared = shared_with_tls(config, tls);
    reset_switches(&shared.config);
    let worker = Rc::new(Worker {
        id: 0,
        shared: Arc::new(shared),
        conns: RefCell::new(HashSet::new()),
    });
    let at_read = {
        let pipe = pipe.clone();
        move |buffered: &[u8], skip: usize| {
            pipe.borrow_mut().between = buffered.is_empty() && skip == 0;
        }
    };
    let wire = Mem(TlsWire(pipe.clone()));
    RUNTIME.with(|rt| {
        rt.borrow_mut().block_on(async {
            match acceptor.accept(wire).await {
                Ok(stream) => {
                    pipe.borrow_mut().out.served = true;
                    let stream = Announced(stream, pipe.clone());
                    serve_with(stream, fd, worker, at_read).await
                }
                Err(e) => {
                    // accept_loop counts it; the connection ends.
                    if let Some(t) = &worker.shared.tls {
                        t.handshake_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    pipe.borrow_mut().out.server_error = Some(e.to_string());
                }
            }
        })
    });
    // The client takes what the server wrote last (its replies, its alert
    // or close_notify).
    let mut p = pipe.borrow_mut();
    p.done = true;
    p.pump();
    std::mem::take(&mut p.out)
}

fn shared_with_tls(config: Config, tls: super::tls::Tls) -> Shared {
    let store = Store::new(StoreConfig::for_server(
        config.memory_limit,
        1,
        config.max_item_size,
        config.no_evict,
        config.chunk_size,
        config.growth_factor,
    ));
    Shared::new(config, store, 1, Some(tls), None)
}

// -------------------------------------------------------------- isolation

/// A client stream whose first read hands over `first` and whose next read
/// panics: a bug inside a connection's task, as far as its loop can tell.
struct PanicAfter {
    first: Option<&'static [u8]>,
    out: Rc<RefCell<Vec<u8>>>,
}

impl Wire for PanicAfter {
    fn next_read(&mut self, _room: usize) -> Option<Vec<u8>> {
        match self.first.take() {
            Some(first) => Some(first.to_vec()),
            None => panic!("test: a panic inside a connection's task"),
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        self.out.borrow_mut().extend_from_slice(bytes);
    }
}

/// What [`panic_isolation`] saw.
#[derive(Debug)]
pub struct Isolation {
    /// The panicking connection's output (its reply before the panic).
    pub first: Vec<u8>,
    /// A second connection's output, served on the same loop afterwards.
    pub second: Vec<u8>,
    /// `curr_connections` once both ended.
    pub curr_connections: u64,
}

/// Two connections admitted the way the accept loop admits them
/// (`conn::admit`, the real `serve`) on one loop: the first stores a key,
/// then its task panics; the second, admitted after, sends `second`.
pub fn panic_isolation(second: &[u8]) -> Isolation {
    let fd = NOT_A_SOCKET.with(|f| f.as_raw_fd());
    let shared = shared(config(ARGS));
    reset_switches(&shared.config);
    let worker = Rc::new(Worker {
        id: 0,
        shared: Arc::new(shared),
        conns: RefCell::new(HashSet::new()),
    });
    let first = Rc::new(RefCell::new(Vec::new()));
    let pipe = Rc::new(RefCell::new(Pipe {
        input: VecDeque::from([second.to_vec()]),
        ..Pipe::default()
    }));
    let stream = Mem(PanicAfter {
        first: Some(b"set k 0 0 1\r\nx\r\n"),
        out: first.clone(),
    });
    let w = worker.clone();
    let p = pipe.clone();
    RUNTIME.with(|rt| {
        rt.borrow_mut().block_on(async move {
            let serve =
                move |s: Mem<PanicAfter>, w| async move { super::conn::serve(s, fd, w).await };
            super::conn::admit(Ok(stream), &w, serve).await;
            // Let the first connection run into its panic before the second
            // one is admitted.
            for _ in 0..2000 {
                if w.shared
                    .stats
                    .conn_panics
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                {
                    break;
                }
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let serve = move |s: Mem<Stream>, w| async move { super::conn::serve(s, fd, w).await };
            super::conn::admit(Ok(Mem(Stream(p))), &w, serve).await;
            for _ in 0..2000 {
                if w.shared
                    .stats
                    .curr_connections
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
                {
                    break;
                }
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    });
    let second = std::mem::take(&mut pipe.borrow_mut().out.output);
    let first = first.take();
    Isolation {
        first,
        second,
        curr_connections: worker
            .shared
            .stats
            .curr_connections
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    /// A panic in one connection's task closes that connection only: the
    /// loop goes on, the next connection reads what the first stored, the
    /// panic is counted in `stats` and the connection count is given back.
    /// Without `conn::Isolated` the panic unwinds out of the loop (and this
    /// test) instead.
    #[test]
    fn a_panic_in_a_connection_ends_that_connection_only() {
        let seen = super::panic_isolation(b"get k\r\nstats\r\n");
        assert_eq!(seen.first, b"STORED\r\n");
        let text = String::from_utf8_lossy(&seen.second);
        assert!(text.starts_with("VALUE k 0 1\r\nx\r\nEND\r\n"), "{text}");
        assert!(text.contains("STAT conn_panics 1\r\n"), "{text}");
        let at = |name: &str| text.find(&format!("STAT {name} ")).expect(name);
        assert!(at("rejected_connections") < at("conn_panics"));
        assert!(at("conn_panics") < at("connection_structures"));
        assert_eq!(seen.curr_connections, 0);
    }
}
