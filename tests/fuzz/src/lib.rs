//! corecached's fuzz targets. Each takes the fuzzer's bytes, runs the
//! server's own code on them and asserts properties (a failed assertion is a
//! crash to afl):
//!
//! - [`ascii`], [`binary`], [`meta`]: the request parsers (bytes →
//!   `Request`). A parse never consumes more than it was given, consumes
//!   something when it yields a request, announces a total size larger
//!   than what it has when it asks for more, and yields the same request
//!   from exactly the bytes it consumed (nothing after them mattered).
//! - [`encode`]: the encoders fed `Response` values (and meta replies) built
//!   from the bytes. Binary output is well-framed packets echoing the
//!   request's opcode and opaque; text output is whole lines.
//! - [`conn`], [`conn_small`]: one connection's full path (read loop, parse, execute against
//!   a small real store, encode, write) over the bytes split into reads at
//!   points the bytes choose, with no socket
//!   (`corecached::server::fuzzing`). No write exceeds the connection's
//!   output bound, and when the connection is still open and between
//!   requests after the input, a probe request (`mn` / binary NOOP) gets
//!   exactly its reply.
//!
//! [`TARGETS`] lists them by name for scripts/fuzz and the replay test.

use corecached::protocol::binary::{self, HEADER_LEN, RES_MAGIC};
use corecached::protocol::meta::{self, Code, Reply};
use corecached::protocol::{
    ascii, encode as encode_response, Command, Ctx, ErrorKind, Limits, Parsed, Response, StatValue,
    MAX_KEY_LEN,
};
use corecached::server::fuzzing;

