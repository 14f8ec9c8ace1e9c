//! memcached's binary protocol: 24-byte headers, opcodes, status codes.
//!
//! Parsing validates the header before anything else and never sizes an
//! allocation from a length field: a request is either rejected from its
//! header alone, or it is a command whose body is bounded (key ≤ 250, extras
//! ≤ 20, value ≤ `-I`) and is parsed in place once it is all in the buffer.
//! What memcached does with malformed headers, we do:
//!
//! | case | answer | then |
//! |---|---|---|
//! | magic ≠ 0x80 | nothing | close |
//! | key + extras > body | 0x81 Unknown command | close |
//! | key > 250, or extras/key/body of the wrong size for the opcode | 0x04 Invalid arguments | close |
//! | value over `-I` | 0x03 Too large | body swallowed, stays open |
//! | unknown opcode | 0x81 Unknown command | body swallowed, stays open |
//!
//! Encoding follows memcached's replies byte for byte: the request's opcode
//! and opaque echoed, the item's CAS in the header, quiet opcodes silent on
//! success (GetQ/GetKQ/GATQ/GATKQ also on a miss), errors always sent, error
//! bodies carrying memcached's texts.

use super::{
    put_stat_value, put_u64, Command, Ctx, ErrorKind, Keys, Limits, Parsed, Request, Response,
    StatValue, StatsGroup, StoreMode, MAX_KEY_LEN,
};

/// Request magic byte.
pub const REQ_MAGIC: u8 = 0x80;
/// Response magic byte.
pub const RES_MAGIC: u8 = 0x81;
/// Size of a request or response header.
pub const HEADER_LEN: usize = 24;

/// Opcodes memcached 1.6 serves (plus Verbosity, see [`parse`]).
pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes.
pub mod status {
    pub const OK: u16 = 0x00;
    pub const KEY_ENOENT: u16 = 0x01;
    pub const KEY_EEXISTS: u16 = 0x02;
    pub const E2BIG: u16 = 0x03;
    pub const EINVAL: u16 = 0x04;
    pub const NOT_STORED: u16 = 0x05;
    pub const DELTA_BADVAL: u16 = 0x06;
    pub const AUTH_ERROR: u16 = 0x20;
    pub const AUTH_CONTINUE: u16 = 0x21;
    pub const UNKNOWN_COMMAND: u16 = 0x81;
    pub const ENOMEM: u16 = 0x82;
}

/// A request or response header, host byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub keylen: u16,
    pub extlen: u8,
    pub datatype: u8,
    /// vbucket id (request) or status (response).
    pub status: u16,
    pub bodylen: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decode the first 24 bytes of `b` (which must hold them).
    pub fn decode(b: &[u8]) -> Header {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            magic: b[0],
            opcode: b[1],
            keylen: u16_at(2),
            extlen: b[4],
            datatype: b[5],
            status: u16_at(6),
            bodylen: u32_at(8),
            opaque: u32_at(12),
            cas: (u32_at(16) as u64) << 32 | u32_at(20) as u64,
        }
    }

    /// Append the 24-byte wire form.
    /// Built on the stack and appended once (one capacity check per reply).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.magic;
        h[1] = self.opcode;
        h[2..4].copy_from_slice(&self.keylen.to_be_bytes());
        h[4] = self.extlen;
        h[5] = self.datatype;
        h[6..8].copy_from_slice(&self.status.to_be_bytes());
        h[8..12].copy_from_slice(&self.bodylen.to_be_bytes());
        h[12..16].copy_from_slice(&self.opaque.to_be_bytes());
        h[16..24].copy_from_slice(&self.cas.to_be_bytes());
        out.extend_from_slice(&h);
    }
}

/// Quiet opcodes: no reply on success.
pub fn is_quiet(opcode: u8) -> bool {
    matches!(
        opcode,
        op::GETQ
            | op::GETKQ
            | op::SETQ
            | op::ADDQ
            | op::REPLACEQ
            | op::DELETEQ
            | op::INCREMENTQ
            | op::DECREMENTQ
            | op::QUITQ
            | op::FLUSHQ
            | op::APPENDQ
            | op::PREPENDQ
            | op::GATQ
            | op::GATKQ
    )
}

/// Opcodes whose replies carry the key.
pub fn returns_key(opcode: u8) -> bool {
    matches!(opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ)
}

/// Opcodes served before a SASL-enabled connection has authenticated.
/// memcached allows the SASL opcodes and Version; Noop too here (it reveals
/// nothing, and clients use it to flush a pipeline).
pub fn allowed_unauthenticated(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION | op::NOOP
    )
}

/// A binary Stat key, as memcached 1.6.18's `process_bin_stat` reads it:
/// `reset`, `settings` and `detail` match as prefixes (`resetx` resets);
/// `detail` must go on with ` dump`, ` on` or ` off`, anything else is Not
/// found; `items`, `slabs` and `sizes` match exactly, the rest is Not found.
pub fn stats_group(key: &[u8]) -> StatsGroup<'_> {
    if key.is_empty() {
        StatsGroup::General
    } else if key.starts_with(b"reset") {
        StatsGroup::Reset
    } else if key.starts_with(b"settings") {
        StatsGroup::Settings
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            StatsGroup::DetailDump
        } else if sub.starts_with(b" on") {
            StatsGroup::DetailSwitch(true)
        } else if sub.starts_with(b" off") {
            StatsGroup::DetailSwitch(false)
        } else {
            StatsGroup::DetailUsage
        }
    } else {
        match key {
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            _ => StatsGroup::Unknown,
        }
    }
}

/// Does this request need an authenticated connection when SASL is on?
/// (Everything but the SASL opcodes, Version and Noop.)
pub fn requires_auth(ctx: &Ctx) -> bool {
    ctx.binary && !allowed_unauthenticated(ctx.opcode)
}

