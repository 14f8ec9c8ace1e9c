//! memcached's meta text protocol: `mg`, `ms`, `md`, `ma`, `me` (`mn` is
//! parsed by the ASCII framing as [`Command::Noop`]).
//!
//! Pure code, like the other protocol modules. [`parse`] validates a meta
//! command line exactly as memcached 1.6.18 does (same checks, same order,
//! same error texts; flags newer than 1.6.18 — `E`, `x`, `ms s`, `ms N`,
//! `mg C` — follow memcached's current doc/protocol.txt) and yields a
//! [`MetaCommand`] borrowing the line. The flags are kept as sent: a reply
//! walks them in request order, as memcached does, and [`encode`] writes the
//! reply from a [`Reply`] the executor fills while it holds the shard lock.
//!
//! Nothing here allocates: a base64 key is decoded into a caller's stack
//! buffer ([`MetaCommand::key`]), and replies are appended to the output.

use super::{put_i64, put_u64, Command, ErrorKind, Limits, Parsed, Request, MAX_KEY_LEN};

/// memcached counts the command, key and a terminal token; more than this
/// many tokens is "options flags too long".
const MAX_TOKENS: usize = 20;
/// Longest opaque token, the `O` included.
const MAX_OPAQUE: usize = 32;
/// memcached's item header (48) + CAS (8), for the too-large rule.
const ITEM_HEADER: usize = 48 + 8;

const E_TOO_LONG_MG: &str = "CLIENT_ERROR options flags are too long";
const E_TOO_LONG: &str = "CLIENT_ERROR options flags too long";
const E_DUP: &str = "CLIENT_ERROR duplicate flag";
const E_INVALID: &str = "CLIENT_ERROR invalid flag";
const E_INVALID_OR_DUP: &str = "CLIENT_ERROR invalid or duplicate flag";
const E_DECODE: &str = "CLIENT_ERROR error decoding key";
const E_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
const E_M_LEN: &str = "CLIENT_ERROR incorrect length for M token";
const E_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
const E_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
const E_FORMAT: &str = "CLIENT_ERROR bad command line format";
/// The opaque-too-long error (public: `ma` reports it after its update).
pub const E_OPAQUE: &str = "CLIENT_ERROR opaque token too long";
const E_MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
const E_MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
    /// `me`
    Debug,
}

/// The flags of a meta command, parsed. Token-less flags that only ask for a
/// field in the reply (`c f h k l O s t`) are not stored: [`encode`] reads
/// them from [`MetaCommand::flags`] in request order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaOpts {
    /// `b`: the key is base64; replies carry it base64 with a `b` flag.
    pub base64: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: hide the nominal reply (mg: `EN`; ms/md/ma: `HD`).
    pub quiet: bool,
    /// `u`: do not bump (no fetched mark, no access time).
    pub no_bump: bool,
    /// `I`: invalidate (md: mark stale; ms: store stale if the CAS is older).
    pub invalidate: bool,
    /// `x` (md): empty the value, keep the item.
    pub remove_value: bool,
    /// `C`: compare CAS.
    pub compare_cas: Option<u64>,
    /// `E`: explicit new CAS.
    pub new_cas: Option<u64>,
    /// `F`: client flags (ms).
    pub client_flags: u32,
    /// `T`: TTL (client exptime, as memcached's 32-bit value).
    pub ttl: Option<i64>,
    /// `N`: vivify on miss with this TTL.
    pub vivify: Option<i64>,
    /// `R`: win the recache below this remaining TTL.
    pub recache: Option<i64>,
    /// Token positions (1-based, 0 = absent) of `T`, `N`, `R`: memcached
    /// applies them in request order.
    pub pos_t: u8,
    pub pos_n: u8,
    pub pos_r: u8,
    /// `M`: mode character (0 = none).
    pub mode: u8,
    /// `D` (ma): delta, default 1.
    pub delta: u64,
    /// `J` (ma): initial value on vivify, default 0.
    pub initial: u64,
    /// An `O` token is longer than 32 bytes (ma reports it after updating).
    pub opaque_too_long: bool,
    /// `ms` only: the item would exceed `-I`. The executor answers
    /// `SERVER_ERROR object too large for cache`, unlinks the key (as
    /// memcached does) and skips `data_len + 2` bytes.
    pub too_large: bool,
    /// `ms` only: the data length from the command line.
    pub data_len: usize,
}

