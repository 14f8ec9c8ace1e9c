//! memcached's meta text protocol (mg, ms, md, ma, mn, me).
//!
//! Placeholder until the meta issue lands: every meta command is answered
//! with memcached's generic `ERROR`... (replaced by the full parser).

use super::{Command, ErrorKind, Limits, Parsed, Request};

/// A parsed meta command (filled in by the meta protocol work).
#[derive(Debug)]
pub struct MetaCommand<'a> {
    pub verb: &'a [u8],
}

/// Parse a meta command whose verb is `cmd` and whose line after the verb is
/// `rest`; `consumed` bytes of `buf` were the line.
pub fn parse<'a>(
    _cmd: &'a [u8],
    _rest: &'a [u8],
    _buf: &'a [u8],
    consumed: usize,
    _limits: &Limits,
) -> Parsed<'a> {
    Parsed::Done(
        Request::new(Command::Error(ErrorKind::UnknownCommand)),
        consumed,
    )
}