/// Is this a binary SASL Auth/Step (answered "unknown command" when SASL is
/// off, before its body's size is looked at, as memcached)?
pub fn is_sasl_auth(ctx: &Ctx) -> bool {
    ctx.binary && matches!(ctx.opcode, op::SASL_AUTH | op::SASL_STEP)
}

/// Binary status for an error.
pub fn status_of(e: ErrorKind) -> u16 {
    match e {
        ErrorKind::UnknownCommand => status::UNKNOWN_COMMAND,
        ErrorKind::NonNumeric => status::DELTA_BADVAL,
        ErrorKind::TooLarge => status::E2BIG,
        ErrorKind::OutOfMemory | ErrorKind::TooManyConnections | ErrorKind::Server(_) => {
            status::ENOMEM
        }
        ErrorKind::AuthError => status::AUTH_ERROR,
        ErrorKind::BadFormat
        | ErrorKind::BadDataChunk
        | ErrorKind::LineTooLong
        | ErrorKind::InvalidExptime
        | ErrorKind::DeleteUsage
        | ErrorKind::InvalidDelta
        | ErrorKind::InvalidArguments
        | ErrorKind::Client(_) => status::EINVAL,
    }
}

/// memcached's error body for a status.
pub fn status_text(st: u16) -> &'static [u8] {
    match st {
        status::KEY_ENOENT => b"Not found",
        status::KEY_EEXISTS => b"Data exists for key.",
        status::E2BIG => b"Too large.",
        status::EINVAL => b"Invalid arguments",
        status::NOT_STORED => b"Not stored.",
        status::DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
        status::AUTH_ERROR => b"Auth failure.",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::ENOMEM => b"Out of memory",
        _ => b"",
    }
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
fn be64(b: &[u8]) -> u64 {
    (be32(b) as u64) << 32 | be32(&b[4..]) as u64
}

fn req(cmd: Command<'_>, ctx: Ctx) -> Request<'_> {
    Request { cmd, ctx }
}

/// Parse one binary request from the front of `buf`.
///
/// Verbosity (0x1b) is served as the protocol documents it (4-byte level
/// extra, reply OK) although memcached 1.6 answers it 0x81.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    // Wrong magic: memcached closes without a word. We need only the first
    // byte to know (memcached waits for a full header; the outcome is the same).
    if buf.first().is_some_and(|&m| m != REQ_MAGIC) {
        return Parsed::Done(Request::new(Command::Close(None)), buf.len());
    }
    if buf.len() < HEADER_LEN {
        return Parsed::Incomplete {
            need: Some(HEADER_LEN),
        };
    }
    let h = Header::decode(buf);
    let (ext, key, body) = (h.extlen as usize, h.keylen as usize, h.bodylen as usize);
    let ctx = Ctx {
        noreply: is_quiet(h.opcode),
        opcode: h.opcode,
        opaque: h.opaque,
        with_key: returns_key(h.opcode),
        binary: true,
    };
    let close = |e: ErrorKind| Parsed::Done(req(Command::Close(Some(e)), ctx), HEADER_LEN);
    // Lengths that contradict each other: the stream cannot be trusted.
    if key + ext > body {
        return close(ErrorKind::UnknownCommand);
    }
    if key > MAX_KEY_LEN {
        return close(ErrorKind::InvalidArguments);
    }
    let vlen = body - key - ext;
    // Shape rules per opcode, as memcached's dispatch checks them.
    let ok = match h.opcode {
        op::VERSION | op::NOOP | op::QUIT | op::QUITQ | op::SASL_LIST_MECHS => body == 0,
        op::FLUSH | op::FLUSHQ => key == 0 && vlen == 0 && (ext == 0 || ext == 4),
        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => ext == 8 && key > 0,
        op::GET | op::GETQ | op::GETK | op::GETKQ | op::DELETE | op::DELETEQ => {
            ext == 0 && key > 0 && vlen == 0
        }
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
            ext == 20 && key > 0 && vlen == 0
        }
        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => ext == 0 && key > 0,
        // memcached ignores a Stat/Touch body beyond the key and then parses
        // it as the next request; we refuse it instead of desynchronising.
        op::STAT => ext == 0 && vlen == 0,
        op::SASL_AUTH | op::SASL_STEP => ext == 0 && key > 0,
        op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => ext == 4 && key > 0 && vlen == 0,
        op::VERBOSITY => ext == 4 && key == 0 && vlen == 0,
        _ => {
            // Unknown opcode: answer 0x81 and skip the body.
            return Parsed::Done(
                req(
                    Command::Swallow {
                        error: ErrorKind::UnknownCommand,
                        skip: body,
                        unlink: None,
                    },
                    ctx,
                ),
                HEADER_LEN,
            );
        }
    };
    if !ok {
        return close(ErrorKind::InvalidArguments);
    }
    // Everything but a value is now bounded (≤ 20 + 250 bytes).
    let head = HEADER_LEN + ext + key;
    if buf.len() < head {
        return Parsed::Incomplete { need: Some(head) };
    }
    let extras = &buf[HEADER_LEN..HEADER_LEN + ext];
    let k = &buf[HEADER_LEN + ext..head];
    // memcached's item size rule (`crate::item`): set/add/replace count the
    // flags in their extras; append/prepend size their temporary item with
    // flags 0. A SASL body is bounded by -I itself.
    let fits = match h.opcode {
        op::SASL_AUTH | op::SASL_STEP => vlen <= limits.max_item_size,
        _ => {
            let flags = if ext == 8 { be32(extras) } else { 0 };
            vlen == 0 || crate::item::item_fits(key, flags, vlen, limits.max_item_size)
        }
    };
    if !fits {
        // Only value-carrying opcodes get here. memcached swallows the value.
        let (error, unlink) = match h.opcode {
            op::SET | op::SETQ => (ErrorKind::TooLarge, Some(k)),
            op::SASL_AUTH | op::SASL_STEP => (ErrorKind::OutOfMemory, None),
            _ => (ErrorKind::TooLarge, None),
        };
        return Parsed::Done(
            req(
                Command::Swallow {
                    error,
                    skip: vlen,
                    unlink,
                },
                ctx,
            ),
            head,
        );
    }
    let total = head + vlen;
    if buf.len() < total {
        return Parsed::Incomplete { need: Some(total) };
    }
    let value = &buf[head..total];
    let cmd = match h.opcode {
        op::GET | op::GETQ | op::GETK | op::GETKQ => Command::Get {
            keys: Keys::One(k),
            with_cas: true,
            touch: None,
        },
        op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => Command::Get {
            keys: Keys::One(k),
            with_cas: true,
            touch: Some(be32(extras) as i64),
        },
        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
            // A non-zero CAS turns any of the three into a compare-and-swap
            // (memcached's NREAD_CAS), Add included.
            let mode = if h.cas != 0 {
                StoreMode::Cas
            } else {
                match h.opcode {
                    op::SET | op::SETQ => StoreMode::Set,
                    op::ADD | op::ADDQ => StoreMode::Add,
                    _ => StoreMode::Replace,
                }
            };
            Command::Store {
                mode,
                key: k,
                flags: be32(extras),
                exptime: be32(&extras[4..]) as i64,
                data: value,
                cas: h.cas,
            }
        }
        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => Command::Store {
            mode: if matches!(h.opcode, op::APPEND | op::APPENDQ) {
                StoreMode::Append
            } else {
                StoreMode::Prepend
            },
            key: k,
            flags: 0,
            exptime: 0,
            data: value,
            cas: h.cas,
        },
        op::DELETE | op::DELETEQ => Command::Delete { key: k, cas: h.cas },
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
            let exp = be32(&extras[16..]);
            Command::Arith {
                key: k,
                incr: matches!(h.opcode, op::INCREMENT | op::INCREMENTQ),
                delta: be64(extras),
                // 0xffffffff: fail with Not found instead of creating.
                initial: (exp != u32::MAX).then(|| (be64(&extras[8..]), exp as i64)),
                cas: h.cas,
            }
        }
        op::QUIT | op::QUITQ => Command::Quit,
        op::FLUSH | op::FLUSHQ => Command::FlushAll {
            delay: Some(if ext == 4 { be32(extras) as i64 } else { 0 }),
        },
        op::NOOP => Command::Noop,
        op::VERSION => Command::Version,
        op::VERBOSITY => Command::Verbosity {
            level: be32(extras),
        },
        // The whole key is the group (`detail on` included): memcached
        // matches binary stat groups by prefix, see `stats_cmd`.
        op::STAT => Command::Stats(stats_group(k)),
        op::SASL_LIST_MECHS => Command::SaslListMechs,
        op::SASL_AUTH => Command::SaslAuth {
            mech: k,
            data: value,
        },
        op::SASL_STEP => Command::SaslStep {
            mech: k,
            data: value,
        },
        _ => unreachable!("unknown opcodes are answered above"),
    };
    Parsed::Done(req(cmd, ctx), total)
}

