//! Wire protocols: bytes in → [`Request`], [`Response`] → bytes out.
//!
//! Pure code: no I/O, no locks, no clocks. Every parser takes a byte slice
//! (the connection's read buffer from the current position) and either needs
//! more bytes, or yields one request borrowing from that slice plus the number
//! of bytes it consumed. Every encoder appends to the connection's output
//! buffer. The executor (`server::exec`) sits in between and is protocol
//! agnostic; what an encoder needs to know about the request that caused a
//! response (binary opcode and opaque, noreply, meta flags) travels in [`Ctx`].

pub mod ascii;
pub mod binary;
pub mod meta;

/// memcached's key length limit (KEY_MAX_LENGTH).
pub const MAX_KEY_LEN: usize = 250;

/// How far past `-I` an announced data block (a text value, a binary body)
/// is still read and thrown away so the connection stays in sync. A block
/// announced larger than `-I` plus this is refused with the same error and
/// the connection is closed instead: no length a client announces can keep
/// a connection busy swallowing gigabytes (memcached swallows up to 2 GiB in
/// text, and misreads binary bodies of 2 GiB or more as negative lengths).
pub const SWALLOW_SLACK: usize = 16 << 20;

/// Is a data block of `skip` bytes (CRLF included) small enough to swallow?
#[inline]
pub fn may_swallow(skip: usize, max_item_size: usize) -> bool {
    skip <= max_item_size.saturating_add(SWALLOW_SLACK)
}

/// memcached's largest text data length: `vlen + 2` must fit an `int`.
pub const MAX_DATA_LEN: i32 = i32::MAX - 2;

/// Which framing a connection speaks. Decided from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Classic text protocol; meta commands arrive on the same connections.
    Ascii,
    /// Binary protocol (first byte 0x80).
    Binary,
}

impl Proto {
    /// memcached's rule: a first byte of 0x80 is the binary request magic.
    pub fn detect(first: u8) -> Proto {
        if first == binary::REQ_MAGIC {
            Proto::Binary
        } else {
            Proto::Ascii
        }
    }
}

/// Limits the parsers enforce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `-I`: largest value accepted.
    pub max_item_size: usize,
}

/// Outcome of trying to parse one request from the front of a buffer.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A request and the number of bytes it took.
    Done(Request<'a>, usize),
    /// Not enough bytes yet. `need` is the total number of bytes the request
    /// will take when known (so the reader can make room once).
    Incomplete { need: Option<usize> },
}

/// Store command family (ASCII verbs, binary opcodes, meta `ms` modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// ASCII `cas`; in binary a Set/Replace... with a non-zero CAS carries the
    /// compare in [`Command::Store::cas`] with its own mode instead.
    Cas,
}

/// The keys of a retrieval command.
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a> {
    /// One key (binary, meta).
    One(&'a [u8]),
    /// ASCII: one or more keys separated by spaces, already validated.
    Spaced(&'a [u8]),
}

impl<'a> Keys<'a> {
    /// Iterate over the keys.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        let (one, spaced) = match *self {
            Keys::One(k) => (Some(k), &b""[..]),
            Keys::Spaced(s) => (None, s),
        };
        one.into_iter()
            .chain(spaced.split(|&b| b == b' ').filter(|k| !k.is_empty()))
    }
}

