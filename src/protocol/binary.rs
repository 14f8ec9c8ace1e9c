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
    StoreMode, MAX_KEY_LEN,
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
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.magic);
        out.push(self.opcode);
        out.extend_from_slice(&self.keylen.to_be_bytes());
        out.push(self.extlen);
        out.push(self.datatype);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.bodylen.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
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
    if vlen > limits.max_item_size {
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
            delay: if ext == 4 { be32(extras) as i64 } else { 0 },
        },
        op::NOOP => Command::Noop,
        op::VERSION => Command::Version,
        op::VERBOSITY => Command::Verbosity,
        op::STAT => {
            // `detail on` and the like travel in the key.
            let sp = k.iter().position(|&b| b == b' ').unwrap_or(k.len());
            let arg = if sp < k.len() { &k[sp + 1..] } else { &k[sp..] };
            Command::Stats {
                group: &k[..sp],
                arg,
            }
        }
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
        Response::Noop | Response::StatsEnd => simple(out, ctx, status::OK, b"", 0),
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
