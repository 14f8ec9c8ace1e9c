//! memcached's classic text protocol: parser and encoder.
//!
//! Byte-for-byte memcached 1.6: the same token-count rules (a wrong count is
//! `ERROR`), the same `CLIENT_ERROR` texts, the same swallowing of a data
//! block that cannot be stored. Meta commands share the framing and are
//! handed to [`super::meta`].

use super::{
    fields, put_stat_value, put_u64, strtol32, strtoul32, strtoull, tokens, Command, Ctx,
    ErrorKind, Fields, Keys, Limits, Parsed, Request, Response, StatsGroup, StoreMode,
    MAX_DATA_LEN, MAX_KEY_LEN,
};

/// A line with no newline within this many bytes is not a command (memcached
/// closes the connection), unless it is a multi-get.
pub const MAX_LINE: usize = 2048;
/// Upper bound on a multi-get line (memcached's is unbounded; ours bounds
/// memory). A line whose newline lies beyond this closes the connection,
/// whether the newline arrived in the same read or not.
pub const MAX_GET_LINE: usize = 1 << 20;

/// Outcome for a line that is too long to be a command: close the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    TooLong,
}

/// Find the end of the first line. `Err` when no newline is in sight and the
/// buffer is too long for one (memcached closes such connections), or when
/// the newline lies beyond [`MAX_GET_LINE`]: the outcome for a line must not
/// depend on how TCP cut it into reads.
pub fn find_line(buf: &[u8]) -> Result<Option<usize>, LineError> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i > MAX_GET_LINE => Err(LineError::TooLong),
        Some(i) => Ok(Some(i)),
        None => {
            if buf.len() > MAX_LINE {
                let lead = buf.iter().take_while(|&&b| b == b' ').count();
                let p = &buf[lead..];
                let is_get = p.starts_with(b"get ") || p.starts_with(b"gets ");
                if lead > 100 || !is_get || buf.len() > MAX_GET_LINE {
                    return Err(LineError::TooLong);
                }
            }
            Ok(None)
        }
    }
}