/// A target: it panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name scripts/fuzz and the corpus directories use.
pub const TARGETS: [(&str, Target); 8] = [
    ("ascii", ascii),
    ("binary", binary),
    ("meta", meta),
    ("encode", encode),
    ("conn", conn),
    ("conn_small", conn_small),
    ("replication", replication),
    ("tls", tls),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// The server's default `-I`, and 0: every value too large (the limit the
/// connection parses with when its read buffer may not grow).
const LIMITS: [Limits; 3] = [
    Limits {
        max_item_size: 1 << 20,
    },
    Limits { max_item_size: 0 },
    Limits { max_item_size: 100 },
];

/// The parser properties, for one parser and one input.
///
/// `swallow(data, used, skip)` checks a refused request's swallow: the
/// bytes consumed and the bytes to skip after them.
fn check_parse<'a>(
    data: &'a [u8],
    parse: impl Fn(&'a [u8]) -> Parsed<'a>,
    swallow: impl Fn(&[u8], usize, usize),
) {
    if data.is_empty() {
        return; // the connection never parses an empty buffer
    }
    match parse(data) {
        Parsed::Done(req, used) => {
            assert!(used > 0, "a request consumed nothing");
            assert!(
                used <= data.len(),
                "consumed {used} of {} bytes",
                data.len()
            );
            if let Command::Swallow { skip, .. } = req.cmd {
                // A refused request's data block: the connection swallows
                // `skip` more bytes after the `used` it consumed; exactly
                // what the request announced (`swallow`).
                swallow(data, used, skip);
            }
            // The request is made of the bytes it consumed: the same
            // request from exactly those bytes.
            if used < data.len() {
                match parse(&data[..used]) {
                    Parsed::Done(again, used2) => {
                        assert_eq!(used2, used, "consumed differs without the bytes after");
                        assert_eq!(
                            format!("{:?}", again),
                            format!("{:?}", req),
                            "request differs without the bytes after it"
                        );
                    }
                    Parsed::Incomplete { need } => {
                        panic!("incomplete ({need:?}) from the {used} bytes it consumed")
                    }
                }
            }
        }
        Parsed::Incomplete { need: Some(n) } => {
            assert!(
                n > data.len(),
                "asks for {n} bytes with {} given",
                data.len()
            );
        }
        Parsed::Incomplete { need: None } => {}
    }
}

/// The text parser (which also frames the meta commands).
pub fn ascii(data: &[u8]) {
    for limits in &LIMITS {
        check_parse(data, |b| ascii::parse(b, limits), text_swallow);
    }
}

/// A text storage command's data block: its length (at most memcached's
/// INT_MAX - 2) and the CRLF after it.
fn text_swallow(_: &[u8], _used: usize, skip: usize) {
    assert!(
        (2..=i32::MAX as usize).contains(&skip),
        "text swallow of {skip} bytes"
    );
}

/// A binary request's swallow ends exactly where its packet ends (the
/// header's body length).
fn binary_swallow(data: &[u8], used: usize, skip: usize) {
    let h = binary::Header::decode(data);
    assert_eq!(
        used + skip,
        HEADER_LEN + h.bodylen as usize,
        "swallow of {skip} after {used}: not the packet's end ({h:?})"
    );
}

/// The binary parser.
pub fn binary(data: &[u8]) {
    for limits in &LIMITS {
        check_parse(data, |b| binary::parse(b, limits), binary_swallow);
    }
}

/// The meta parser: the first byte picks the verb, the rest follows it on
/// the command line (through the text framing, which hands meta verbs to
/// `protocol::meta`). A meta command's key decodes, its flags tokenize.
pub fn meta(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let verb: &[u8] = match pick % 6 {
        0 => b"mg ",
        1 => b"ms ",
        2 => b"md ",
        3 => b"ma ",
        4 => b"me ",
        _ => b"mn",
    };
    let mut buf = Vec::with_capacity(verb.len() + rest.len());
    buf.extend_from_slice(verb);
    buf.extend_from_slice(rest);
    for limits in &LIMITS {
        check_parse(&buf, |b| ascii::parse(b, limits), text_swallow);
        if let Parsed::Done(req, used) = ascii::parse(&buf, limits) {
            if let Command::Meta(m) = &req.cmd {
                let mut kb = [0u8; MAX_KEY_LEN];
                let key = m.key(&mut kb);
                assert!(
                    !key.is_empty() && key.len() <= MAX_KEY_LEN,
                    "meta key {key:?}"
                );
                for t in m.flag_tokens() {
                    assert!(!t.is_empty());
                }
                if !m.data.is_empty() {
                    assert_eq!(m.data.len(), m.opts.data_len);
                    let at = m.data.as_ptr() as usize - buf.as_ptr() as usize;
                    assert!(at + m.data.len() <= used, "ms data past the request");
                }
            }
        }
    }
}

/// Reads fuzz bytes as values; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A slice of at most `max` bytes (its length from the next byte(s)).
    fn slice(&mut self, max: usize) -> &'a [u8] {
        let want = (self.u8() as usize | (self.u8() as usize) << 8) % (max + 1);
        let n = want.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn str(&mut self, max: usize) -> &'a str {
        let s = self.slice(max);
        match std::str::from_utf8(s) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&s[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

const CLIENT_ERRORS: [&str; 3] = [
    "CLIENT_ERROR bad data chunk",
    "CLIENT_ERROR invalid flag",
    "",
];

/// What the executor passes as a detail dump: its `PREFIX` lines, then
/// `END` (the text encoder writes it as is).
const DUMPS: [&[u8]; 3] = [
    b"END\r\n",
    b"PREFIX a get 1 hit 1 set 0 del 0\r\nEND\r\n",
    b"PREFIX a get 1 hit 1 set 0 del 0\r\nPREFIX b get 0 hit 0 set 2 del 1\r\nEND\r\n",
];

fn error_kind(b: &mut Bytes<'_>) -> ErrorKind {
    match b.u8() % 15 {
        0 => ErrorKind::UnknownCommand,
        1 => ErrorKind::BadFormat,
        2 => ErrorKind::BadDataChunk,
        3 => ErrorKind::LineTooLong,
        4 => ErrorKind::InvalidExptime,
        5 => ErrorKind::DeleteUsage,
        6 => ErrorKind::InvalidDelta,
        7 => ErrorKind::NonNumeric,
        8 => ErrorKind::TooLarge,
        9 => ErrorKind::OutOfMemory,
        10 => ErrorKind::TooManyConnections,
        11 => ErrorKind::AuthError,
        12 => ErrorKind::InvalidArguments,
        13 => ErrorKind::Client(CLIENT_ERRORS[b.u8() as usize % 3]),
        _ => ErrorKind::Server("SERVER_ERROR out of memory reading request"),
    }
}

fn stat_value<'a>(b: &mut Bytes<'a>) -> StatValue<'a> {
    match b.u8() % 6 {
        0 => StatValue::U64(b.u64()),
        1 => StatValue::I64(b.u64() as i64),
        2 => StatValue::Micros(b.u64()),
        3 => StatValue::F64(f64::from_bits(b.u64())),
        4 => StatValue::Str(b.str(64)),
        _ => StatValue::Bool(b.bool()),
    }
}