impl Default for MetaOpts {
    fn default() -> Self {
        MetaOpts {
            base64: false,
            value: false,
            quiet: false,
            no_bump: false,
            invalidate: false,
            remove_value: false,
            compare_cas: None,
            new_cas: None,
            client_flags: 0,
            ttl: None,
            vivify: None,
            recache: None,
            pos_t: 0,
            pos_n: 0,
            pos_r: 0,
            mode: 0,
            delta: 1,
            initial: 0,
            opaque_too_long: false,
            too_large: false,
            data_len: 0,
        }
    }
}

/// A parsed meta command, borrowing the request line (and the `ms` data).
#[derive(Debug)]
pub struct MetaCommand<'a> {
    pub verb: Verb,
    /// The key as sent (base64 text when `opts.base64`).
    pub key: &'a [u8],
    /// The flag tokens as sent, space separated.
    pub flags: &'a [u8],
    /// `ms`: the data block (without its CRLF).
    pub data: &'a [u8],
    pub opts: MetaOpts,
}

impl<'a> MetaCommand<'a> {
    /// The key to look up: the base64-decoded bytes (in `buf`) with `b`,
    /// else the key as sent. The parser has already checked it decodes.
    pub fn key<'b>(&'b self, buf: &'b mut [u8; MAX_KEY_LEN]) -> &'b [u8] {
        if self.opts.base64 {
            let n = base64_decode(self.key, buf).unwrap_or(0);
            &buf[..n]
        } else {
            self.key
        }
    }

    /// The flag tokens in request order.
    pub fn flag_tokens(&self) -> Tokens<'a> {
        tokens(self.flags)
    }
}

/// Space-separated tokens, empty ones skipped (memcached's tokenizer).
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    rest: &'a [u8],
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

fn tokens(s: &[u8]) -> Tokens<'_> {
    Tokens { rest: s }
}

fn error<'a>(e: ErrorKind, consumed: usize) -> Parsed<'a> {
    Parsed::Done(Request::new(Command::Error(e)), consumed)
}

fn client<'a>(e: &'static str, consumed: usize) -> Parsed<'a> {
    error(ErrorKind::Client(e), consumed)
}

/// Parse a meta command whose verb is `cmd` and whose line after the verb is
/// `rest` (no CR/LF); `consumed` bytes of `buf` were the line, and `buf`
/// continues with the `ms` data block.
pub fn parse<'a>(
    cmd: &'a [u8],
    rest: &'a [u8],
    buf: &'a [u8],
    consumed: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let verb = match cmd {
        b"mg" => Verb::Get,
        b"ms" => Verb::Set,
        b"md" => Verb::Delete,
        b"ma" => Verb::Arith,
        b"me" => Verb::Debug,
        _ => return error(ErrorKind::UnknownCommand, consumed),
    };
    let count = tokens(rest).count();
    let mut toks = tokens(rest);
    let Some(key) = toks.next() else {
        // memcached: too few tokens is ERROR, except for `me`.
        return match verb {
            Verb::Debug => client(E_FORMAT, consumed),
            _ => error(ErrorKind::UnknownCommand, consumed),
        };
    };
    if key.len() > MAX_KEY_LEN {
        return client(E_FORMAT, consumed);
    }
    let mut opts = MetaOpts::default();
    if verb == Verb::Debug {
        // `me <key> [b]`: only an exact `b` right after the key counts.
        if toks.next() == Some(b"b") {
            let mut kb = [0u8; MAX_KEY_LEN];
            if base64_decode(key, &mut kb).is_none() {
                return client(E_FORMAT, consumed);
            }
            opts.base64 = true;
        }
        return done(verb, key, b"", b"", opts, consumed);
    }
    let mut data_len = 0usize;
    if verb == Verb::Set {
        let Some(len_tok) = toks.next() else {
            return client(E_FORMAT, consumed);
        };
        if count + 2 > MAX_TOKENS {
            return client(E_TOO_LONG, consumed);
        }
        match strtol32(len_tok) {
            Some(n) if n >= 0 && n <= i32::MAX - 2 => data_len = n as usize,
            _ => return client(E_FORMAT, consumed),
        }
    } else if count + 2 > MAX_TOKENS {
        let e = if verb == Verb::Get {
            E_TOO_LONG_MG
        } else {
            E_TOO_LONG
        };
        return client(e, consumed);
    }
    let flags = toks.rest;
    let swallow = |e: &'static str| {
        Parsed::Done(
            Request::new(Command::Swallow {
                error: ErrorKind::Client(e),
                skip: data_len + 2,
                unlink: None,
            }),
            consumed,
        )
    };
    let mut kb = [0u8; MAX_KEY_LEN];
    if let Err(e) = preparse(flags, key, &mut kb, &mut opts) {
        return match verb {
            Verb::Get => client(e, consumed),
            Verb::Set => swallow(e),
            _ => client(E_INVALID_OR_DUP, consumed),
        };
    }
    let mode_ok = |modes: &[u8]| opts.mode == 0 || modes.contains(&opts.mode);
    match verb {
        Verb::Set => {
            if !mode_ok(b"EAPRS") {
                return swallow(E_MS_MODE);
            }
            if opts.opaque_too_long {
                return swallow(E_OPAQUE);
            }
            opts.data_len = data_len;
            let nkey = if opts.base64 {
                base64_decode(key, &mut kb).unwrap_or(0)
            } else {
                key.len()
            };
            let flags_size = if opts.client_flags != 0 { 4 } else { 0 };
            if ITEM_HEADER + nkey + 1 + data_len + 2 + flags_size > limits.max_item_size {
                opts.too_large = true;
                return done(verb, key, flags, b"", opts, consumed);
            }
            let total = consumed + data_len + 2;
            if buf.len() < total {
                return Parsed::Incomplete { need: Some(total) };
            }
            if &buf[consumed + data_len..total] != b"\r\n" {
                return error(ErrorKind::BadDataChunk, total);
            }
            done(
                verb,
                key,
                flags,
                &buf[consumed..consumed + data_len],
                opts,
                total,
            )
        }
        Verb::Arith => {
            if !mode_ok(b"I+D-") {
                return client(E_MA_MODE, consumed);
            }
            done(verb, key, flags, b"", opts, consumed)
        }
        _ => {
            if opts.opaque_too_long {
                return client(E_OPAQUE, consumed);
            }
            done(verb, key, flags, b"", opts, consumed)
        }
    }
}