/// Parse one request from the front of `buf` (which must not be empty).
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let nl = match find_line(buf) {
        Ok(Some(i)) => i,
        Ok(None) => return Parsed::Incomplete { need: None },
        Err(LineError::TooLong) => {
            return Parsed::Done(
                Request::new(Command::Error(ErrorKind::LineTooLong)),
                buf.len(),
            );
        }
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let consumed = nl + 1;
    // memcached tokenizes a C string: a NUL byte ends the line.
    if let Some(z) = memchr::memchr(0, line) {
        line = &line[..z];
    }
    let mut toks = tokens(line);
    let Some(cmd) = toks.next() else {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    };
    let rest_at = cmd.as_ptr() as usize - line.as_ptr() as usize + cmd.len();
    let rest = &line[rest_at..];
    match cmd {
        b"get" => retrieval(rest, false, false, consumed),
        b"gets" => retrieval(rest, true, false, consumed),
        b"gat" => retrieval(rest, false, true, consumed),
        b"gats" => retrieval(rest, true, true, consumed),
        // memcached's old alias of `get`.
        b"bget" => retrieval(rest, false, false, consumed),
        b"set" => storage(StoreMode::Set, rest, buf, consumed, limits),
        b"add" => storage(StoreMode::Add, rest, buf, consumed, limits),
        b"replace" => storage(StoreMode::Replace, rest, buf, consumed, limits),
        b"append" => storage(StoreMode::Append, rest, buf, consumed, limits),
        b"prepend" => storage(StoreMode::Prepend, rest, buf, consumed, limits),
        b"cas" => storage(StoreMode::Cas, rest, buf, consumed, limits),
        b"delete" => delete(rest, consumed),
        b"incr" => arith(true, rest, consumed),
        b"decr" => arith(false, rest, consumed),
        b"touch" => touch(rest, consumed),
        b"flush_all" => flush_all(rest, consumed),
        b"version" => done(Command::Version, consumed, false),
        b"quit" => done(Command::Quit, consumed, false),
        b"verbosity" => {
            // memcached: `verbosity <level> [noreply]`, otherwise ERROR.
            let t = fields::<3>(rest);
            match t.n {
                1 | 2 => {
                    let noreply = t.v[t.n - 1] == b"noreply";
                    // strtoul: any 64-bit number, kept to 32 bits.
                    match strtoul32(t.v[0]) {
                        Some(level) => done(Command::Verbosity { level }, consumed, noreply),
                        None => done(Command::Error(ErrorKind::BadFormat), consumed, noreply),
                    }
                }
                _ => done(Command::Error(ErrorKind::UnknownCommand), consumed, false),
            }
        }
        b"stats" => {
            let mut t = tokens(rest);
            let group = t.next().unwrap_or(b"");
            done(Command::Stats(stats_group(group, t.rest)), consumed, false)
        }
        b"slabs" => done(Command::Slabs { args: rest }, consumed, false),
        b"lru_crawler" => done(Command::LruCrawler { args: rest }, consumed, false),
        b"shutdown" | b"watch" | b"cache_memlimit" => done(
            Command::Ops {
                name: cmd,
                args: rest,
            },
            consumed,
            false,
        ),
        // memcached: `refresh_certs [noreply]`.
        b"refresh_certs" => {
            // memcached's set_noreply_maybe: the last token.
            let noreply = tokens(rest).last() == Some(b"noreply");
            done(Command::RefreshCerts, consumed, noreply)
        }
        // mcrouter's text commands (memcached answers ERROR to these).
        b"lease-get" | b"metaget" => one_key(cmd, rest, consumed),
        b"lease-set" => lease_set(rest, buf, consumed, limits),
        b"mn" => done(Command::Noop, consumed, false),
        b"mg" | b"ms" | b"md" | b"ma" | b"me" => {
            super::meta::parse(cmd, rest, buf, consumed, limits)
        }
        // An HTTP request line: close without a word, as memcached does
        // (its defence against cross-protocol requests from browsers).
        _ if is_http_request(cmd, line) => done(Command::Close(None), consumed, false),
        _ => done(Command::Error(ErrorKind::UnknownCommand), consumed, false),
    }
}

/// memcached 1.6.18's rule (proto_text.c, the last branch of
/// `process_command_ascii`): a line whose command it does not know, whose
/// command is at least 2 bytes and does not start with a letter that has its
/// own dispatch branch (`g s a c i d t`, or `m` for 2-byte meta verbs), and
/// whose last token -- of at most 23, as its tokenizer keeps -- starts with
/// `HTTP/`, closes the connection. Any line, not only the first.
/// (`misbehave` is known only to memcached's debug builds: the rule applies.)
fn is_http_request(cmd: &[u8], line: &[u8]) -> bool {
    if cmd.len() < 2 || b"gsacidt".contains(&cmd[0]) || (cmd[0] == b'm' && cmd.len() == 2) {
        return false;
    }
    // Commands memcached serves that we answer `ERROR`: not HTTP.
    if matches!(cmd, b"watch" | b"lru" | b"extstore") {
        return false;
    }
    let last = tokens(line).take(23).last().unwrap_or(b"");
    last.starts_with(b"HTTP/")
}

/// A text `stats <group> <arg>`: groups match exactly; `detail` reads the
/// first word of its argument.
pub fn stats_group<'a>(group: &[u8], arg: &'a [u8]) -> StatsGroup<'a> {
    match group {
        b"" => StatsGroup::General,
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"replication" => StatsGroup::Replication,
        b"reset" => StatsGroup::Reset,
        b"detail" => match arg.split(|&b| b == b' ').find(|t| !t.is_empty()) {
            Some(b"on") => StatsGroup::DetailSwitch(true),
            Some(b"off") => StatsGroup::DetailSwitch(false),
            Some(b"dump") => StatsGroup::DetailDump,
            _ => StatsGroup::DetailUsage,
        },
        b"cachedump" => StatsGroup::CacheDump(arg),
        b"extstore" => StatsGroup::Extstore,
        _ => StatsGroup::Unknown,
    }
}