/// Append a response header.
#[inline]
fn put_header(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    st: u16,
    extlen: u8,
    keylen: usize,
    bodylen: usize,
    cas: u64,
) {
    Header {
        magic: RES_MAGIC,
        opcode: ctx.opcode,
        keylen: keylen as u16,
        extlen,
        datatype: 0,
        status: st,
        bodylen: bodylen as u32,
        opaque: ctx.opaque,
        cas,
    }
    .encode(out);
}

/// A reply with no extras and no key.
fn simple(out: &mut Vec<u8>, ctx: &Ctx, st: u16, body: &[u8], cas: u64) {
    put_header(out, ctx, st, 0, 0, body.len(), cas);
    out.extend_from_slice(body);
}

/// An error reply with memcached's text.
fn error(out: &mut Vec<u8>, ctx: &Ctx, st: u16) {
    simple(out, ctx, st, status_text(st), 0);
}

/// A stat packet: key = name, value = formatted value. The name is written
/// by `name`, the lengths patched afterwards (no temporary buffer).
fn stat_packet(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    name: impl FnOnce(&mut Vec<u8>),
    value: super::StatValue<'_>,
) {
    let at = out.len();
    put_header(out, ctx, status::OK, 0, 0, 0, 0);
    let kstart = out.len();
    name(out);
    let klen = out.len() - kstart;
    put_stat_value(out, value);
    let blen = out.len() - kstart;
    out[at + 2..at + 4].copy_from_slice(&(klen as u16).to_be_bytes());
    out[at + 8..at + 12].copy_from_slice(&(blen as u32).to_be_bytes());
}