fn done<'a>(
    verb: Verb,
    key: &'a [u8],
    flags: &'a [u8],
    data: &'a [u8],
    opts: MetaOpts,
    consumed: usize,
) -> Parsed<'a> {
    Parsed::Done(
        Request::new(Command::Meta(MetaCommand {
            verb,
            key,
            flags,
            data,
            opts,
        })),
        consumed,
    )
}

/// memcached's `_meta_flag_preparse`: one pass over the flag tokens. A
/// duplicate or unknown flag fails at once; a bad token records its error
/// and parsing goes on (the last such error is the one reported).
fn preparse(
    flags: &[u8],
    key: &[u8],
    kb: &mut [u8; MAX_KEY_LEN],
    o: &mut MetaOpts,
) -> Result<(), &'static str> {
    let mut seen = [false; 127];
    let mut err: Option<&'static str> = None;
    let mut failed = false;
    for (i, tok) in tokens(flags).enumerate() {
        let c = tok[0];
        if c >= 127 || seen[c as usize] {
            return Err(E_DUP);
        }
        seen[c as usize] = true;
        let arg = &tok[1..];
        let pos = (i + 1).min(u8::MAX as usize) as u8;
        let mut bad = |e: Option<&'static str>| {
            failed = true;
            if e.is_some() {
                err = e;
            }
        };
        match c {
            b'b' => {
                o.base64 = true;
                if base64_decode(key, kb).is_none() {
                    bad(Some(E_DECODE));
                }
            }
            b'N' | b'T' | b'R' => match strtol32(arg) {
                Some(v) => {
                    let v = Some(v as i64);
                    match c {
                        b'N' => (o.vivify, o.pos_n) = (v, pos),
                        b'T' => (o.ttl, o.pos_t) = (v, pos),
                        _ => (o.recache, o.pos_r) = (v, pos),
                    }
                }
                None => bad(Some(E_TOKEN)),
            },
            b'O' => {
                if tok.len() > MAX_OPAQUE {
                    o.opaque_too_long = true;
                }
            }
            b'l' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => o.value = true,
            b'u' => o.no_bump = true,
            b'q' => o.quiet = true,
            b'x' => o.remove_value = true,
            b'I' => o.invalidate = true,
            // memcached sets no error text for a bad F token.
            b'F' => match strtoul32(arg) {
                Some(v) => o.client_flags = v,
                None => bad(None),
            },
            b'C' | b'E' => match strtoull(arg) {
                Some(v) if c == b'C' => o.compare_cas = Some(v),
                Some(v) => o.new_cas = Some(v),
                None => bad(Some(E_TOKEN)),
            },
            b'M' => {
                if tok.len() != 2 {
                    bad(Some(E_M_LEN));
                } else {
                    o.mode = tok[1];
                }
            }
            b'J' => match strtoull(arg) {
                Some(v) => o.initial = v,
                None => bad(Some(E_INITIAL)),
            },
            b'D' => match strtoull(arg) {
                Some(v) => o.delta = v,
                None => bad(Some(E_DELTA)),
            },
            _ => return Err(E_INVALID),
        }
    }
    if failed {
        Err(err.unwrap_or(E_FORMAT))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Numbers, as memcached's safe_strto* read them (C strto* semantics).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtoull`/`strtol` core: leading white space, optional sign, decimal
/// digits, then white space or the end. Returns (negative, magnitude).
/// None when there are no digits, the magnitude overflows u64, or junk follows.
fn c_number(s: &[u8]) -> Option<(bool, u64)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((s[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start {
        return None;
    }
    if i < s.len() && !is_c_space(s[i]) {
        return None;
    }
    Some((neg, v))
}

/// memcached's `safe_strtoull`: a negative number is refused unless it
/// wraps to a value that is non-negative as a signed 64-bit number.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, v) = c_number(s)?;
    let v = if neg { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtoul` on a 64-bit host: strtoull rules, then the
/// result is truncated to 32 bits.
pub fn strtoul32(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit host: a signed 64-bit number,
/// truncated to 32 bits.
pub fn strtol32(s: &[u8]) -> Option<i32> {
    let (neg, v) = c_number(s)?;
    let v: i64 = if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        (v as i64).wrapping_neg()
    } else {
        i64::try_from(v).ok()?
    };
    Some(v as i32)
}

// ---------------------------------------------------------------------------
// Base64 (RFC 4648 alphabet with padding), as memcached's codec behaves.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decode base64 `src` into `out`. Like memcached's decoder, bytes outside
/// the alphabet are skipped, the alphabet characters (`=` included) must
/// come in whole groups of four, decoding stops after the first padded
/// group, and more than two `=` in a group is invalid. `None` where
/// memcached fails, including an empty result.
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let count = src.iter().filter(|&&c| b64_value(c).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return None;
    }
    let mut n = 0;
    let mut block = [0u8; 4];
    let mut k = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = b64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[k] = v;
        k += 1;
        if k == 4 {
            out[n] = (block[0] << 2) | (block[1] >> 4);
            out[n + 1] = (block[1] << 4) | (block[2] >> 2);
            out[n + 2] = (block[2] << 6) | block[3];
            n += 3;
            k = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                n -= pad;
                break;
            }
        }
    }
    (n > 0).then_some(n)
}

/// Append the base64 form of `src` (with padding).
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        out.extend_from_slice(&[
            B64[(c[0] >> 2) as usize],
            B64[(((c[0] & 3) << 4) | (c[1] >> 4)) as usize],
            B64[(((c[1] & 15) << 2) | (c[2] >> 6)) as usize],
            B64[(c[2] & 63) as usize],
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[
            B64[(a >> 2) as usize],
            B64[((a & 3) << 4) as usize],
            b'=',
            b'=',
        ]),
        [a, b] => out.extend_from_slice(&[
            B64[(a >> 2) as usize],
            B64[(((a & 3) << 4) | (b >> 4)) as usize],
            B64[((b & 15) << 2) as usize],
            b'=',
        ]),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Replies.

/// A meta reply's status code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Code {
    /// `VA <size>` + data block.
    Va,
    /// `HD`: success without a value.
    #[default]
    Hd,
    /// `EN`: mg miss.
    En,
    /// `NS`: not stored.
    Ns,
    /// `EX`: CAS mismatch.
    Ex,
    /// `NF`: not found.
    Nf,
}

/// Everything a meta reply may print; the executor fills the fields the
/// command's flags ask for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reply<'a> {
    pub code: Code,
    /// The (decoded) key, for `k`.
    pub key: &'a [u8],
    /// The data block of a `VA` reply.
    pub value: &'a [u8],
    /// `f`
    pub flags: u32,
    /// `c`
    pub cas: u64,
    /// `s`
    pub size: usize,
    /// `t` as the request found the item: remaining seconds, -1 for none.
    pub ttl: i64,
    /// `t` after this request's `T`.
    pub ttl_touch: i64,
    /// `t` of an item this request created, after its `N`.
    pub ttl_vivify: i64,
    /// `l`: seconds since the last access before this request.
    pub last_access: u32,
    /// `h`: fetched before this request.
    pub hit_before: bool,
    /// The item was created by this request (`N`).
    pub created: bool,
    /// `Z`: a win was handed out before this request.
    pub win_before: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `W`: this request won the recache.
    pub won: bool,
}

fn put_key(out: &mut Vec<u8>, key: &[u8], base64: bool) {
    out.extend_from_slice(b" k");
    if base64 {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Whether `q` hides this reply.
pub fn is_hidden(m: &MetaCommand<'_>, code: Code) -> bool {
    m.opts.quiet
        && match m.verb {
            Verb::Get => code == Code::En,
            Verb::Arith => matches!(code, Code::Hd | Code::Va),
            Verb::Set | Verb::Delete => code == Code::Hd,
            Verb::Debug => false,
        }
}

/// Append the reply to `m` (nothing when `q` hides it). Return flags come
/// in request order, then mg's `Z`, `X`, `W`, as memcached writes them.
pub fn encode(m: &MetaCommand<'_>, r: &Reply<'_>, out: &mut Vec<u8>) {
    if is_hidden(m, r.code) {
        return;
    }
    out.extend_from_slice(match r.code {
        Code::Va => b"VA ",
        Code::Hd => b"HD",
        Code::En => b"EN",
        Code::Ns => b"NS",
        Code::Ex => b"EX",
        Code::Nf => b"NF",
    });
    if r.code == Code::Va {
        put_u64(out, r.value.len() as u64);
    }
    let b64 = m.opts.base64;
    let item = match m.verb {
        Verb::Get | Verb::Arith => matches!(r.code, Code::Va | Code::Hd),
        _ => false,
    };
    let mut ttl = r.ttl;
    for tok in m.flag_tokens() {
        match tok[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            b'k' => put_key(out, r.key, b64),
            b'T' if item => ttl = r.ttl_touch,
            b'N' if item && r.created => ttl = r.ttl_vivify,
            b't' if item => {
                out.extend_from_slice(b" t");
                put_i64(out, ttl);
            }
            b'c' if item || (m.verb == Verb::Set && r.code == Code::Hd) => {
                out.extend_from_slice(b" c");
                put_u64(out, r.cas);
            }
            b'c' if m.verb == Verb::Set => out.extend_from_slice(b" c0"),
            b's' if item && m.verb == Verb::Get || m.verb == Verb::Set => {
                out.extend_from_slice(b" s");
                put_u64(out, r.size as u64);
            }
            b'f' if m.verb == Verb::Get && item => {
                out.extend_from_slice(b" f");
                put_u64(out, r.flags as u64);
            }
            b'l' if m.verb == Verb::Get && item => {
                out.extend_from_slice(b" l");
                put_u64(out, r.last_access as u64);
            }
            b'h' if m.verb == Verb::Get && item => {
                out.extend_from_slice(if r.hit_before { b" h1" } else { b" h0" });
            }
            _ => {}
        }
    }
    if m.verb == Verb::Get && item {
        if r.win_before {
            out.extend_from_slice(b" Z");
        }
        if r.stale {
            out.extend_from_slice(b" X");
        }
        if r.won {
            out.extend_from_slice(b" W");
        }
    }
    out.extend_from_slice(b"\r\n");
    if r.code == Code::Va {
        out.extend_from_slice(r.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The fields of an `me` line.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugInfo {
    /// Remaining TTL in seconds, -1 for none.
    pub exp: i64,
    /// Seconds since the last access.
    pub la: u32,
    pub cas: u64,
    pub fetched: bool,
    /// Slab class id.
    pub cls: u32,
    /// memcached's total item size (header, CAS, key + NUL, value + CRLF,
    /// client flags when non-zero).
    pub size: u64,
}

/// Append an `me` reply: `ME <key> exp=.. la=.. cas=.. fetch=yes|no cls=.. size=..`.
pub fn encode_debug(key: &[u8], base64: bool, d: &DebugInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"ME ");
    if base64 {
        base64_encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b" exp=");
    put_i64(out, d.exp);
    out.extend_from_slice(b" la=");
    put_u64(out, d.la as u64);
    out.extend_from_slice(b" cas=");
    put_u64(out, d.cas);
    out.extend_from_slice(if d.fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    put_u64(out, d.cls as u64);
    out.extend_from_slice(b" size=");
    put_u64(out, d.size);
    out.extend_from_slice(b"\r\n");
}

/// memcached's `me` miss.
pub fn encode_miss(out: &mut Vec<u8>) {
    out.extend_from_slice(b"EN\r\n");
}