fn done(cmd: Command<'_>, consumed: usize, noreply: bool) -> Parsed<'_> {
    Parsed::Done(
        Request {
            cmd,
            ctx: Ctx {
                noreply,
                ..Ctx::default()
            },
        },
        consumed,
    )
}

fn retrieval(rest: &[u8], with_cas: bool, gat: bool, consumed: usize) -> Parsed<'_> {
    let mut rest = rest;
    let mut touch = None;
    if gat {
        let mut t = tokens(rest);
        let Some(exp) = t.next() else {
            return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
        };
        // strtol, kept to 32 bits: `gat 4294967296 k` means exptime 0.
        let Some(exp) = strtol32(exp) else {
            return done(Command::Error(ErrorKind::InvalidExptime), consumed, false);
        };
        touch = Some(exp as i64);
        rest = t.rest;
    }
    let mut any = false;
    for k in tokens(rest) {
        any = true;
        if k.len() > MAX_KEY_LEN {
            return done(Command::Error(ErrorKind::BadFormat), consumed, false);
        }
    }
    if !any && !gat {
        // `get` alone is ERROR; `gat <exptime>` alone is an empty result.
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    done(
        Command::Get {
            keys: Keys::Spaced(rest),
            with_cas,
            touch,
        },
        consumed,
        false,
    )
}

fn storage<'a>(
    mode: StoreMode,
    rest: &'a [u8],
    buf: &'a [u8],
    consumed: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let Fields { v, n } = fields::<6>(rest);
    let want = if mode == StoreMode::Cas { 5 } else { 4 };
    // The data length as memcached reads it (strtol, kept to 32 bits). When
    // it is one memcached would accept, the data block that follows is data
    // whatever else is wrong with the line: it is swallowed, never parsed as
    // commands (memcached parses it as commands after most line errors).
    let data_len = if n > 3 {
        strtol32(v[3])
            .filter(|l| (0..=MAX_DATA_LEN).contains(l))
            .map(|l| l as usize)
    } else {
        None
    };
    if n != want && n != want + 1 {
        // memcached: ERROR, whatever the last token says.
        return refuse(ErrorKind::UnknownCommand, data_len, consumed, false);
    }
    // memcached (`set_noreply_maybe`): once the count is right, a last
    // token `noreply` silences the reply before any field is read, even
    // when it stands where the length or cas belongs (then an error).
    let noreply = v[n - 1] == b"noreply";
    let key = v[0];
    if key.len() > MAX_KEY_LEN {
        return refuse(ErrorKind::BadFormat, data_len, consumed, noreply);
    }
    // memcached: flags by strtoul and exptime by strtol, both kept to 32
    // bits (`2147483648` is exptime -2147483648: stored, already expired).
    let (Some(flags), Some(exptime), Some(_)) = (strtoul32(v[1]), strtol32(v[2]), strtol32(v[3]))
    else {
        return refuse(ErrorKind::BadFormat, data_len, consumed, noreply);
    };
    let exptime = exptime as i64;
    let cas = if mode == StoreMode::Cas {
        match strtoull(v[4]) {
            Some(c) => c,
            None => return refuse(ErrorKind::BadFormat, data_len, consumed, noreply),
        }
    } else {
        0
    };
    // A negative length or one over INT_MAX - 2: memcached answers a format
    // error and reads no data block (it stays in sync), and so do we.
    let Some(len) = data_len else {
        return done(Command::Error(ErrorKind::BadFormat), consumed, noreply);
    };
    if !crate::item::item_fits(key.len(), flags, len, limits.max_item_size) {
        // memcached swallows the data block (+CRLF) so the stream stays in sync.
        return Parsed::Done(
            Request {
                cmd: Command::Swallow {
                    error: ErrorKind::TooLarge,
                    skip: len + 2,
                    unlink: (mode == StoreMode::Set).then_some(key),
                },
                ctx: Ctx {
                    noreply,
                    ..Ctx::default()
                },
            },
            consumed,
        );
    }
    let total = consumed + len + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: Some(total) };
    }
    if &buf[consumed + len..total] != b"\r\n" {
        return Parsed::Done(
            Request {
                cmd: Command::Error(ErrorKind::BadDataChunk),
                ctx: Ctx {
                    noreply,
                    ..Ctx::default()
                },
            },
            total,
        );
    }
    let data = &buf[consumed..consumed + len];
    Parsed::Done(
        Request {
            cmd: Command::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                cas,
            },
            ctx: Ctx {
                noreply,
                ..Ctx::default()
            },
        },
        total,
    )
}