fn response<'a>(b: &mut Bytes<'a>) -> Response<'a> {
    match b.u8() % 31 {
        0 => Response::Value {
            key: b.slice(MAX_KEY_LEN),
            flags: b.u32(),
            cas: b.u64(),
            data: b.slice(4096),
            with_cas: b.bool(),
        },
        1 => Response::Miss {
            key: b.slice(MAX_KEY_LEN),
        },
        2 => Response::End,
        3 => Response::Stored { cas: b.u64() },
        4 => Response::NotStored,
        5 => Response::Exists,
        6 => Response::NotFound,
        7 => Response::Deleted,
        8 => Response::Touched { cas: b.u64() },
        9 => Response::Numeric {
            value: b.u64(),
            cas: b.u64(),
        },
        10 => Response::Ok,
        11 => Response::Version(b.str(64)),
        12 => Response::Stat {
            name: b.str(64),
            value: stat_value(b),
        },
        13 => Response::StatParts {
            prefix: b.str(16),
            class: b.u32(),
            name: b.str(32),
            value: stat_value(b),
        },
        14 => Response::StatsEnd,
        15 => Response::StatsReset,
        16 => Response::StatsDetailDump(DUMPS[b.u8() as usize % DUMPS.len()]),
        17 => Response::StatsDetailUsage,
        18 => Response::StatsUnknown,
        19 => Response::Quit,
        20 => Response::StoreFailed(error_kind(b)),
        21 => Response::Line(b.slice(256)),
        22 => Response::Noop,
        23 => Response::SaslMechs(b.str(64)),
        24 => Response::AuthOk,
        25 => Response::AuthContinue,
        _ => Response::Error(error_kind(b)),
    }
}

/// Binary output: whole response packets, each echoing the request's
/// opcode and opaque, extras and key inside the body.
fn check_binary_output(out: &[u8], ctx: &Ctx) {
    let mut at = 0;
    while at < out.len() {
        assert!(out.len() - at >= HEADER_LEN, "a partial header");
        let h = binary::Header::decode(&out[at..]);
        assert_eq!(h.magic, RES_MAGIC, "response magic");
        assert_eq!(h.opcode, ctx.opcode, "opcode echoed");
        assert_eq!(h.opaque, ctx.opaque, "opaque echoed");
        assert!(
            h.extlen as usize + h.keylen as usize <= h.bodylen as usize,
            "extras and key beyond the body: {h:?}"
        );
        at += HEADER_LEN + h.bodylen as usize;
        assert!(at <= out.len(), "body length past the output: {h:?}");
    }
}