/// What a client asked for, independent of the protocol it was asked in.
#[derive(Debug)]
pub enum Command<'a> {
    /// get / gets / gat / gats; binary Get*, GAT*.
    Get {
        keys: Keys<'a>,
        /// `gets`/`gats`: reply with CAS.
        with_cas: bool,
        /// gat/gats: new exptime.
        touch: Option<i64>,
    },
    /// set/add/replace/append/prepend/cas.
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        data: &'a [u8],
        /// Compare-and-swap value; 0 = none.
        cas: u64,
    },
    Delete {
        key: &'a [u8],
        /// Binary delete may carry a CAS to compare; 0 = none.
        cas: u64,
    },
    Arith {
        key: &'a [u8],
        incr: bool,
        delta: u64,
        /// Binary: create with this value and exptime when missing.
        initial: Option<(u64, i64)>,
        /// Binary CAS compare; 0 = none.
        cas: u64,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
    },
    /// flush_all; delay in seconds (0 = now). None: a text delay that is
    /// not a number (memcached counts the command, then refuses it with
    /// `CLIENT_ERROR invalid exptime argument` -- after `-F`'s refusal).
    FlushAll {
        delay: Option<i64>,
    },
    Version,
    /// `refresh_certs`: read the TLS certificate files again.
    RefreshCerts,
    Verbosity {
        level: u32,
    },
    Quit,
    /// Binary noop; meta `mn`.
    Noop,
    /// `stats [group]`, the group as the request's protocol names it.
    Stats(StatsGroup<'a>),
    /// `slabs reassign <src> <dst>` / `slabs automove <0|1|2>`.
    Slabs {
        args: &'a [u8],
    },
    /// Meta commands (mg/ms/md/ma/me), parsed by `protocol::meta`.
    Meta(meta::MetaCommand<'a>),
    SaslListMechs,
    SaslAuth {
        mech: &'a [u8],
        data: &'a [u8],
    },
    SaslStep {
        mech: &'a [u8],
        data: &'a [u8],
    },
    /// The request was malformed; answer with this error.
    Error(ErrorKind),
    /// Binary: answer with this error (`None`: answer nothing), then close
    /// the connection (bad magic, inconsistent lengths, malformed extras:
    /// the cases where memcached drops the connection).
    Close(Option<ErrorKind>),
    /// The request was malformed, its body must be skipped (`skip` more bytes
    /// after what was consumed), then answered with this error.
    /// `unlink`: a failed `set` also removes the old value (memcached does,
    /// so a stale value never outlives a failed overwrite).
    Swallow {
        error: ErrorKind,
        skip: usize,
        unlink: Option<&'a [u8]>,
    },
    /// mcrouter's `lease-get <key>` (text only; `server::admin`).
    LeaseGet {
        key: &'a [u8],
    },
    /// mcrouter's `lease-set <key> <token> <flags> <exptime> <bytes>`.
    LeaseSet {
        key: &'a [u8],
        token: u64,
        flags: u32,
        exptime: i64,
        data: &'a [u8],
    },
    /// mcrouter's `metaget <key>`.
    MetaGetInfo {
        key: &'a [u8],
    },
    /// `lru_crawler ...` (the rest of the line).
    LruCrawler {
        args: &'a [u8],
    },
    /// Operator commands served by `server::ops` (`shutdown`, `watch`):
    /// the command and the rest of its line.
    Ops {
        name: &'a [u8],
        args: &'a [u8],
    },
}

/// A `stats` request's group. Text and binary name groups differently
/// (memcached's binary Stat matches some keys as prefixes, knows fewer
/// groups and answers an unknown one "Not found"); each parser decides
/// (`ascii::stats_group`, `binary::stats_group`), the encoders render the
/// protocol's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup<'a> {
    /// The general block (no group).
    General,
    Settings,
    Items,
    Slabs,
    /// Size histograms (off, as memcached's default).
    Sizes,
    /// Per-connection stats (`server::conns`).
    Conns,
    /// Partner replication (`replication`).
    Replication,
    Reset,
    /// `detail on` (true) / `detail off` (false).
    DetailSwitch(bool),
    /// `detail dump`: the per-prefix dump.
    DetailDump,
    /// `detail` with anything else.
    DetailUsage,
    /// Text `stats cachedump <id> <limit>` (`server::admin`); the arguments.
    CacheDump(&'a [u8]),
    /// Text `stats extstore` (`server::admin`).
    Extstore,
    /// A group the protocol does not have.
    Unknown,
}

/// Per-request context the encoders need.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    /// ASCII `noreply` / binary quiet opcode / meta `q`.
    pub noreply: bool,
    /// Binary only: the request opcode and opaque.
    pub opcode: u8,
    pub opaque: u32,
    /// Binary GetK/GetKQ/GATK/GATKQ: echo the key.
    pub with_key: bool,
    pub binary: bool,
}

