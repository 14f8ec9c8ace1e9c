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

use super::{
    put_i64, put_u64, strtol32, strtoul32, strtoull, tokens, Command, ErrorKind, Limits, Parsed,
    Request, Tokens, MAX_DATA_LEN, MAX_KEY_LEN,
};

/// memcached counts the command, key and a terminal token; more than this
/// many tokens is "options flags too long".
const MAX_TOKENS: usize = 20;
/// Longest opaque token, the `O` included.
const MAX_OPAQUE: usize = 32;

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
    // ms: the data length, when memcached would accept it. Whatever else is
    // wrong with the line, that data block is then swallowed, never parsed
    // as commands (memcached parses it after a too-long key or too many
    // flags).
    let ms_len = match verb {
        Verb::Set => toks
            .clone()
            .next()
            .and_then(strtol32)
            .filter(|n| (0..=MAX_DATA_LEN).contains(n))
            .map(|n| n as usize),
        _ => None,
    };
    let refuse = |e: &'static str| match ms_len {
        Some(n) => Parsed::Done(
            Request::new(Command::Swallow {
                error: ErrorKind::Client(e),
                skip: n + 2,
                unlink: None,
            }),
            consumed,
        ),
        None => client(e, consumed),
    };
    if key.len() > MAX_KEY_LEN {
        return refuse(E_FORMAT);
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
            return refuse(E_TOO_LONG);
        }
        match strtol32(len_tok) {
            Some(n) if (0..=MAX_DATA_LEN).contains(&n) => data_len = n as usize,
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
            if !crate::item::item_fits(nkey, opts.client_flags, data_len, limits.max_item_size) {
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
/// memcached 1.6.18's `ma` hides under `q` only the reply to an update of an
/// existing item: an item created by `N` is answered (`HD` / `VA`).
pub fn encode(m: &MetaCommand<'_>, r: &Reply<'_>, out: &mut Vec<u8>) {
    if is_hidden(m, r.code) && !(m.verb == Verb::Arith && r.created) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_item_size: 1 << 20,
    };

    /// Parse a full request buffer through the ASCII framing.
    fn parse_all(buf: &[u8]) -> Parsed<'_> {
        super::super::ascii::parse(buf, &L)
    }

    fn meta(buf: &[u8]) -> (MetaCommand<'_>, usize) {
        match parse_all(buf) {
            Parsed::Done(
                Request {
                    cmd: Command::Meta(m),
                    ..
                },
                n,
            ) => (m, n),
            p => panic!("{:?}: {p:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn opts(buf: &[u8]) -> MetaOpts {
        meta(buf).0.opts
    }

    /// The error text a line is answered with.
    fn err(buf: &[u8]) -> String {
        match parse_all(buf) {
            Parsed::Done(
                Request {
                    cmd: Command::Error(e),
                    ..
                },
                _,
            ) => String::from_utf8_lossy(super::super::ascii::error_text(e)).into_owned(),
            Parsed::Done(
                Request {
                    cmd: Command::Swallow { error, skip, .. },
                    ..
                },
                _,
            ) => format!(
                "{} +swallow {skip}",
                String::from_utf8_lossy(super::super::ascii::error_text(error))
            ),
            p => panic!("{:?}: {p:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn verbs_and_keys() {
        let (m, n) = meta(b"mg foo v\r\nrest");
        assert_eq!(
            (m.verb, m.key, m.flags, n),
            (Verb::Get, &b"foo"[..], &b" v"[..], 10)
        );
        assert_eq!(meta(b"md k\r\n").0.verb, Verb::Delete);
        assert_eq!(meta(b"ma k\r\n").0.verb, Verb::Arith);
        assert_eq!(meta(b"me k\r\n").0.verb, Verb::Debug);
        let (m, n) = meta(b"ms k 2 T5\r\nhi\r\nmn\r\n");
        assert_eq!((m.verb, m.data, n), (Verb::Set, &b"hi"[..], 15));
        assert_eq!(m.opts.ttl, Some(5));
        // mn is the ASCII framing's Noop.
        assert!(matches!(
            parse_all(b"mn\r\n"),
            Parsed::Done(
                Request {
                    cmd: Command::Noop,
                    ..
                },
                4
            )
        ));
        // other two-letter m* verbs are unknown
        assert_eq!(err(b"mx foo\r\n"), "ERROR");
    }

    #[test]
    fn every_flag() {
        let o = opts(b"mg Zm9v b v q u I x k s t c f h l O1 P L\r\n");
        assert!(o.base64 && o.value && o.quiet && o.no_bump && o.invalidate && o.remove_value);
        assert!(!o.opaque_too_long);
        let o = opts(b"mg k C12 E13 F14 T15 N16 R17 MA D18 J19\r\n");
        assert_eq!(o.compare_cas, Some(12));
        assert_eq!(o.new_cas, Some(13));
        assert_eq!(o.client_flags, 14);
        assert_eq!((o.ttl, o.vivify, o.recache), (Some(15), Some(16), Some(17)));
        assert_eq!((o.pos_t, o.pos_n, o.pos_r), (4, 5, 6));
        assert_eq!((o.mode, o.delta, o.initial), (b'A', 18, 19));
        let o = opts(b"ma k\r\n");
        assert_eq!((o.delta, o.initial, o.mode), (1, 0, 0));
        assert_eq!(opts(b"mg k T-1\r\n").ttl, Some(-1));
    }

    #[test]
    fn base64() {
        let mut b = [0u8; MAX_KEY_LEN];
        let n = base64_decode(b"Zm9v", &mut b).unwrap();
        assert_eq!(&b[..n], b"foo");
        let n = base64_decode(b"Zm9vYg==", &mut b).unwrap();
        assert_eq!(&b[..n], b"foob");
        let n = base64_decode(b"Zm9vYmE=", &mut b).unwrap();
        assert_eq!(&b[..n], b"fooba");
        // junk outside the alphabet is skipped, as memcached's decoder does
        let n = base64_decode(b"Zm!9v", &mut b).unwrap();
        assert_eq!(&b[..n], b"foo");
        assert_eq!(base64_decode(b"Zm9vYg", &mut b), None);
        assert_eq!(base64_decode(b"!!!", &mut b), None);
        assert_eq!(base64_decode(b"A===", &mut b), None);
        assert_eq!(base64_decode(b"====", &mut b), None);
        for src in [&b""[..], b"f", b"fo", b"foo", b"\x00 \r\n\xff"] {
            let mut e = Vec::new();
            base64_encode(src, &mut e);
            if src.is_empty() {
                assert!(e.is_empty());
                continue;
            }
            let n = base64_decode(&e, &mut b).unwrap();
            assert_eq!(&b[..n], src);
        }
        let mut e = Vec::new();
        base64_encode(b"fo", &mut e);
        assert_eq!(e, b"Zm8=");
        // the command's key() decodes
        let (m, _) = meta(b"mg AA0KIA== b\r\n");
        let mut kb = [0u8; MAX_KEY_LEN];
        assert_eq!(m.key(&mut kb), b"\x00\r\n ");
    }

    #[test]
    fn errors_like_memcached() {
        let long = format!("mg {} v\r\n", "k".repeat(251));
        assert_eq!(err(long.as_bytes()), "CLIENT_ERROR bad command line format");
        let ok = format!("mg {} v\r\n", "k".repeat(250));
        meta(ok.as_bytes());
        for v in ["mg", "ms", "md", "ma"] {
            assert_eq!(err(format!("{v}\r\n").as_bytes()), "ERROR");
        }
        assert_eq!(err(b"me\r\n"), "CLIENT_ERROR bad command line format");
        assert_eq!(err(b"ms foo\r\n"), "CLIENT_ERROR bad command line format");
        assert_eq!(err(b"ms foo x\r\n"), "CLIENT_ERROR bad command line format");
        assert_eq!(
            err(b"ms foo -1\r\n"),
            "CLIENT_ERROR bad command line format"
        );
        // flag counts: 17 flags are fine for mg/md/ma, 16 for ms
        let f17 = "v c f s t k h l u q P L O1 T5 N5 R5 I";
        assert_eq!(
            err(format!("mg foo {f17} Q\r\n").as_bytes()),
            "CLIENT_ERROR options flags are too long"
        );
        meta(format!("mg foo {f17}\r\n").as_bytes());
        assert_eq!(
            err(format!("md foo {f17} Q\r\n").as_bytes()),
            "CLIENT_ERROR options flags too long"
        );
        assert_eq!(
            err(format!("ma foo {f17} Q\r\n").as_bytes()),
            "CLIENT_ERROR options flags too long"
        );
        // ms: the announced block is swallowed after every line error whose
        // length could be read (memcached would run `hi` as a command).
        assert_eq!(
            err(b"ms foo 2 c f s t k h l u q P L O1 T5 N5 R5 I Q\r\nhi\r\n"),
            "CLIENT_ERROR options flags too long +swallow 4"
        );
        let long_ms = format!("ms {} 2\r\nhi\r\n", "k".repeat(251));
        assert_eq!(
            err(long_ms.as_bytes()),
            "CLIENT_ERROR bad command line format +swallow 4"
        );
        let long_ms = format!("ms {} -2\r\nhi\r\n", "k".repeat(251));
        assert_eq!(
            err(long_ms.as_bytes()),
            "CLIENT_ERROR bad command line format"
        );
        assert_eq!(
            err(b"ms foo 2147483646\r\n"),
            "CLIENT_ERROR bad command line format"
        );
        assert_eq!(
            err(b"ms foo 2 c f s t k h l u q P L O1 T5 N5 R5 Q\r\nhi\r\n"),
            "CLIENT_ERROR invalid flag +swallow 4"
        );
        // duplicate / invalid
        assert_eq!(err(b"mg foo v v\r\n"), "CLIENT_ERROR duplicate flag");
        assert_eq!(err(b"mg foo \x7f\r\n"), "CLIENT_ERROR duplicate flag");
        assert_eq!(err(b"mg foo Z\r\n"), "CLIENT_ERROR invalid flag");
        assert_eq!(
            err(b"md foo Z\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        assert_eq!(
            err(b"ma foo q q\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        // bad tokens
        for f in ["N", "T", "R", "C", "E"] {
            assert_eq!(
                err(format!("mg foo {f}x\r\n").as_bytes()),
                "CLIENT_ERROR bad token in command line format",
                "{f}"
            );
        }
        assert_eq!(
            err(b"mg foo T\r\n"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(
            err(b"mg foo Fx\r\n"),
            "CLIENT_ERROR bad command line format"
        );
        assert_eq!(
            err(b"mg foo Tx Fx\r\n"),
            "CLIENT_ERROR bad token in command line format"
        );
        assert_eq!(err(b"mg foo Tx Q\r\n"), "CLIENT_ERROR invalid flag");
        assert_eq!(
            err(b"mg foo Nx Jx\r\n"),
            "CLIENT_ERROR invalid numeric initial value"
        );
        assert_eq!(
            err(b"mg foo Dx\r\n"),
            "CLIENT_ERROR invalid numeric delta value"
        );
        assert_eq!(
            err(b"ma foo Dx\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        assert_eq!(
            err(b"ma foo C-1\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        // M token
        assert_eq!(
            err(b"ms foo 2 MEE\r\nhi\r\n"),
            "CLIENT_ERROR incorrect length for M token +swallow 4"
        );
        assert_eq!(
            err(b"ms foo 2 MX\r\nhi\r\n"),
            "CLIENT_ERROR invalid mode for ms M token +swallow 4"
        );
        assert_eq!(
            err(b"ma foo MX\r\n"),
            "CLIENT_ERROR invalid mode for ma M token"
        );
        assert_eq!(
            err(b"ma foo MII\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        for m in ["ME", "MA", "MP", "MR", "MS"] {
            meta(format!("ms foo 2 {m}\r\nhi\r\n").as_bytes());
        }
        for m in ["MI", "M+", "MD", "M-"] {
            meta(format!("ma foo {m}\r\n").as_bytes());
        }
        // ms bad token swallows the data; bad F has the generic text
        assert_eq!(
            err(b"ms foo 2 Tabc\r\nhi\r\n"),
            "CLIENT_ERROR bad token in command line format +swallow 4"
        );
        assert_eq!(
            err(b"ms foo 2 Fx\r\nhi\r\n"),
            "CLIENT_ERROR bad command line format +swallow 4"
        );
        // opaque: up to 32 bytes with the O
        let o32 = format!("O{}", "1".repeat(31));
        let o33 = format!("O{}", "1".repeat(32));
        meta(format!("mg foo {o32}\r\n").as_bytes());
        assert_eq!(err(format!("mg foo {o33}\r\n").as_bytes()), E_OPAQUE);
        assert_eq!(err(format!("md foo {o33}\r\n").as_bytes()), E_OPAQUE);
        assert_eq!(
            err(format!("ms foo 2 {o33}\r\nhi\r\n").as_bytes()),
            format!("{E_OPAQUE} +swallow 4")
        );
        assert_eq!(
            err(format!("ms foo 2 {o33} MX\r\nhi\r\n").as_bytes()),
            format!("{E_MS_MODE} +swallow 4")
        );
        // ma reports it after the update: parsed, flagged
        assert!(opts(format!("ma foo {o33}\r\n").as_bytes()).opaque_too_long);
        // base64
        assert_eq!(err(b"mg !!! b\r\n"), "CLIENT_ERROR error decoding key");
        assert_eq!(err(b"mg Zm9vYg b k\r\n"), "CLIENT_ERROR error decoding key");
        assert_eq!(
            err(b"ms b64 3 b\r\nabc\r\n"),
            "CLIENT_ERROR error decoding key +swallow 5"
        );
        assert_eq!(
            err(b"md !!! b\r\n"),
            "CLIENT_ERROR invalid or duplicate flag"
        );
        assert_eq!(err(b"me !!! b\r\n"), "CLIENT_ERROR bad command line format");
        assert!(!opts(b"me !!! q\r\n").base64);
        assert!(opts(b"me Zm9v b\r\n").base64);
        // data chunk
        assert_eq!(err(b"ms foo 2\r\nhiXX\r\n"), "CLIENT_ERROR bad data chunk");
    }

    #[test]
    fn ms_framing() {
        assert!(matches!(
            parse_all(b"ms foo 5 T1\r\nhel"),
            Parsed::Incomplete { need: Some(20) }
        ));
        let (m, n) = meta(b"ms foo +2\r\nhi\r\n");
        assert_eq!((m.data, n), (&b"hi"[..], 15));
        // too large: memcached's item size (56 + key+1 + data+2 [+4 flags]) > -I
        let max = (1 << 20) - 56 - 4 - 2;
        let line = format!("ms big {max}\r\n");
        assert!(matches!(
            parse_all(line.as_bytes()),
            Parsed::Incomplete { .. }
        ));
        let line = format!("ms big {max} F1\r\n");
        let (m, n) = meta(line.as_bytes());
        assert!(m.opts.too_large);
        assert_eq!((m.opts.data_len, n), (max, line.len()));
        assert!(
            meta(format!("ms big {}\r\n", max + 1).as_bytes())
                .0
                .opts
                .too_large
        );
    }

    fn enc(line: &[u8], r: &Reply<'_>) -> String {
        let (m, _) = meta(line);
        let mut out = Vec::new();
        encode(&m, r, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn encode_mg() {
        let r = Reply {
            code: Code::Va,
            key: b"foo",
            value: b"bar",
            flags: 5,
            cas: 7,
            size: 3,
            ttl: -1,
            ttl_touch: 30,
            last_access: 4,
            hit_before: true,
            ..Reply::default()
        };
        assert_eq!(
            enc(b"mg foo v f s t c k h l O123 P L u q\r\n", &r),
            "VA 3 f5 s3 t-1 c7 kfoo h1 l4 O123\r\nbar\r\n"
        );
        // t follows T in request order
        assert_eq!(
            enc(
                b"mg foo T30 t\r\n",
                &Reply {
                    code: Code::Hd,
                    ..r
                }
            ),
            "HD t30\r\n"
        );
        assert_eq!(
            enc(
                b"mg foo t T30\r\n",
                &Reply {
                    code: Code::Hd,
                    ..r
                }
            ),
            "HD t-1\r\n"
        );
        // vivified: t after N shows N's TTL; W last
        let v = Reply {
            code: Code::Va,
            key: b"nokey",
            value: b"",
            ttl: -1,
            ttl_vivify: 30,
            created: true,
            won: true,
            ..Reply::default()
        };
        assert_eq!(
            enc(b"mg nokey N30 v t s k\r\n", &v),
            "VA 0 t30 s0 knokey W\r\n\r\n"
        );
        // Z X W order
        let z = Reply {
            code: Code::Hd,
            win_before: true,
            stale: true,
            ..Reply::default()
        };
        assert_eq!(enc(b"mg foo\r\n", &z), "HD Z X\r\n");
        let w = Reply {
            code: Code::Hd,
            stale: true,
            won: true,
            ..Reply::default()
        };
        assert_eq!(enc(b"mg foo\r\n", &w), "HD X W\r\n");
        // miss: EN with O and k only; hidden by q
        let miss = Reply {
            code: Code::En,
            key: b"foo",
            ..Reply::default()
        };
        assert_eq!(enc(b"mg foo v t c O9 k\r\n", &miss), "EN O9 kfoo\r\n");
        assert_eq!(enc(b"mg foo v q O9\r\n", &miss), "");
        // q does not hide a hit
        assert_eq!(
            enc(
                b"mg foo q\r\n",
                &Reply {
                    code: Code::Hd,
                    ..Reply::default()
                }
            ),
            "HD\r\n"
        );
        // base64 keys come back encoded, with b
        let b = Reply {
            code: Code::En,
            key: b"\x00 \r\n",
            ..Reply::default()
        };
        assert_eq!(enc(b"mg ACANCg== b k O1\r\n", &b), "EN kACANCg== b O1\r\n");
    }

    #[test]
    fn encode_ms_md_ma() {
        let hd = Reply {
            code: Code::Hd,
            key: b"foo",
            cas: 9,
            size: 4,
            ..Reply::default()
        };
        assert_eq!(
            enc(b"ms foo 2 k c s O1 T5 F3\r\nhi\r\n", &hd),
            "HD kfoo c9 s4 O1\r\n"
        );
        assert_eq!(enc(b"ms foo 2 q c\r\nhi\r\n", &hd), "");
        let ns = Reply {
            code: Code::Ns,
            cas: 0,
            ..hd
        };
        assert_eq!(enc(b"ms foo 2 q c O1\r\nhi\r\n", &ns), "NS c0 O1\r\n");
        assert_eq!(enc(b"ms foo 2 s\r\nhi\r\n", &ns), "NS s4\r\n");
        assert_eq!(
            enc(
                b"ms foo 2 q\r\nhi\r\n",
                &Reply {
                    code: Code::Ex,
                    ..hd
                }
            ),
            "EX\r\n"
        );
        assert_eq!(
            enc(
                b"ms foo 2 q\r\nhi\r\n",
                &Reply {
                    code: Code::Nf,
                    ..hd
                }
            ),
            "NF\r\n"
        );
        assert_eq!(enc(b"ms Zm9v 2 b k\r\nhi\r\n", &hd), "HD kZm9v b\r\n");
        // md: O and k only; q hides HD
        assert_eq!(enc(b"md foo k O5 c t\r\n", &hd), "HD kfoo O5\r\n");
        assert_eq!(enc(b"md foo q\r\n", &hd), "");
        assert_eq!(
            enc(
                b"md foo q k O5\r\n",
                &Reply {
                    code: Code::Nf,
                    ..hd
                }
            ),
            "NF kfoo O5\r\n"
        );
        // ma: value, c, t (T applied in order), O, k; q hides HD and VA
        let va = Reply {
            code: Code::Va,
            key: b"cnt",
            value: b"10",
            cas: 29,
            ttl: -1,
            ttl_touch: 100,
            ttl_vivify: 50,
            created: true,
            ..Reply::default()
        };
        assert_eq!(
            enc(b"ma cnt N0 J10 v t c k O5\r\n", &va),
            "VA 2 t50 c29 kcnt O5\r\n10\r\n"
        );
        assert_eq!(
            enc(b"ma cnt t N0 T100 c\r\n", &va),
            "VA 2 t-1 c29\r\n10\r\n"
        );
        assert_eq!(enc(b"ma cnt N0 T100 t\r\n", &va), "VA 2 t100\r\n10\r\n");
        // q hides an update of an existing item, not a creation (1.6.18)
        assert_eq!(enc(b"ma cnt v q N0\r\n", &va), "VA 2\r\n10\r\n");
        let updated = Reply {
            created: false,
            ..va
        };
        assert_eq!(enc(b"ma cnt v q\r\n", &updated), "");
        assert_eq!(
            enc(
                b"ma cnt q\r\n",
                &Reply {
                    code: Code::Hd,
                    ..updated
                }
            ),
            ""
        );
        assert_eq!(
            enc(
                b"ma cnt q c t O1 k\r\n",
                &Reply {
                    code: Code::Nf,
                    ..va
                }
            ),
            "NF O1 kcnt\r\n"
        );
        assert_eq!(
            enc(
                b"ma cnt q\r\n",
                &Reply {
                    code: Code::Ex,
                    ..va
                }
            ),
            "EX\r\n"
        );
    }

    #[test]
    fn encode_me() {
        let mut out = Vec::new();
        let d = DebugInfo {
            exp: -1,
            la: 3,
            cas: 7,
            fetched: true,
            cls: 1,
            size: 69,
        };
        encode_debug(b"foo", false, &d, &mut out);
        assert_eq!(out, b"ME foo exp=-1 la=3 cas=7 fetch=yes cls=1 size=69\r\n");
        out.clear();
        encode_debug(
            b"foo",
            true,
            &DebugInfo {
                fetched: false,
                exp: 100,
                ..d
            },
            &mut out,
        );
        assert_eq!(
            out,
            b"ME Zm9v exp=100 la=3 cas=7 fetch=no cls=1 size=69\r\n"
        );
        out.clear();
        encode_miss(&mut out);
        assert_eq!(out, b"EN\r\n");
    }
}