/// The encoders: a context and a list of responses from the bytes, each
/// encoded in the context's protocol; then a meta reply for a meta command
/// parsed from what is left.
pub fn encode(data: &[u8]) {
    let mut b = Bytes(data);
    let ctx = Ctx {
        noreply: b.bool(),
        opcode: b.u8(),
        opaque: b.u32(),
        with_key: b.bool(),
        binary: b.bool(),
    };
    let n = b.u8() % 8;
    let mut out = Vec::new();
    for _ in 0..n {
        let r = response(&mut b);
        let mark = out.len();
        encode_response(&r, &ctx, &mut out);
        let one = &out[mark..];
        if ctx.binary {
            check_binary_output(one, &ctx);
        } else {
            assert!(
                one.is_empty() || one.ends_with(b"\r\n"),
                "not a line: {one:?}"
            );
        }
        if let Response::Value { data, .. } = r {
            let touch = ctx.binary && ctx.opcode == binary::op::TOUCH;
            if !(one.is_empty() || data.is_empty() || touch) {
                assert!(
                    one.windows(data.len()).any(|w| w == data),
                    "value missing from its reply"
                );
            }
        }
    }
    // Meta: the rest is a meta command line (verb from the next byte) and
    // the reply's fields.
    let reply = Reply {
        code: match b.u8() % 6 {
            0 => Code::Va,
            1 => Code::Hd,
            2 => Code::En,
            3 => Code::Ns,
            4 => Code::Ex,
            _ => Code::Nf,
        },
        key: b.slice(MAX_KEY_LEN),
        value: b.slice(1024),
        flags: b.u32(),
        cas: b.u64(),
        size: b.u32() as usize,
        ttl: b.u64() as i64,
        ttl_touch: b.u64() as i64,
        ttl_vivify: b.u64() as i64,
        last_access: b.u32(),
        hit_before: b.bool(),
        created: b.bool(),
        win_before: b.bool(),
        stale: b.bool(),
        won: b.bool(),
    };
    let verb: &[u8] = match b.u8() % 5 {
        0 => b"mg ",
        1 => b"ms ",
        2 => b"md ",
        3 => b"ma ",
        _ => b"me ",
    };
    let mut line = verb.to_vec();
    line.extend_from_slice(b.0);
    line.extend_from_slice(b"\r\n");
    let limits = LIMITS[0];
    if let Parsed::Done(req, _) = ascii::parse(&line, &limits) {
        if let Command::Meta(m) = &req.cmd {
            let mut out = Vec::new();
            meta::encode(m, &reply, &mut out);
            assert!(
                out.is_empty() || out.ends_with(b"\r\n"),
                "meta reply {out:?}"
            );
            if reply.code == Code::Va && !out.is_empty() {
                assert!(out.ends_with(&[reply.value, b"\r\n"].concat()));
            }
        }
    }
}

