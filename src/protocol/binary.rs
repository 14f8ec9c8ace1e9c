//! memcached's binary protocol: 24-byte headers, opcodes, status codes.
//!
//! Placeholder until the binary issue lands.

use super::{Command, Ctx, ErrorKind, Limits, Parsed, Request, Response};

/// Request magic byte.
pub const REQ_MAGIC: u8 = 0x80;
/// Response magic byte.
pub const RES_MAGIC: u8 = 0x81;

/// Parse one binary request.
pub fn parse<'a>(buf: &'a [u8], _limits: &Limits) -> Parsed<'a> {
    Parsed::Done(
        Request::new(Command::Error(ErrorKind::UnknownCommand)),
        buf.len(),
    )
}

/// Append the binary form of `resp`.
pub fn encode(_resp: &Response<'_>, _ctx: &Ctx, _out: &mut Vec<u8>) {}