/// Append the binary form of `resp`.
pub fn encode(resp: &Response<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let quiet = ctx.noreply;
    match *resp {
        Response::Value {
            key,
            flags,
            cas,
            data,
            ..
        } => {
            // Hits are answered even by the quiet gets.
            let flags = flags.to_be_bytes();
            if ctx.opcode == op::TOUCH {
                put_header(out, ctx, status::OK, 4, 0, 4, cas);
                out.extend_from_slice(&flags);
            } else if ctx.with_key {
                put_header(
                    out,
                    ctx,
                    status::OK,
                    4,
                    key.len(),
                    4 + key.len() + data.len(),
                    cas,
                );
                out.extend_from_slice(&flags);
                out.extend_from_slice(key);
                out.extend_from_slice(data);
            } else {
                put_header(out, ctx, status::OK, 4, 0, 4 + data.len(), cas);
                out.extend_from_slice(&flags);
                out.extend_from_slice(data);
            }
        }
        Response::Miss { key } => {
            if quiet {
            } else if ctx.with_key {
                // GetK/GATK: the key is both the key and the body.
                put_header(out, ctx, status::KEY_ENOENT, 0, key.len(), key.len(), 0);
                out.extend_from_slice(key);
            } else {
                error(out, ctx, status::KEY_ENOENT);
            }
        }
        Response::End => {}
        Response::Stored { cas } | Response::Touched { cas } => {
            if !quiet {
                simple(out, ctx, status::OK, b"", cas);
            }
        }
        Response::Deleted | Response::Ok => {
            if !quiet {
                simple(out, ctx, status::OK, b"", 0);
            }
        }
        Response::Noop | Response::StatsEnd | Response::StatsReset => {
            simple(out, ctx, status::OK, b"", 0)
        }
        Response::StatsDetailDump(text) => {
            stat_packet(
                out,
                ctx,
                |o| o.extend_from_slice(b"detailed"),
                StatValue::Str(std::str::from_utf8(text).unwrap_or("END\r\n")),
            );
            simple(out, ctx, status::OK, b"", 0)
        }
        Response::StatsDetailUsage | Response::StatsUnknown => error(out, ctx, status::KEY_ENOENT),
        Response::Quit => {
            if !quiet {
                simple(out, ctx, status::OK, b"", 0);
            }
        }
        Response::StoreFailed(e) => {
            let st = match ctx.opcode {
                op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => status::NOT_STORED,
                _ => status_of(e),
            };
            error(out, ctx, st);
        }
        Response::Line(l) => {
            if !quiet {
                simple(out, ctx, status::OK, l, 0);
            }
        }
        Response::NotStored => {
            // memcached: a failed add means the key exists, a failed replace
            // that it does not.
            let st = match ctx.opcode {
                op::ADD | op::ADDQ => status::KEY_EEXISTS,
                op::REPLACE | op::REPLACEQ => status::KEY_ENOENT,
                _ => status::NOT_STORED,
            };
            error(out, ctx, st);
        }
        Response::Exists => error(out, ctx, status::KEY_EEXISTS),
        Response::NotFound => {
            // Append/prepend never report a missing key, only "not stored".
            let st = match ctx.opcode {
                op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => status::NOT_STORED,
                _ => status::KEY_ENOENT,
            };
            error(out, ctx, st);
        }
        Response::Numeric { value, cas } => {
            if !quiet {
                simple(out, ctx, status::OK, &value.to_be_bytes(), cas);
            }
        }
        Response::Version(v) => simple(out, ctx, status::OK, v.as_bytes(), 0),
        Response::Stat { name, value } => {
            stat_packet(out, ctx, |o| o.extend_from_slice(name.as_bytes()), value)
        }
        Response::StatParts {
            prefix,
            class,
            name,
            value,
        } => stat_packet(
            out,
            ctx,
            |o| {
                o.extend_from_slice(prefix.as_bytes());
                put_u64(o, class as u64);
                o.push(b':');
                o.extend_from_slice(name.as_bytes());
            },
            value,
        ),
        Response::SaslMechs(m) => simple(out, ctx, status::OK, m.as_bytes(), 0),
        Response::AuthOk => simple(out, ctx, status::OK, b"Authenticated", 0),
        Response::AuthContinue => simple(out, ctx, status::AUTH_CONTINUE, b"", 0),
        Response::Error(e) => error(out, ctx, status_of(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StatValue;

    const L: Limits = Limits {
        max_item_size: 1024,
    };

    /// Build a request packet; `bodylen` overrides the real body length.
    fn pkt(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
        raw(opcode, extras, key, value, cas, None)
    }

    fn raw(
        opcode: u8,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
        cas: u64,
        bodylen: Option<u32>,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        Header {
            magic: REQ_MAGIC,
            opcode,
            keylen: key.len() as u16,
            extlen: extras.len() as u8,
            datatype: 0,
            status: 0,
            bodylen: bodylen.unwrap_or((extras.len() + key.len() + value.len()) as u32),
            opaque: 0xdeadbeef,
            cas,
        }
        .encode(&mut v);
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    fn done(buf: &[u8]) -> (Request<'_>, usize) {
        match parse(buf, &L) {
            Parsed::Done(r, n) => (r, n),
            p => panic!("{p:?}"),
        }
    }

    fn closes_with(buf: &[u8], want: Option<ErrorKind>) {
        let (r, n) = done(buf);
        match r.cmd {
            Command::Close(e) => assert_eq!(e, want, "{buf:?}"),
            c => panic!("expected close, got {c:?}"),
        }
        assert!(n <= buf.len());
    }

    fn reply(resp: Response<'_>, ctx: Ctx) -> (Header, Vec<u8>) {
        let mut out = Vec::new();
        encode(&resp, &ctx, &mut out);
        assert!(out.len() >= HEADER_LEN, "no reply");
        let h = Header::decode(&out);
        assert_eq!(h.bodylen as usize, out.len() - HEADER_LEN);
        (h, out[HEADER_LEN..].to_vec())
    }

    fn ctx(opcode: u8) -> Ctx {
        Ctx {
            noreply: is_quiet(opcode),
            opcode,
            opaque: 7,
            with_key: returns_key(opcode),
            binary: true,
        }
    }

    #[test]
    fn header_roundtrip() {
        let h = Header {
            magic: RES_MAGIC,
            opcode: 1,
            keylen: 0x0102,
            extlen: 3,
            datatype: 0,
            status: 0x0405,
            bodylen: 0x0607_0809,
            opaque: 0x0a0b_0c0d,
            cas: 0x1122_3344_5566_7788,
        };
        let mut v = Vec::new();
        h.encode(&mut v);
        assert_eq!(v.len(), HEADER_LEN);
        assert_eq!(Header::decode(&v), h);
    }

    #[test]
    fn get_family() {
        for (opc, quiet, with_key) in [
            (op::GET, false, false),
            (op::GETQ, true, false),
            (op::GETK, false, true),
            (op::GETKQ, true, true),
        ] {
            let b = pkt(opc, b"", b"foo", b"", 0);
            let (r, n) = done(&b);
            assert_eq!(n, b.len());
            assert_eq!(
                (r.ctx.noreply, r.ctx.with_key, r.ctx.binary, r.ctx.opaque),
                (quiet, with_key, true, 0xdeadbeef)
            );
            match r.cmd {
                Command::Get { keys, touch, .. } => {
                    assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"foo"[..]]);
                    assert!(touch.is_none());
                }
                c => panic!("{c:?}"),
            }
        }
        for opc in [op::TOUCH, op::GAT, op::GATQ, op::GATK, op::GATKQ] {
            let b = pkt(opc, &100u32.to_be_bytes(), b"k", b"", 0);
            let (r, _) = done(&b);
            assert!(matches!(
                r.cmd,
                Command::Get {
                    touch: Some(100),
                    ..
                }
            ));
            assert_eq!(r.ctx.noreply, matches!(opc, op::GATQ | op::GATKQ));
            assert_eq!(r.ctx.with_key, matches!(opc, op::GATK | op::GATKQ));
        }
    }

    #[test]
    fn stores() {
        let mut ext = Vec::new();
        ext.extend_from_slice(&0xcafe_u32.to_be_bytes());
        ext.extend_from_slice(&60u32.to_be_bytes());
        let b = pkt(op::SETQ, &ext, b"k", b"value", 0);
        let (r, n) = done(&b);
        assert_eq!(n, b.len());
        assert!(r.ctx.noreply);
        assert!(matches!(
            r.cmd,
            Command::Store {
                mode: StoreMode::Set,
                key: b"k",
                flags: 0xcafe,
                exptime: 60,
                data: b"value",
                cas: 0
            }
        ));
        // A CAS turns set/add/replace into a compare-and-swap.
        for opc in [op::SET, op::ADD, op::REPLACE] {
            let b = pkt(opc, &ext, b"k", b"v", 42);
            assert!(matches!(
                done(&b).0.cmd,
                Command::Store {
                    mode: StoreMode::Cas,
                    cas: 42,
                    ..
                }
            ));
        }
        let b = pkt(op::ADD, &ext, b"k", b"", 0);
        assert!(matches!(
            done(&b).0.cmd,
            Command::Store {
                mode: StoreMode::Add,
                data: b"",
                ..
            }
        ));
        let b = pkt(op::PREPENDQ, b"", b"k", b"xy", 9);
        assert!(matches!(
            done(&b).0.cmd,
            Command::Store {
                mode: StoreMode::Prepend,
                data: b"xy",
                cas: 9,
                ..
            }
        ));
        // Needs the whole value before it is parsed.
        let b = pkt(op::SET, &ext, b"k", b"value", 0);
        assert!(matches!(
            parse(&b[..b.len() - 1], &L),
            Parsed::Incomplete { need: Some(n) } if n == b.len()
        ));
        assert!(matches!(
            parse(&b[..10], &L),
            Parsed::Incomplete { need: Some(24) }
        ));
    }

    #[test]
    fn delete_arith_flush_misc() {
        let b = pkt(op::DELETEQ, b"", b"k", b"", 5);
        assert!(matches!(
            done(&b).0.cmd,
            Command::Delete { key: b"k", cas: 5 }
        ));
        let mut ext = Vec::new();
        ext.extend_from_slice(&3u64.to_be_bytes());
        ext.extend_from_slice(&10u64.to_be_bytes());
        ext.extend_from_slice(&0u32.to_be_bytes());
        let b = pkt(op::INCREMENT, &ext, b"n", b"", 0);
        assert!(matches!(
            done(&b).0.cmd,
            Command::Arith {
                incr: true,
                delta: 3,
                initial: Some((10, 0)),
                ..
            }
        ));
        ext[16..].copy_from_slice(&u32::MAX.to_be_bytes());
        let b = pkt(op::DECREMENTQ, &ext, b"n", b"", 0);
        let (r, _) = done(&b);
        assert!(r.ctx.noreply);
        assert!(matches!(
            r.cmd,
            Command::Arith {
                incr: false,
                initial: None,
                ..
            }
        ));
        let b = pkt(op::FLUSH, &30u32.to_be_bytes(), b"", b"", 0);
        assert!(matches!(
            done(&b).0.cmd,
            Command::FlushAll { delay: Some(30) }
        ));
        let b = pkt(op::FLUSHQ, b"", b"", b"", 0);
        let (r, _) = done(&b);
        assert!(r.ctx.noreply && matches!(r.cmd, Command::FlushAll { delay: Some(0) }));
        assert!(matches!(
            done(&pkt(op::NOOP, b"", b"", b"", 0)).0.cmd,
            Command::Noop
        ));
        assert!(matches!(
            done(&pkt(op::VERSION, b"", b"", b"", 0)).0.cmd,
            Command::Version
        ));
        assert!(matches!(
            done(&pkt(op::QUITQ, b"", b"", b"", 0)).0.cmd,
            Command::Quit
        ));
        assert!(matches!(
            done(&pkt(op::VERBOSITY, &1u32.to_be_bytes(), b"", b"", 0))
                .0
                .cmd,
            Command::Verbosity { level: 1 }
        ));
        for (key, group) in [
            (&b"detail on"[..], StatsGroup::DetailSwitch(true)),
            (b"detail off", StatsGroup::DetailSwitch(false)),
            (b"", StatsGroup::General),
            (b"resetx", StatsGroup::Reset),
            (b"detail dumpx", StatsGroup::DetailDump),
            (b"detail", StatsGroup::DetailUsage),
            (b"cachedump 1 1", StatsGroup::Unknown),
        ] {
            match done(&pkt(op::STAT, b"", key, b"", 0)).0.cmd {
                Command::Stats(g) => assert_eq!(g, group, "{key:?}"),
                c => panic!("{c:?}"),
            }
        }
        assert!(matches!(
            done(&pkt(op::SASL_LIST_MECHS, b"", b"", b"", 0)).0.cmd,
            Command::SaslListMechs
        ));
        assert!(matches!(
            done(&pkt(op::SASL_AUTH, b"", b"PLAIN", b"\0u\0p", 0)).0.cmd,
            Command::SaslAuth {
                mech: b"PLAIN",
                data: b"\0u\0p"
            }
        ));
        assert!(matches!(
            done(&pkt(op::SASL_STEP, b"", b"PLAIN", b"", 0)).0.cmd,
            Command::SaslStep { .. }
        ));
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let mut b = pkt(op::GETQ, b"", b"a", b"", 0);
        b.extend(pkt(op::NOOP, b"", b"", b"", 0));
        let (r, n) = done(&b);
        assert!(matches!(r.cmd, Command::Get { .. }));
        assert_eq!(n, 25);
        assert!(matches!(done(&b[n..]).0.cmd, Command::Noop));
    }

    #[test]
    fn bad_magic_closes_silently() {
        closes_with(b"get foo\r\n", None);
        let mut b = pkt(op::GET, b"", b"k", b"", 0);
        b[0] = 0x81;
        closes_with(&b, None);
        // Known from the first byte: no need to wait for a header.
        closes_with(b"\x00", None);
    }

    #[test]
    fn inconsistent_lengths_close_with_unknown_command() {
        // key + extras > body, whatever the opcode (even unknown ones).
        for opc in [op::GET, op::SET, op::NOOP, 0x55] {
            let b = raw(opc, b"", b"key", b"", 0, Some(2));
            closes_with(&b, Some(ErrorKind::UnknownCommand));
            let b = raw(opc, &[0; 8], b"k", b"", 0, Some(8));
            closes_with(&b, Some(ErrorKind::UnknownCommand));
        }
        // Decided from the header alone: nothing after it is awaited.
        let b = raw(op::GET, b"", &[b'k'; 300], b"", 0, Some(1));
        closes_with(&b[..HEADER_LEN], Some(ErrorKind::UnknownCommand));
    }

    #[test]
    fn key_too_long_closes() {
        let k = [b'k'; 251];
        let b = pkt(op::GET, b"", &k, b"", 0);
        closes_with(&b[..HEADER_LEN], Some(ErrorKind::InvalidArguments));
        let b = pkt(op::GET, b"", &k[..250], b"", 0);
        assert!(matches!(done(&b).0.cmd, Command::Get { .. }));
        // A 64 KiB key is refused from the header, before its bytes arrive.
        let b = raw(op::SET, &[0; 8], b"", b"", 0, Some(70_000));
        let mut b = b;
        b[2..4].copy_from_slice(&65_535u16.to_be_bytes());
        closes_with(&b, Some(ErrorKind::InvalidArguments));
    }

    #[test]
    fn wrong_shapes_close_with_invalid_arguments() {
        let e8 = [0u8; 8];
        let e4 = [0u8; 4];
        let e20 = [0u8; 20];
        let cases: Vec<Vec<u8>> = vec![
            // get: no extras, a key, no value
            pkt(op::GET, &e4, b"k", b"", 0),
            pkt(op::GETK, b"", b"", b"", 0),
            pkt(op::GETQ, b"", b"k", b"v", 0),
            // set: 8 bytes of extras and a key
            pkt(op::SET, &e4, b"k", b"v", 0),
            pkt(op::SET, &e8, b"", b"v", 0),
            pkt(op::ADDQ, b"", b"k", b"v", 0),
            pkt(op::REPLACE, &e20, b"k", b"v", 0),
            // append: no extras
            pkt(op::APPEND, &e8, b"k", b"v", 0),
            pkt(op::PREPEND, b"", b"", b"v", 0),
            // delete
            pkt(op::DELETE, &e4, b"k", b"", 0),
            pkt(op::DELETE, b"", b"k", b"v", 0),
            pkt(op::DELETEQ, b"", b"", b"", 0),
            // incr: exactly 20 bytes of extras, a key, no value
            pkt(op::INCREMENT, &e8, b"k", b"", 0),
            pkt(op::DECREMENT, &e20, b"", b"", 0),
            pkt(op::INCREMENTQ, &e20, b"k", b"v", 0),
            // no-argument opcodes
            pkt(op::NOOP, b"", b"k", b"", 0),
            pkt(op::VERSION, &e4, b"", b"", 0),
            pkt(op::QUIT, b"", b"", b"v", 0),
            pkt(op::QUITQ, b"", b"k", b"", 0),
            pkt(op::SASL_LIST_MECHS, b"", b"k", b"", 0),
            // flush: 0 or 4 bytes of extras, nothing else
            pkt(op::FLUSH, &e8, b"", b"", 0),
            pkt(op::FLUSH, b"", b"k", b"", 0),
            pkt(op::FLUSHQ, &e4, b"", b"v", 0),
            // touch / gat: 4 bytes of extras and a key
            pkt(op::TOUCH, b"", b"k", b"", 0),
            pkt(op::GAT, &e8, b"k", b"", 0),
            pkt(op::GATKQ, &e4, b"", b"", 0),
            // stat: no extras
            pkt(op::STAT, &e4, b"", b"", 0),
            // sasl: a mechanism, no extras
            pkt(op::SASL_AUTH, b"", b"", b"x", 0),
            pkt(op::SASL_STEP, &e4, b"PLAIN", b"x", 0),
            pkt(op::VERBOSITY, b"", b"", b"", 0),
        ];
        for b in &cases {
            closes_with(b, Some(ErrorKind::InvalidArguments));
        }
    }

    #[test]
    fn oversized_value_is_swallowed() {
        let ext = [0u8; 8];
        let b = raw(op::SET, &ext, b"big", b"", 0, Some(8 + 3 + 5000));
        let (r, n) = done(&b);
        assert_eq!(n, HEADER_LEN + 8 + 3);
        assert!(matches!(
            r.cmd,
            Command::Swallow {
                error: ErrorKind::TooLarge,
                skip: 5000,
                unlink: Some(b"big")
            }
        ));
        let b = raw(op::APPENDQ, b"", b"k", b"", 0, Some(1 + 1025));
        let (r, _) = done(&b);
        assert!(r.ctx.noreply);
        assert!(matches!(
            r.cmd,
            Command::Swallow {
                error: ErrorKind::TooLarge,
                skip: 1025,
                unlink: None
            }
        ));
        // A 4 GiB body never makes us wait for (or allocate) it.
        let b = raw(op::SET, &ext, b"k", b"", 0, Some(u32::MAX));
        assert!(matches!(
            done(&b).0.cmd,
            Command::Swallow { skip, .. } if skip == u32::MAX as usize - 9
        ));
        // Exactly at the limit (memcached's item size: 1024 - 48 - 8 - key
        // and NUL - CRLF, 4 bytes less with flags): parsed normally once
        // complete; one byte more is too large.
        for (flags, top) in [(0u32, 964), (7, 960)] {
            let mut ext = flags.to_be_bytes().to_vec();
            ext.extend_from_slice(&[0; 4]);
            let b = pkt(op::SET, &ext, b"k", &vec![b'x'; top], 0);
            assert!(matches!(done(&b).0.cmd, Command::Store { .. }));
            let b = pkt(op::SET, &ext, b"k", &vec![b'x'; top + 1], 0);
            assert!(matches!(done(&b).0.cmd, Command::Swallow { .. }));
        }
    }

    #[test]
    fn unknown_opcode_skips_body() {
        let b = pkt(0x55, b"", b"", b"abc", 0);
        let (r, n) = done(&b);
        assert_eq!(n, HEADER_LEN);
        assert!(matches!(
            r.cmd,
            Command::Swallow {
                error: ErrorKind::UnknownCommand,
                skip: 3,
                ..
            }
        ));
        assert_eq!(r.ctx.opcode, 0x55);
    }

    #[test]
    fn encode_get_replies() {
        let v = Response::Value {
            key: b"foo",
            flags: 0xabcd,
            cas: 99,
            data: b"bar",
            with_cas: true,
        };
        let (h, body) = reply(v, ctx(op::GET));
        assert_eq!(
            (h.magic, h.opcode, h.status, h.extlen, h.keylen, h.opaque, h.cas),
            (RES_MAGIC, op::GET, 0, 4, 0, 7, 99)
        );
        assert_eq!(body, b"\0\0\xab\xcdbar");
        let v = Response::Value {
            key: b"foo",
            flags: 1,
            cas: 5,
            data: b"bar",
            with_cas: true,
        };
        let (h, body) = reply(v, ctx(op::GETKQ));
        assert_eq!((h.keylen, h.extlen), (3, 4));
        assert_eq!(body, b"\0\0\0\x01foobar");
        // Touch answers the flags, not the value.
        let v = Response::Value {
            key: b"foo",
            flags: 1,
            cas: 5,
            data: b"bar",
            with_cas: true,
        };
        let (h, body) = reply(v, ctx(op::TOUCH));
        assert_eq!((h.extlen, h.cas, &body[..]), (4, 5, &b"\0\0\0\x01"[..]));
        // Misses.
        let (h, body) = reply(Response::Miss { key: b"foo" }, ctx(op::GET));
        assert_eq!((h.status, &body[..]), (1, &b"Not found"[..]));
        let (h, body) = reply(Response::Miss { key: b"foo" }, ctx(op::GETK));
        assert_eq!((h.status, h.keylen, &body[..]), (1, 3, &b"foo"[..]));
        for q in [op::GETQ, op::GETKQ, op::GATQ, op::GATKQ] {
            let mut out = Vec::new();
            encode(&Response::Miss { key: b"foo" }, &ctx(q), &mut out);
            encode(&Response::End, &ctx(q), &mut out);
            assert!(out.is_empty());
        }
        let mut out = Vec::new();
        encode(&Response::End, &ctx(op::GET), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn encode_quiet_success_and_loud_errors() {
        for (resp, opc) in [
            (Response::Stored { cas: 3 }, op::SETQ),
            (Response::Deleted, op::DELETEQ),
            (Response::Numeric { value: 1, cas: 2 }, op::INCREMENTQ),
            (Response::Ok, op::FLUSHQ),
            (Response::Ok, op::QUITQ),
        ] {
            let mut out = Vec::new();
            encode(&resp, &ctx(opc), &mut out);
            assert!(out.is_empty(), "{opc:#x}");
        }
        let (h, body) = reply(Response::Stored { cas: 3 }, ctx(op::SET));
        assert_eq!((h.status, h.cas, body.len()), (0, 3, 0));
        let (h, body) = reply(Response::Numeric { value: 258, cas: 4 }, ctx(op::DECREMENT));
        assert_eq!((h.cas, &body[..]), (4, &258u64.to_be_bytes()[..]));
        let (h, _) = reply(Response::Exists, ctx(op::SETQ));
        assert_eq!(h.status, status::KEY_EEXISTS);
        let (h, body) = reply(Response::NotFound, ctx(op::DELETEQ));
        assert_eq!((h.status, &body[..]), (1, &b"Not found"[..]));
        let (h, body) = reply(Response::Error(ErrorKind::NonNumeric), ctx(op::INCREMENTQ));
        assert_eq!(h.status, status::DELTA_BADVAL);
        assert_eq!(body, b"Non-numeric server-side value for incr or decr");
    }

    #[test]
    fn not_stored_depends_on_opcode() {
        let st = |opc| reply(Response::NotStored, ctx(opc)).0.status;
        assert_eq!(st(op::ADD), status::KEY_EEXISTS);
        assert_eq!(st(op::ADDQ), status::KEY_EEXISTS);
        assert_eq!(st(op::REPLACE), status::KEY_ENOENT);
        assert_eq!(st(op::APPEND), status::NOT_STORED);
        assert_eq!(st(op::PREPENDQ), status::NOT_STORED);
        let (h, body) = reply(Response::NotFound, ctx(op::APPEND));
        assert_eq!(
            (h.status, &body[..]),
            (status::NOT_STORED, &b"Not stored."[..])
        );
    }

    #[test]
    fn encode_errors_status_and_text() {
        for (e, st, text) in [
            (ErrorKind::UnknownCommand, 0x81, &b"Unknown command"[..]),
            (ErrorKind::InvalidArguments, 0x04, b"Invalid arguments"),
            (ErrorKind::TooLarge, 0x03, b"Too large."),
            (ErrorKind::OutOfMemory, 0x82, b"Out of memory"),
            (ErrorKind::AuthError, 0x20, b"Auth failure."),
            (
                ErrorKind::NonNumeric,
                0x06,
                b"Non-numeric server-side value for incr or decr",
            ),
        ] {
            let (h, body) = reply(Response::Error(e), ctx(op::SET));
            assert_eq!((h.status, &body[..], h.opaque), (st, text, 7));
        }
    }

    #[test]
    fn encode_stats_version_sasl() {
        let (h, body) = reply(
            Response::Stat {
                name: "pid",
                value: StatValue::U64(1234),
            },
            ctx(op::STAT),
        );
        assert_eq!((h.keylen, &body[..]), (3, &b"pid1234"[..]));
        let (h, body) = reply(
            Response::StatParts {
                prefix: "items:",
                class: 5,
                name: "number",
                value: StatValue::Bool(true),
            },
            ctx(op::STAT),
        );
        assert_eq!((h.keylen, &body[..]), (14, &b"items:5:numberyes"[..]));
        let (h, body) = reply(Response::StatsEnd, ctx(op::STAT));
        assert_eq!((h.keylen, h.bodylen, h.status), (0, 0, 0));
        assert!(body.is_empty());
        let (_, body) = reply(Response::Version("1.6.18"), ctx(op::VERSION));
        assert_eq!(body, b"1.6.18");
        let (h, _) = reply(Response::Noop, ctx(op::NOOP));
        assert_eq!((h.opcode, h.status, h.bodylen), (op::NOOP, 0, 0));
        let (_, body) = reply(Response::SaslMechs("PLAIN"), ctx(op::SASL_LIST_MECHS));
        assert_eq!(body, b"PLAIN");
        let (h, body) = reply(Response::AuthOk, ctx(op::SASL_AUTH));
        assert_eq!((h.status, &body[..]), (0, &b"Authenticated"[..]));
        let (h, body) = reply(Response::AuthContinue, ctx(op::SASL_AUTH));
        assert_eq!((h.status, body.len()), (status::AUTH_CONTINUE, 0));
    }

    /// The replies whose bytes depend on the protocol (the executor sends
    /// the same `Response` for text and binary).
    #[test]
    fn protocol_specific_replies() {
        // A store refused for size: E2BIG, but Not stored for append/prepend.
        let (h, _) = reply(Response::StoreFailed(ErrorKind::TooLarge), ctx(op::SET));
        assert_eq!(h.status, status::E2BIG);
        for o in [op::APPEND, op::PREPENDQ] {
            let (h, _) = reply(Response::StoreFailed(ErrorKind::OutOfMemory), ctx(o));
            assert_eq!(h.status, status::NOT_STORED);
        }
        // Quit is answered, QuitQ is not.
        let (h, _) = reply(Response::Quit, ctx(op::QUIT));
        assert_eq!((h.status, h.bodylen), (0, 0));
        let mut out = Vec::new();
        encode(&Response::Quit, &ctx(op::QUITQ), &mut out);
        assert!(out.is_empty());
        // Stats: reset ends the block, an unknown or misused group is Not
        // found, the detail dump is one `detailed` stat then the end.
        let (h, _) = reply(Response::StatsReset, ctx(op::STAT));
        assert_eq!((h.status, h.bodylen), (0, 0));
        for r in [Response::StatsUnknown, Response::StatsDetailUsage] {
            let (h, body) = reply(r, ctx(op::STAT));
            assert_eq!(
                (h.status, &body[..]),
                (status::KEY_ENOENT, &b"Not found"[..])
            );
        }
        let mut out = Vec::new();
        encode(
            &Response::StatsDetailDump(b"END\r\n"),
            &ctx(op::STAT),
            &mut out,
        );
        let h = Header::decode(&out);
        assert_eq!(
            &out[HEADER_LEN..HEADER_LEN + h.bodylen as usize],
            b"detailedEND\r\n"
        );
        assert_eq!(out.len(), 2 * HEADER_LEN + h.bodylen as usize);
        // SASL opcodes, by the context's protocol.
        assert!(is_sasl_auth(&ctx(op::SASL_STEP)) && !is_sasl_auth(&Ctx::default()));
        assert!(requires_auth(&ctx(op::GET)) && !requires_auth(&ctx(op::NOOP)));
        assert!(!requires_auth(&Ctx::default()));
    }

    #[test]
    fn encoding_does_not_allocate_beyond_output() {
        // Many replies into one pre-sized buffer: no reallocation.
        let mut out = Vec::with_capacity(64 * 100);
        let cap = out.capacity();
        for _ in 0..100 {
            encode(
                &Response::Stat {
                    name: "curr_items",
                    value: StatValue::U64(u64::MAX),
                },
                &ctx(op::STAT),
                &mut out,
            );
        }
        assert_eq!(out.capacity(), cap);
    }
}