/// A storage line refused with `error`: the announced data block, if its
/// length could be read, is swallowed (`len` + CRLF) after the reply.
fn refuse(
    error: ErrorKind,
    data_len: Option<usize>,
    consumed: usize,
    noreply: bool,
) -> Parsed<'static> {
    match data_len {
        Some(len) => Parsed::Done(
            Request {
                cmd: Command::Swallow {
                    error,
                    skip: len + 2,
                    unlink: None,
                },
                ctx: Ctx {
                    noreply,
                    ..Ctx::default()
                },
            },
            consumed,
        ),
        None => done(Command::Error(error), consumed, noreply),
    }
}

/// `lease-get <key>` / `metaget <key>`: exactly one key (mcrouter sends one
/// request per key). No key is `ERROR` (as memcached answers a bare `get`);
/// several keys or a key over 250 bytes is a format error.
fn one_key<'a>(cmd: &[u8], rest: &'a [u8], consumed: usize) -> Parsed<'a> {
    let t = fields::<3>(rest);
    if t.n == 0 {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    if t.n > 1 || t.v[0].len() > MAX_KEY_LEN {
        return done(Command::Error(ErrorKind::BadFormat), consumed, false);
    }
    let key = t.v[0];
    let c = if cmd == b"metaget" {
        Command::MetaGetInfo { key }
    } else {
        Command::LeaseGet { key }
    };
    done(c, consumed, false)
}

/// mcrouter's `lease-set <key> <token> <flags> <exptime> <bytes> [noreply]`.
/// Field errors follow the storage commands' rules (the data block is
/// swallowed whenever its length could be read).
fn lease_set<'a>(rest: &'a [u8], buf: &'a [u8], consumed: usize, limits: &Limits) -> Parsed<'a> {
    let Fields { v, n } = fields::<6>(rest);
    let data_len = if n > 4 {
        strtol32(v[4])
            .filter(|l| (0..=MAX_DATA_LEN).contains(l))
            .map(|l| l as usize)
    } else {
        None
    };
    if n != 5 && n != 6 {
        return refuse(ErrorKind::UnknownCommand, data_len, consumed, false);
    }
    let noreply = n == 6 && v[5] == b"noreply";
    let key = v[0];
    if key.len() > MAX_KEY_LEN {
        return refuse(ErrorKind::BadFormat, data_len, consumed, noreply);
    }
    let (Some(token), Some(flags), Some(exptime)) =
        (strtoull(v[1]), strtoul32(v[2]), strtol32(v[3]))
    else {
        return refuse(ErrorKind::BadFormat, data_len, consumed, noreply);
    };
    let Some(len) = data_len else {
        return done(Command::Error(ErrorKind::BadFormat), consumed, noreply);
    };
    let ctx = Ctx {
        noreply,
        ..Ctx::default()
    };
    if !crate::item::item_fits(key.len(), flags, len, limits.max_item_size) {
        let cmd = Command::Swallow {
            error: ErrorKind::TooLarge,
            skip: len + 2,
            unlink: None,
        };
        return Parsed::Done(Request { cmd, ctx }, consumed);
    }
    let total = consumed + len + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: Some(total) };
    }
    if &buf[consumed + len..total] != b"\r\n" {
        let cmd = Command::Error(ErrorKind::BadDataChunk);
        return Parsed::Done(Request { cmd, ctx }, total);
    }
    let cmd = Command::LeaseSet {
        key,
        token,
        flags,
        exptime: exptime as i64,
        data: &buf[consumed..consumed + len],
    };
    Parsed::Done(Request { cmd, ctx }, total)
}

