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

/// The in-memory stream `serve_with` reads from and writes to.
struct Stream(Rc<RefCell<Pipe>>);

impl monoio::io::AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let mut p = self.0.borrow_mut();
        let room = buf.bytes_total();
        let chunk = match p.probe.take() {
            Some(probe) => {
                p.probe_sent = true;
                p.out.probe_at = Some(p.out.output.len());
                probe.to_vec()
            }
            None => match p.input.pop_front() {
                Some(c) => c,
                None => return (Ok(0), buf),
            },
        };
        let n = chunk.len().min(room);
        if n < chunk.len() {
            p.input.push_front(chunk[n..].to_vec());
        }
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

impl monoio::io::AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let mut p = self.0.borrow_mut();
        // SAFETY: `read_ptr` points at `bytes_init()` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        p.out.max_write = p.out.max_write.max(bytes.len());
        p.out.output.extend_from_slice(bytes);
        let n = bytes.len();
        (Ok(n), buf)
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
            .block_on(serve_with(Stream(pipe.clone()), fd, worker, at_read))
    });
    let mut p = pipe.take();
    p.out.closed_by_server = !p.read_on;
    p.out
}
