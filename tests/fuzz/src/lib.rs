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
pub const TARGETS: [(&str, Target); 6] = [
    ("ascii", ascii),
    ("binary", binary),
    ("meta", meta),
    ("encode", encode),
    ("conn", conn),
    ("conn_small", conn_small),
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
fn check_parse<'a>(data: &'a [u8], parse: impl Fn(&'a [u8]) -> Parsed<'a>) {
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
                assert!(skip > 0 || used > 0);
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
        check_parse(data, |b| ascii::parse(b, limits));
    }
}

/// The binary parser.
pub fn binary(data: &[u8]) {
    for limits in &LIMITS {
        check_parse(data, |b| binary::parse(b, limits));
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
        check_parse(&buf, |b| ascii::parse(b, limits));
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