fn delete(rest: &[u8], consumed: usize) -> Parsed<'_> {
    let t = fields::<3>(rest);
    if t.n == 0 || t.n > 3 {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    // memcached reads `noreply` only when there is more than the key:
    // `delete noreply` deletes the key `noreply`, with a reply.
    let noreply = t.n > 1 && t.v[t.n - 1] == b"noreply";
    let key = t.v[0];
    // Allowed: `delete k`, `delete k noreply`, `delete k 0`, `delete k 0 noreply`.
    let extra = t.n - 1 - noreply as usize;
    let legacy_ok = extra == 0 || (extra == 1 && t.v[1] == b"0");
    if !legacy_ok {
        return done(Command::Error(ErrorKind::DeleteUsage), consumed, noreply);
    }
    if key.len() > MAX_KEY_LEN {
        return done(Command::Error(ErrorKind::BadFormat), consumed, noreply);
    }
    done(Command::Delete { key, cas: 0 }, consumed, noreply)
}

fn arith(incr: bool, rest: &[u8], consumed: usize) -> Parsed<'_> {
    let t = fields::<3>(rest);
    if t.n != 2 && t.n != 3 {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    // As memcached: the last token, whichever field (`incr k noreply` is a
    // silent error).
    let noreply = t.v[t.n - 1] == b"noreply";
    let key = t.v[0];
    if key.len() > MAX_KEY_LEN {
        return done(Command::Error(ErrorKind::BadFormat), consumed, noreply);
    }
    let Some(delta) = strtoull(t.v[1]) else {
        return done(Command::Error(ErrorKind::InvalidDelta), consumed, noreply);
    };
    done(
        Command::Arith {
            key,
            incr,
            delta,
            initial: None,
            cas: 0,
        },
        consumed,
        noreply,
    )
}

fn touch(rest: &[u8], consumed: usize) -> Parsed<'_> {
    let t = fields::<3>(rest);
    if t.n != 2 && t.n != 3 {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    // As memcached: the last token, whichever field (`touch k noreply` is a
    // silent error).
    let noreply = t.v[t.n - 1] == b"noreply";
    let key = t.v[0];
    if key.len() > MAX_KEY_LEN {
        return done(Command::Error(ErrorKind::BadFormat), consumed, noreply);
    }
    let Some(exptime) = strtol32(t.v[1]) else {
        return done(Command::Error(ErrorKind::InvalidExptime), consumed, noreply);
    };
    done(
        Command::Touch {
            key,
            exptime: exptime as i64,
        },
        consumed,
        noreply,
    )
}

fn flush_all(rest: &[u8], consumed: usize) -> Parsed<'_> {
    let t = fields::<3>(rest);
    if t.n > 2 {
        return done(Command::Error(ErrorKind::UnknownCommand), consumed, false);
    }
    let noreply = t.n > 0 && t.v[t.n - 1] == b"noreply";
    let args = t.n - noreply as usize;
    // memcached counts the command and applies `-F` before it reads the
    // delay: an unreadable one is refused by the executor.
    let delay = if args >= 1 {
        strtol32(t.v[0]).map(|d| d as i64)
    } else {
        Some(0)
    };
    done(Command::FlushAll { delay }, consumed, noreply)
}

/// The text of an error reply, without CRLF.
pub fn error_text(e: ErrorKind) -> &'static [u8] {
    match e {
        ErrorKind::UnknownCommand => b"ERROR",
        ErrorKind::BadFormat | ErrorKind::InvalidArguments => {
            b"CLIENT_ERROR bad command line format"
        }
        ErrorKind::BadDataChunk => b"CLIENT_ERROR bad data chunk",
        ErrorKind::LineTooLong => b"CLIENT_ERROR line too long",
        ErrorKind::InvalidExptime => b"CLIENT_ERROR invalid exptime argument",
        ErrorKind::DeleteUsage => {
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
        }
        ErrorKind::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument",
        ErrorKind::NonNumeric => b"CLIENT_ERROR cannot increment or decrement non-numeric value",
        ErrorKind::TooLarge => b"SERVER_ERROR object too large for cache",
        ErrorKind::OutOfMemory => b"SERVER_ERROR out of memory storing object",
        ErrorKind::TooManyConnections => b"ERROR Too many open connections",
        ErrorKind::AuthError => b"CLIENT_ERROR unauthenticated",
        ErrorKind::Client(s) | ErrorKind::Server(s) => s.as_bytes(),
    }
}