/// Split `data` into reads: the first byte picks the pattern (0: one read;
/// otherwise read sizes from a small generator seeded by it, 1 byte up to
/// 2^(seed % 12) bytes each).
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let Some((&seed, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    if seed == 0 {
        return vec![rest];
    }
    let max = 1usize << (seed % 12);
    let mut x = seed as u32 | 0x9e37_7900;
    let mut out = Vec::new();
    while !rest.is_empty() {
        // xorshift32
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (1 + x as usize % max).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Allowance past `WBUF_HIGH + -I` for one request's step: a value's header
/// line or a stats block.
const OUTPUT_SLACK: usize = 64 * 1024;

/// One connection's full path over the bytes (see [`chunks`] for the
/// splitting), the server configured as `fuzzing::ARGS`.
pub fn conn(data: &[u8]) {
    conn_with(fuzzing::ARGS, data)
}

/// [`conn`] with a 1 KiB `-I` and `-R 2` (`fuzzing::SMALL_ARGS`): refused
/// values and yields within small inputs.
pub fn conn_small(data: &[u8]) {
    conn_with(fuzzing::SMALL_ARGS, data)
}

fn conn_with(args: &'static [&'static str], data: &[u8]) {
    let o = fuzzing::run_with(args, &chunks(data));
    let bound = fuzzing::output_bound(fuzzing::max_item_size(args), OUTPUT_SLACK);
    assert!(
        o.max_write <= bound,
        "a write of {} bytes, bound {bound}",
        o.max_write
    );
    if let Some(reply) = o.probe_reply() {
        assert!(
            reply == o.probe_expected(),
            "probe after the input answered {:?}, expected {:?}",
            String::from_utf8_lossy(reply),
            String::from_utf8_lossy(o.probe_expected())
        );
    }
}

// ------------------------------------------------------------ allocations

/// Counts the allocations of a thread while it tracks (the `replication`
/// target's bounds); otherwise the system allocator as is.
mod alloc_track {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Tracking;

    thread_local! {
        // const-initialised and without a destructor: safe to touch from
        // inside the allocator.
        static ON: Cell<bool> = const { Cell::new(false) };
        static COUNT: Cell<usize> = const { Cell::new(0) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = ON.try_with(|on| {
            if on.get() {
                COUNT.with(|c| c.set(c.get() + 1));
                LARGEST.with(|l| l.set(l.get().max(size)));
            }
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged;
    // the bookkeeping only reads and writes thread-local cells.
    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note(l.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            note(l.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            note(new);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(p, l, new) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(p, l) }
        }
    }

    /// Run `f`, returning its result, how many allocations it made and
    /// the largest one (bytes).
    pub fn track<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
        COUNT.with(|c| c.set(0));
        LARGEST.with(|l| l.set(0));
        ON.with(|on| on.set(true));
        let r = f();
        ON.with(|on| on.set(false));
        (r, COUNT.with(|c| c.get()), LARGEST.with(|l| l.get()))
    }
}

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

// ------------------------------------------------------------ replication

use corecached::replication::wire::{self, Frame, Position, WireError, HDR};

/// A small payload limit beside the receiver's own: `TooLong` in reach.
const REPL_SMALL_MAX: usize = 300;

/// Set the version byte of every frame header found walking `buf` by its
/// length fields to this build's `wire::VERSION`, so the seeds stay valid
/// whatever the version (their mode byte asks for it; a fuzzer clearing
/// that bit reaches the version checks).
fn set_versions(buf: &mut [u8]) {
    let mut at = 0;
    while at + HDR <= buf.len() && buf[at..at + 2] == wire::MAGIC {
        buf[at + 2] = wire::VERSION;
        let len = u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        at = at.saturating_add(HDR).saturating_add(len as usize);
    }
}

/// The bytes a decoded frame encodes to, with the sender's own encoders.
fn reencode(f: &Frame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    match f {
        Frame::Hello {
            node_id,
            run_id,
            streams,
            host_bit,
            nonce,
        } => wire::put_hello(&mut v, *node_id, *run_id, *streams, *host_bit, nonce),
        Frame::Challenge {
            node_id,
            run_id,
            nonce,
            proof,
        } => wire::put_challenge(&mut v, *node_id, *run_id, nonce, proof),
        Frame::Auth { proof } => wire::put_auth(&mut v, proof),
        Frame::Ready {
            known_run,
            positions,
        } => wire::put_ready(&mut v, *known_run, &positions.iter().collect::<Vec<_>>()),
        Frame::Record {
            stream,
            seq,
            change,
        } => wire::record_parts(false, *stream, *seq, change)
            .expect("a decoded change frames")
            .write_to(&mut v),
        Frame::Snapshot { stream, change } => wire::record_parts(true, *stream, 0, change)
            .expect("a decoded change frames")
            .write_to(&mut v),
        Frame::SyncBegin { stream, next_seq } => wire::put_sync_begin(&mut v, *stream, *next_seq),
        Frame::SyncEnd { stream } => wire::put_sync_end(&mut v, *stream),
        Frame::Ack { entries } => {
            wire::put_ack(&mut v, entries.iter().collect::<Vec<_>>().into_iter())
        }
        Frame::Refused { reason } => wire::put_refused(&mut v, *reason),
    }
    v
}

fn be32_at(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The decoder's properties at the front of `buf` with payload limit
/// `max`; the bytes the frame there used, if one decoded.
fn check_decode(buf: &[u8], max: usize) -> Option<usize> {
    let (r, allocs, _) = alloc_track::track(|| wire::decode(buf, max));
    assert_eq!(allocs, 0, "decode allocated");
    let peeked = wire::peek(buf, max);
    match r {
        Ok(Some((f, used))) => {
            assert!(used <= buf.len(), "used {used} of {}", buf.len());
            assert!(used >= HDR);
            let len = be32_at(buf, 4);
            assert_eq!(used, HDR + len, "used is not the header's length");
            assert!(len <= max, "a payload of {len} past the limit {max}");
            assert_eq!(peeked, Ok(Some((buf[3], len))));
            // Re-encoded: exactly the consumed bytes, but for HELLO's host
            // bit (any nonzero byte decodes as set, encodes as 1).
            let mut expect = buf[..used].to_vec();
            if let Frame::Hello { host_bit, .. } = f {
                let at = HDR + 8 + 8 + 2;
                assert_eq!(host_bit, expect[at] != 0);
                expect[at] = host_bit as u8;
            }
            assert!(
                reencode(&f) == expect,
                "{f:?} re-encodes differently from the {used} bytes it came from"
            );
            // Only its own bytes mattered; every cut of them is "need more".
            assert_eq!(wire::decode(&buf[..used], max), Ok(Some((f.clone(), used))));
            for cut in [0, 1, 2, 3, HDR - 1, HDR, used / 2, used - 1] {
                if cut < used {
                    assert_eq!(wire::decode(&buf[..cut], max), Ok(None), "cut at {cut}");
                }
            }
            Some(used)
        }
        Ok(None) => {
            // Need more: the header, or the payload it announces (within
            // the limit) is not all there.
            assert!(peeked.is_ok(), "need more but peek says {peeked:?}");
            if buf.len() >= HDR {
                let len = be32_at(buf, 4);
                assert!(len <= max);
                assert!(
                    buf.len() < HDR + len,
                    "need more with the whole frame there"
                );
            }
            None
        }
        Err(e) => {
            if let Err(pe) = peeked {
                assert_eq!(e, pe, "decode and peek disagree");
            }
            if let WireError::TooLong(n) = e {
                assert!(n as usize > max, "TooLong({n}) within {max}");
            }
            // An error is final: more bytes do not undo it.
            let mut more = buf.to_vec();
            more.extend_from_slice(&[0; 16]);
            assert!(
                wire::decode(&more, max).is_err(),
                "{e} undone by more bytes"
            );
            None
        }
    }
}

/// The replication receiver: the bytes after a mode byte and a split byte
/// (see [`chunks`]) are what a partner sends after the handshake.
///
/// - The wire decoder over the stream, frame after frame, at the
///   receiver's payload limit and at a small one: no allocation; a frame
///   consumes exactly its header's length, no more than given and within
///   the limit, and re-encodes with the sender's encoders to exactly the
///   bytes it used (HELLO's host-bit byte is normalised to 0/1); "need
///   more" only when the header or the payload it announces is short; an
///   error is final and peek agrees with it.
/// - The receiver's frame handling (`replication::apply_frame` against a
///   small real store, `mode % 8` streams): the positions move as the
///   protocol says (a record applies only as the next sequence number, a
///   resend changes nothing, a gap is an error that marks the stream
///   unsynced, SYNC_BEGIN/END set them), nothing panics (the store's
///   debug assertions are on under afl), and no allocation is larger than
///   the receiver's frame limit (plus what one read brings, doubled by
///   `Vec` growth).
pub fn replication(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 0x40 != 0 && bytes.len() > 1 {
        set_versions(&mut bytes[1..]);
    }
    let stream = bytes.get(1..).unwrap_or_default();
    let mut max_payload = 0;
    for max in [REPL_SMALL_MAX, 0] {
        let max = if max == 0 {
            max_payload = replication_max_payload();
            max_payload
        } else {
            max
        };
        let mut at = 0;
        while let Some(used) = check_decode(&stream[at..], max) {
            at += used;
        }
    }
    let streams = (mode % 8) as usize;
    let chunks = chunks(&bytes);
    let input = stream.len();
    let (o, _, largest) =
        alloc_track::track(|| fuzzing::replicate(fuzzing::ARGS, streams, &chunks, check_positions));
    assert_eq!(o.max_payload, max_payload);
    let bound = 2 * (input + HDR + max_payload) + (64 << 10);
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes, bound {bound}"
    );
}

/// The receiver's payload limit, once.
fn replication_max_payload() -> usize {
    use std::sync::OnceLock;
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| fuzzing::replicate(fuzzing::ARGS, 0, &[], |_, _, _| {}).max_payload)
}

/// How one frame may move the receiver's stream positions.
fn check_positions(f: &Frame<'_>, before: &[Position], after: &[Position]) {
    let (stream, want): (u16, Option<Position>) = match *f {
        Frame::Record { stream, seq, .. } => match before.get(stream as usize) {
            Some(&p) if seq <= p.seq => (stream, Some(p)),
            Some(&p) if seq == p.seq + 1 => (stream, Some(Position { seq, ..p })),
            Some(&p) => (stream, Some(Position { synced: false, ..p })),
            None => (stream, None),
        },
        Frame::SyncBegin { stream, next_seq } => (
            stream,
            Some(Position {
                synced: false,
                seq: next_seq.saturating_sub(1),
            }),
        ),
        Frame::SyncEnd { stream } => (
            stream,
            before
                .get(stream as usize)
                .map(|&p| Position { synced: true, ..p }),
        ),
        _ => (u16::MAX, None),
    };
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if i == stream as usize {
            if let Some(w) = want {
                assert_eq!(*a, w, "stream {i} after {f:?}");
            }
        } else {
            assert_eq!(a, b, "stream {i} moved by {f:?}");
        }
    }
}

// -------------------------------------------------------------------- TLS

fn tls_files() -> fuzzing::TlsFiles {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tls");
    fuzzing::TlsFiles {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server-key.pem"),
        client_cert: d.join("client.pem"),
        client_key: d.join("client-key.pem"),
    }
}

/// Bytes a TLS record adds to what it carries (header, tag, padding), and
/// records per write.
const TLS_OVERHEAD: usize = 64;

/// One TLS connection (`fuzzing::tls_run`): the first byte picks how it is
/// driven -- `& 3`: 0 the rest is the client's raw bytes (ClientHello
/// on; the server's handshake path), 1 and 3 a real client does the
/// handshake and sends the rest as requests (the `serve` path under TLS,
/// then the probe), 2 the rest follows a real handshake raw on the wire;
/// `& 4` the server requires a client certificate (`ssl_verify_mode=2`,
/// the client has one); `& 8` the client speaks TLS 1.2. The rest is split
/// into reads as [`chunks`] does.
///
/// No panic; the connection ends within `TLS_MAX_READS` reads after the
/// input; no write is larger than the plaintext bound plus record
/// overhead; with the harness's client the handshake completes (else the
/// harness or the server's configuration is broken); and the probe, when
/// sent, gets exactly its reply.
pub fn tls(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let m = match mode & 3 {
        0 => fuzzing::TlsMode::Raw,
        2 => fuzzing::TlsMode::RawAfterHandshake,
        _ => fuzzing::TlsMode::Plaintext,
    };
    let client_auth = mode & 4 != 0;
    let tls12 = mode & 8 != 0;
    let o = fuzzing::tls_run(
        fuzzing::ARGS,
        &tls_files(),
        m,
        client_auth,
        tls12,
        &chunks(rest),
    );
    assert!(!o.capped, "still reading after {} reads", o.reads);
    let plain = fuzzing::output_bound(fuzzing::max_item_size(fuzzing::ARGS), OUTPUT_SLACK);
    let bound = plain + (plain / (16 << 10) + 1) * TLS_OVERHEAD;
    assert!(
        o.max_write <= bound,
        "a write of {} bytes, bound {bound}",
        o.max_write
    );
    if m != fuzzing::TlsMode::Raw {
        assert!(
            o.served && o.client_handshake_done,
            "the harness's client did not connect: client {:?}, server {:?}",
            o.client_error,
            o.server_error
        );
    }
    if let Some(at) = o.probe_at {
        let reply = &o.plaintext[at..];
        assert!(
            reply == o.probe_expected,
            "probe after the input answered {:?}, expected {:?}",
            String::from_utf8_lossy(reply),
            String::from_utf8_lossy(o.probe_expected)
        );
    }
}