/// A parsed request.
#[derive(Debug)]
pub struct Request<'a> {
    pub cmd: Command<'a>,
    pub ctx: Ctx,
}

impl<'a> Request<'a> {
    pub fn new(cmd: Command<'a>) -> Self {
        Request {
            cmd,
            ctx: Ctx::default(),
        }
    }
}

/// Every error reply the server sends, protocol independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// ASCII `ERROR` (unknown command); binary 0x81.
    UnknownCommand,
    /// `CLIENT_ERROR bad command line format`; binary 0x04.
    BadFormat,
    /// `CLIENT_ERROR bad data chunk`; binary 0x04.
    BadDataChunk,
    /// `CLIENT_ERROR line too long`.
    LineTooLong,
    /// `CLIENT_ERROR invalid exptime argument`.
    InvalidExptime,
    /// `CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]`
    DeleteUsage,
    /// `CLIENT_ERROR invalid numeric delta argument`
    InvalidDelta,
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`; binary 0x06.
    NonNumeric,
    /// `SERVER_ERROR object too large for cache`; binary 0x03.
    TooLarge,
    /// `SERVER_ERROR out of memory storing object`; binary 0x82.
    OutOfMemory,
    /// `ERROR Too many open connections`.
    TooManyConnections,
    /// Binary 0x20 (SASL auth failed / required).
    AuthError,
    /// Binary 0x04 (invalid arguments: bad extras/key/body lengths).
    InvalidArguments,
    /// A free-form client error (meta flag errors and the like).
    Client(&'static str),
    /// A free-form server error.
    Server(&'static str),
}

/// One value of a `STAT` line.
#[derive(Clone, Copy, Debug)]
pub enum StatValue<'a> {
    U64(u64),
    I64(i64),
    /// seconds.micros, as memcached prints rusage.
    Micros(u64),
    F64(f64),
    Str(&'a str),
    Bool(bool),
}

/// What the executor answers, protocol independent.
#[derive(Debug)]
pub enum Response<'a> {
    /// A hit. `data` borrows the stored value (encoded while the shard lock is held).
    Value {
        key: &'a [u8],
        flags: u32,
        cas: u64,
        data: &'a [u8],
        with_cas: bool,
    },
    /// A miss on one key of a retrieval (ASCII: nothing; binary: Not found).
    Miss {
        key: &'a [u8],
    },
    /// End of a retrieval (ASCII `END`; binary: nothing).
    End,
    Stored {
        cas: u64,
    },
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched {
        cas: u64,
    },
    Numeric {
        value: u64,
        cas: u64,
    },
    /// `OK` (flush_all, verbosity, slabs ...).
    Ok,
    Version(&'a str),
    /// One `STAT name value` line.
    Stat {
        name: &'a str,
        value: StatValue<'a>,
    },
    /// A stat line whose name is built at run time (`items:1:number`).
    StatParts {
        prefix: &'a str,
        class: u32,
        name: &'a str,
        value: StatValue<'a>,
    },
    /// End of a stats block.
    StatsEnd,
    /// `stats reset` done (text `RESET`; binary: the block's terminator).
    StatsReset,
    /// `stats detail dump`: the dump's text, `PREFIX ...` lines and `END`
    /// (text: as is; binary: a `detailed` stat whose value is the text,
    /// then the terminator).
    StatsDetailDump(&'a [u8]),
    /// `stats detail` misused (text: its usage line; binary: Not found).
    StatsDetailUsage,
    /// A stats group the protocol does not have (text `ERROR`; binary:
    /// Not found).
    StatsUnknown,
    /// The reply to `quit` (text: none; binary Quit: OK, QuitQ: none).
    Quit,
    /// A store the store refused for size or memory after its value was
    /// read: the error (binary append/prepend: Not stored, as memcached's,
    /// whose value fitted but not the combined item).
    StoreFailed(ErrorKind),
    /// One free-form reply line of a text-only command (`slabs ...`):
    /// text: the line and CRLF; binary: an OK packet with the line as body.
    Line(&'a [u8]),
    /// Binary noop reply; meta `MN`.
    Noop,
    SaslMechs(&'a str),
    /// SASL success ("Authenticated").
    AuthOk,
    /// SASL: the mechanism needs another step (binary status 0x21).
    AuthContinue,
    Error(ErrorKind),
}

/// Encode one response in the request's protocol (the text encoder also
/// writes the meta protocol's `MN`).
#[inline]
pub fn encode(r: &Response<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    if ctx.binary {
        binary::encode(r, ctx, out);
    } else {
        ascii::encode(r, ctx, out);
    }
}

/// Space-separated tokens of a text command line, empty ones skipped
/// (memcached's tokenizer). `rest` is what follows the last token taken.
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    pub rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let r = &self.rest[start..];
        let end = r.iter().position(|&b| b == b' ').unwrap_or(r.len());
        self.rest = &r[end..];
        Some(&r[..end])
    }
}

/// The first `N` tokens of a line and how many there are, counted up to
/// `N + 1` ("more than `N`"): the shape every fixed-arity text command is
/// checked against. Unused slots are empty.
pub struct Fields<'a, const N: usize> {
    pub v: [&'a [u8]; N],
    pub n: usize,
}

pub fn fields<const N: usize>(line: &[u8]) -> Fields<'_, N> {
    let mut v: [&[u8]; N] = [b""; N];
    let mut n = 0;
    for t in tokens(line) {
        if n == N {
            n += 1;
            break;
        }
        v[n] = t;
        n += 1;
    }
    Fields { v, n }
}

/// Tokenize a text command line.
pub fn tokens(line: &[u8]) -> Tokens<'_> {
    Tokens { rest: line }
}

pub use crate::digits::{fmt_u64, parse_u64, strtol32, strtoul32, strtoull};

/// Append the decimal form of `v` without allocating.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(fmt_u64(v, &mut [0u8; 20]));
}

/// Append the decimal form of a signed value.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
}

/// Append a stat value as memcached prints it.
pub fn put_stat_value(out: &mut Vec<u8>, v: StatValue<'_>) {
    match v {
        StatValue::U64(n) => put_u64(out, n),
        StatValue::I64(n) => put_i64(out, n),
        StatValue::Micros(us) => {
            put_u64(out, us / 1_000_000);
            out.push(b'.');
            let frac = us % 1_000_000;
            let s = [
                (frac / 100_000) % 10,
                (frac / 10_000) % 10,
                (frac / 1_000) % 10,
                (frac / 100) % 10,
                (frac / 10) % 10,
                frac % 10,
            ];
            out.extend(s.iter().map(|d| b'0' + *d as u8));
        }
        StatValue::F64(f) => {
            use std::io::Write;
            let _ = write!(out, "{:.2}", f);
        }
        StatValue::Str(s) => out.extend_from_slice(s.as_bytes()),
        StatValue::Bool(b) => out.extend_from_slice(if b { b"yes" } else { b"no" }),
    }
}

/// memcached's key rule for text protocols: 1..=250 bytes, no spaces or
/// control characters (the tokenizer splits on space; we also refuse
/// control bytes so keys always round-trip through the text protocol).
pub fn valid_text_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        put_u64(&mut v, 0);
        v.push(b' ');
        put_u64(&mut v, u64::MAX);
        v.push(b' ');
        put_i64(&mut v, -42);
        assert_eq!(v, b"0 18446744073709551615 -42");
    }

    #[test]
    fn micros() {
        let mut v = Vec::new();
        put_stat_value(&mut v, StatValue::Micros(3_000_042));
        assert_eq!(v, b"3.000042");
    }

    #[test]
    fn keys_iter() {
        let k = Keys::Spaced(b"a  bb c");
        let all: Vec<_> = k.iter().collect();
        assert_eq!(all, vec![&b"a"[..], b"bb", b"c"]);
        assert!(valid_text_key(b"x"));
        assert!(!valid_text_key(&[b'a'; 251]));
        assert!(!valid_text_key(b"a\x01"));
    }
}