/// Append the text-protocol form of `resp`.
pub fn encode(resp: &Response<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    if ctx.noreply {
        return;
    }
    match *resp {
        Response::Value {
            key,
            flags,
            cas,
            data,
            with_cas,
        } => {
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.push(b' ');
            put_u64(out, flags as u64);
            out.push(b' ');
            put_u64(out, data.len() as u64);
            if with_cas {
                out.push(b' ');
                put_u64(out, cas);
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        Response::Miss { .. } => {}
        Response::End | Response::StatsEnd => out.extend_from_slice(b"END\r\n"),
        Response::StatsDetailDump(text) => out.extend_from_slice(text),
        Response::StatsReset => out.extend_from_slice(b"RESET\r\n"),
        Response::StatsDetailUsage => {
            out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")
        }
        Response::StatsUnknown => out.extend_from_slice(b"ERROR\r\n"),
        Response::Quit => {}
        Response::StoreFailed(e) => {
            out.extend_from_slice(error_text(e));
            out.extend_from_slice(b"\r\n");
        }
        Response::Line(l) => {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
        Response::Stored { .. } => out.extend_from_slice(b"STORED\r\n"),
        Response::NotStored => out.extend_from_slice(b"NOT_STORED\r\n"),
        Response::Exists => out.extend_from_slice(b"EXISTS\r\n"),
        Response::NotFound => out.extend_from_slice(b"NOT_FOUND\r\n"),
        Response::Deleted => out.extend_from_slice(b"DELETED\r\n"),
        Response::Touched { .. } => out.extend_from_slice(b"TOUCHED\r\n"),
        Response::Numeric { value, .. } => {
            put_u64(out, value);
            out.extend_from_slice(b"\r\n");
        }
        Response::Ok => out.extend_from_slice(b"OK\r\n"),
        Response::Version(v) => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Response::Stat { name, value } => {
            out.extend_from_slice(b"STAT ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            put_stat_value(out, value);
            out.extend_from_slice(b"\r\n");
        }
        Response::StatParts {
            prefix,
            class,
            name,
            value,
        } => {
            out.extend_from_slice(b"STAT ");
            out.extend_from_slice(prefix.as_bytes());
            put_u64(out, class as u64);
            out.push(b':');
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            put_stat_value(out, value);
            out.extend_from_slice(b"\r\n");
        }
        Response::Noop => out.extend_from_slice(b"MN\r\n"),
        Response::SaslMechs(_) | Response::AuthOk | Response::AuthContinue => {}
        Response::Error(e) => {
            out.extend_from_slice(error_text(e));
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_item_size: 1 << 20,
    };

    fn cmd(buf: &[u8]) -> (Request<'_>, usize) {
        match parse(buf, &L) {
            Parsed::Done(r, n) => (r, n),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn get_many() {
        let (r, n) = cmd(b"get a bb  c\r\nxx");
        assert_eq!(n, 13);
        match r.cmd {
            Command::Get {
                keys,
                with_cas,
                touch,
            } => {
                assert!(!with_cas && touch.is_none());
                assert_eq!(keys.iter().count(), 3);
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn set_needs_data() {
        assert!(matches!(
            parse(b"set k 0 0 5\r\nab", &L),
            Parsed::Incomplete { need: Some(20) }
        ));
        let (r, n) = cmd(b"set k 1 2 5 noreply\r\nhello\r\n");
        assert_eq!(n, 28);
        assert!(r.ctx.noreply);
        assert!(matches!(
            r.cmd,
            Command::Store {
                data: b"hello",
                flags: 1,
                exptime: 2,
                ..
            }
        ));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            cmd(b"bogus\r\n").0.cmd,
            Command::Error(ErrorKind::UnknownCommand)
        ));
        assert!(matches!(
            cmd(b"set k 0 0\r\n").0.cmd,
            Command::Error(ErrorKind::UnknownCommand)
        ));
        // a bad field with a readable length: the block is swallowed
        assert!(matches!(
            cmd(b"set k x 0 1\r\n").0.cmd,
            Command::Swallow {
                error: ErrorKind::BadFormat,
                skip: 3,
                unlink: None
            }
        ));
        assert!(matches!(
            cmd(b"set k 0 0 -1\r\n").0.cmd,
            Command::Error(ErrorKind::BadFormat)
        ));
        assert!(matches!(
            cmd(b"set k 0 0 1\r\nab\r\n").0.cmd,
            Command::Error(ErrorKind::BadDataChunk)
        ));
        assert!(matches!(
            cmd(b"delete k 5\r\n").0.cmd,
            Command::Error(ErrorKind::DeleteUsage)
        ));
        assert!(matches!(
            cmd(b"delete k 0\r\n").0.cmd,
            Command::Delete { .. }
        ));
        assert!(matches!(
            cmd(b"incr k x\r\n").0.cmd,
            Command::Error(ErrorKind::InvalidDelta)
        ));
        let big = format!("get {}\r\n", "k".repeat(251));
        assert!(matches!(
            cmd(big.as_bytes()).0.cmd,
            Command::Error(ErrorKind::BadFormat)
        ));
        let (r, n) = cmd(b"set k 0 0 2000000\r\n");
        assert_eq!(n, 19);
        assert!(matches!(
            r.cmd,
            Command::Swallow {
                skip: 2_000_002,
                ..
            }
        ));
    }

    #[test]
    fn long_line_closes_unless_get() {
        let junk = vec![b'x'; 3000];
        assert!(matches!(
            cmd(&junk).0.cmd,
            Command::Error(ErrorKind::LineTooLong)
        ));
        let mut get = b"get ".to_vec();
        get.extend(std::iter::repeat_n(b'k', 3000));
        assert!(matches!(parse(&get, &L), Parsed::Incomplete { .. }));
    }

    #[test]
    fn get_line_bound_is_the_same_for_any_split() {
        // newline at index MAX_GET_LINE: accepted, whole or cut before it
        let mut line = b"get ".to_vec();
        line.resize(MAX_GET_LINE, b'k');
        line.push(b'\n');
        assert!(matches!(find_line(&line), Ok(Some(_))));
        assert!(matches!(find_line(&line[..MAX_GET_LINE]), Ok(None)));
        // one byte further: refused, whole or cut
        line.insert(5, b'k');
        assert_eq!(find_line(&line), Err(LineError::TooLong));
        assert_eq!(
            find_line(&line[..MAX_GET_LINE + 1]),
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn http_request_line_closes() {
        for l in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.0\r\n",
            b"HTTP/1.1\r\n",
            b"mzz HTTP/\r\n",
        ] {
            assert!(matches!(cmd(l).0.cmd, Command::Close(None)), "{l:?}");
        }
        for l in [
            &b"X HTTP/1.1\r\n"[..],
            b"gx / HTTP/1.1\r\n",
            b"mz HTTP/1.1\r\n",
            b"GET / HTTP/1.1 x\r\n",
            b"GET / http/1.1\r\n",
        ] {
            assert!(
                matches!(cmd(l).0.cmd, Command::Error(ErrorKind::UnknownCommand)),
                "{l:?}"
            );
        }
        // memcached's watch branch takes it (and refuses the flag)
        assert!(matches!(
            cmd(b"watch HTTP/1.1\r\n").0.cmd,
            Command::Ops { name: b"watch", .. }
        ));
    }

    #[test]
    fn storage_fields_like_memcached() {
        // accepted after wrapping to 32 bits
        match cmd(b"set k 4294967297 2147483648 4294967297\r\nx\r\n")
            .0
            .cmd
        {
            Command::Store {
                flags,
                exptime,
                data,
                ..
            } => assert_eq!((flags, exptime, data), (1, -2147483648, &b"x"[..])),
            c => panic!("{c:?}"),
        }
        // refused fields with a readable length: swallowed
        for l in [
            &b"set k 0 x 3\r\n"[..],
            b"set k 0 0 3 noreply extra\r\n",
            b"cas k 0 0 3 x\r\n",
            b"cas k 0 0 3\r\n",
        ] {
            assert!(
                matches!(cmd(l).0.cmd, Command::Swallow { skip: 5, .. }),
                "{l:?}"
            );
        }
        // lengths memcached refuses: no swallow
        for l in [
            &b"set k 0 0 2147483646\r\n"[..],
            b"set k 0 0 2147483648\r\n",
            b"set k x 0 -1\r\n",
            b"set k 0 0 3x\r\n",
        ] {
            assert!(matches!(cmd(l).0.cmd, Command::Error(_)), "{l:?}");
        }
    }

    /// memcached's `set_noreply_maybe`: with a right token count, a last
    /// token `noreply` silences the reply whatever field it stands in.
    #[test]
    fn noreply_is_the_last_token_once_the_count_is_right() {
        for (line, noreply) in [
            (&b"set k 0 0 noreply\r\n"[..], true),
            (b"add k x 0 noreply\r\n", true),
            (b"cas k 0 0 1 noreply\r\n", true),
            (b"cas k 0 0 noreply noreply\r\n", true),
            (b"incr k noreply\r\n", true),
            (b"decr k noreply\r\n", true),
            (b"touch k noreply\r\n", true),
            (b"delete k x noreply\r\n", true),
            (b"verbosity noreply\r\n", true),
            (b"flush_all x noreply\r\n", true),
            // wrong count: ERROR is sent
            (b"set k 0 noreply\r\n", false),
            (b"cas k 0 0 noreply\r\n", false),
            (b"incr noreply\r\n", false),
            (b"set k 0 0 noreply 1 x\r\n", false),
            // not last
            (b"set k 0 0 noreply 1\r\n", false),
            (b"incr k noreply 1\r\n", false),
            // only the key: memcached does not look
            (b"delete noreply\r\n", false),
        ] {
            let (r, _) = cmd(line);
            assert_eq!(r.ctx.noreply, noreply, "{}", String::from_utf8_lossy(line));
        }
        assert!(matches!(
            cmd(b"delete noreply\r\n").0.cmd,
            Command::Delete {
                key: b"noreply",
                ..
            }
        ));
        // the block announced by a silent refused line is still swallowed
        assert!(matches!(
            cmd(b"cas k 0 0 1 noreply\r\n").0.cmd,
            Command::Swallow {
                error: ErrorKind::BadFormat,
                skip: 3,
                ..
            }
        ));
    }

    /// The replies whose bytes depend on the protocol, in text.
    #[test]
    fn protocol_specific_replies() {
        let text = |r: Response<'_>| {
            let mut out = Vec::new();
            encode(&r, &Ctx::default(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(Response::Quit), "");
        assert_eq!(
            text(Response::StoreFailed(ErrorKind::TooLarge)),
            "SERVER_ERROR object too large for cache\r\n"
        );
        assert_eq!(text(Response::StatsReset), "RESET\r\n");
        assert_eq!(
            text(Response::StatsDetailDump(
                b"PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n"
            )),
            "PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\n"
        );
        assert_eq!(text(Response::StatsUnknown), "ERROR\r\n");
        assert_eq!(text(Response::Line(b"NOSPARE x")), "NOSPARE x\r\n");
        assert_eq!(stats_group(b"detail", b"  dump x"), StatsGroup::DetailDump);
        assert_eq!(stats_group(b"resetx", b""), StatsGroup::Unknown);
        assert_eq!(
            stats_group(b"cachedump", b"1 2"),
            StatsGroup::CacheDump(b"1 2")
        );
    }

    #[test]
    fn encode_value_and_noreply() {
        let mut out = Vec::new();
        let r = Response::Value {
            key: b"k",
            flags: 3,
            cas: 9,
            data: b"hi",
            with_cas: true,
        };
        encode(&r, &Ctx::default(), &mut out);
        assert_eq!(out, b"VALUE k 3 2 9\r\nhi\r\n");
        out.clear();
        let quiet = Ctx {
            noreply: true,
            ..Ctx::default()
        };
        encode(&Response::Error(ErrorKind::BadFormat), &quiet, &mut out);
        assert!(out.is_empty());
    }
}
