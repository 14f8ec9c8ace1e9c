//! mcrouter in front of corecached (issue 12): mcrouter talks ASCII to its
//! backends with exactly the request forms below (mcrouter's
//! `AsciiSerialized.cpp`) and parses each reply with the grammar of the
//! request it sent (`McAsciiParser.rl`, client side). A plain `ERROR` reply
//! makes mcrouter close the backend connection and fail everything queued
//! on it, so no reply here may be `ERROR`.
//!
//! The reply parser in this file is written from that grammar: per request
//! kind, which reply lines are acceptable, field by field (`' '+` between
//! fields, `\r\n` or `\n` line ends, a data block of the announced size).
//! mcrouter itself does not run on these machines.

use crate::common;

use common::{show, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What mcrouter asked, which picks the reply grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Gets,
    LeaseGet,
    Metaget,
    Storage,
    Arith,
    Delete,
    Touch,
    Version,
    FlushAll,
}

/// A parsed reply, mcrouter's view of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// get/gets/lease-get hit (`VALUE`).
    Found {
        flags: u64,
        value: Vec<u8>,
        cas: Option<u64>,
    },
    /// lease-get miss (`LVALUE`): the lease token (1 = hot miss) and the
    /// stale value, if any.
    Lease {
        token: u64,
        flags: u64,
        value: Vec<u8>,
    },
    /// metaget hit.
    Meta {
        age: i64,
        exptime: u64,
        from: String,
    },
    /// `END` alone (get/gets/metaget miss).
    NotFound,
    /// A one-word reply (STORED, NOT_STORED, DELETED, TOUCHED, OK, ...).
    Word(&'static str),
    /// incr/decr result.
    Number(u64),
    Version(String),
    ClientError(String),
    ServerError(String),
}

struct Parser<'a> {
    b: &'a [u8],
    p: usize,
}

/// `Err(None)`: need more bytes; `Err(Some(msg))`: not in the grammar.
type R<T> = Result<T, Option<String>>;

impl<'a> Parser<'a> {
    fn need(&self, n: usize) -> R<()> {
        if self.p + n > self.b.len() {
            Err(None)
        } else {
            Ok(())
        }
    }
    fn lit(&mut self, s: &[u8]) -> R<()> {
        let avail = &self.b[self.p..];
        let k = avail.len().min(s.len());
        if avail[..k] != s[..k] {
            return Err(Some(format!("expected {:?} at {}", show(s), self.p)));
        }
        self.need(s.len())?;
        self.p += s.len();
        Ok(())
    }
    fn peek_is(&self, s: &[u8]) -> R<bool> {
        let avail = &self.b[self.p..];
        if avail.len() < s.len() {
            if s.starts_with(avail) {
                return Err(None);
            }
            return Ok(false);
        }
        Ok(avail.starts_with(s))
    }
    /// `' '+`
    fn spaces(&mut self) -> R<()> {
        self.need(1)?;
        if self.b[self.p] != b' ' {
            return Err(Some(format!("expected a space at {}", self.p)));
        }
        while self.p < self.b.len() && self.b[self.p] == b' ' {
            self.p += 1;
        }
        self.need(1)
    }
    fn opt_spaces(&mut self) -> R<()> {
        while self.p < self.b.len() && self.b[self.p] == b' ' {
            self.p += 1;
        }
        self.need(1)
    }
    /// `uint = digit+`
    fn uint(&mut self) -> R<u64> {
        let s = self.p;
        while self.p < self.b.len() && self.b[self.p].is_ascii_digit() {
            self.p += 1;
        }
        self.need(1)?;
        if self.p == s {
            return Err(Some(format!("expected digits at {s}")));
        }
        std::str::from_utf8(&self.b[s..self.p])
            .unwrap()
            .parse()
            .map_err(|e| Some(format!("{e}")))
    }
    /// `skip_key = (any+ -- (cntrl | space))`
    fn key(&mut self) -> R<Vec<u8>> {
        let s = self.p;
        while self.p < self.b.len() && self.b[self.p] > b' ' && self.b[self.p] != 0x7f {
            self.p += 1;
        }
        self.need(1)?;
        if self.p == s {
            return Err(Some(format!("expected a key at {s}")));
        }
        Ok(self.b[s..self.p].to_vec())
    }
    /// `new_line = '\r'? '\n'`
    fn nl(&mut self) -> R<()> {
        self.need(1)?;
        if self.b[self.p] == b'\r' {
            self.p += 1;
            self.need(1)?;
        }
        if self.b[self.p] != b'\n' {
            return Err(Some(format!("expected a line end at {}", self.p)));
        }
        self.p += 1;
        Ok(())
    }
    /// Rest of the line (error messages, version).
    fn text(&mut self) -> R<String> {
        let s = self.p;
        while self.p < self.b.len() && self.b[self.p] != b'\r' && self.b[self.p] != b'\n' {
            self.p += 1;
        }
        self.need(1)?;
        Ok(String::from_utf8_lossy(&self.b[s..self.p]).into_owned())
    }
    fn data(&mut self, n: usize) -> R<Vec<u8>> {
        self.need(n)?;
        let v = self.b[self.p..self.p + n].to_vec();
        self.p += n;
        Ok(v)
    }

    /// `error = command_error | server_error | client_error`. `ERROR` is a
    /// protocol failure for mcrouter: reported as not in the grammar.
    fn error(&mut self) -> R<Option<Reply>> {
        for (word, server) in [(&b"SERVER_ERROR"[..], true), (b"CLIENT_ERROR", false)] {
            if self.peek_is(word)? {
                self.lit(word)?;
                let msg = self.text()?;
                self.nl()?;
                let msg = msg.trim_start().to_string();
                return Ok(Some(if server {
                    Reply::ServerError(msg)
                } else {
                    Reply::ClientError(msg)
                }));
            }
        }
        if self.peek_is(b"ERROR")? {
            return Err(Some("ERROR reply received from server".into()));
        }
        Ok(None)
    }

    /// `hit = VALUE ' '+ key ' '+ flags ' '+ bytes [' '+ cas] nl data nl`
    fn value(&mut self, with_cas: bool) -> R<Reply> {
        self.lit(b"VALUE")?;
        self.spaces()?;
        self.key()?;
        self.spaces()?;
        let flags = self.uint()?;
        self.spaces()?;
        let n = self.uint()? as usize;
        let cas = if with_cas {
            self.spaces()?;
            Some(self.uint()?)
        } else {
            None
        };
        self.nl()?;
        let value = self.data(n)?;
        self.nl()?;
        Ok(Reply::Found { flags, value, cas })
    }

    fn reply(&mut self, k: Kind) -> R<Reply> {
        if let Some(e) = self.error()? {
            return Ok(e);
        }
        let r = match k {
            Kind::Get | Kind::Gets => {
                // get = hit? 'END'
                let r = if self.peek_is(b"VALUE")? {
                    self.value(k == Kind::Gets)?
                } else {
                    Reply::NotFound
                };
                self.lit(b"END")?;
                r
            }
            Kind::LeaseGet => {
                // lease_get = (hit | lvalue) 'END'
                let r = if self.peek_is(b"VALUE")? {
                    self.value(false)?
                } else {
                    self.lit(b"LVALUE")?;
                    self.spaces()?;
                    self.key()?;
                    self.spaces()?;
                    let token = self.uint()?;
                    self.spaces()?;
                    let flags = self.uint()?;
                    self.spaces()?;
                    let n = self.uint()? as usize;
                    self.nl()?;
                    let value = self.data(n)?;
                    self.nl()?;
                    Reply::Lease {
                        token,
                        flags,
                        value,
                    }
                };
                self.lit(b"END")?;
                r
            }
            Kind::Metaget => {
                // mhit? 'END'
                let r = if self.peek_is(b"META")? {
                    self.lit(b"META")?;
                    self.spaces()?;
                    self.key()?;
                    self.spaces()?;
                    self.lit(b"age:")?;
                    self.opt_spaces()?;
                    let age = if self.peek_is(b"unknown")? {
                        self.lit(b"unknown")?;
                        -1
                    } else {
                        let neg = self.peek_is(b"-")?;
                        if neg {
                            self.p += 1;
                        }
                        let v = self.uint()? as i64;
                        if neg {
                            -v
                        } else {
                            v
                        }
                    };
                    self.lit(b";")?;
                    self.opt_spaces()?;
                    self.lit(b"exptime:")?;
                    self.opt_spaces()?;
                    let exptime = self.uint()?;
                    self.lit(b";")?;
                    self.opt_spaces()?;
                    self.lit(b"from:")?;
                    self.opt_spaces()?;
                    let s = self.p;
                    while self.p < self.b.len()
                        && (self.b[self.p].is_ascii_hexdigit() || b".:".contains(&self.b[self.p]))
                    {
                        self.p += 1;
                    }
                    self.need(1)?;
                    let mut from = String::from_utf8_lossy(&self.b[s..self.p]).into_owned();
                    if from.is_empty() {
                        self.lit(b"unknown")?;
                        from = "unknown".into();
                    }
                    if self.peek_is(b";")? {
                        self.lit(b";")?;
                        self.opt_spaces()?;
                        self.lit(b"is_transient:")?;
                        self.opt_spaces()?;
                        self.uint()?;
                        self.opt_spaces()?;
                    }
                    self.nl()?;
                    Reply::Meta { age, exptime, from }
                } else {
                    Reply::NotFound
                };
                self.lit(b"END")?;
                r
            }
            Kind::Storage => self.word(&[
                "STORED",
                "STALE_STORED",
                "NOT_STORED",
                "EXISTS",
                "NOT_FOUND",
                "DELETED",
            ])?,
            Kind::Arith => {
                if self.peek_is(b"NOT_FOUND")? {
                    self.word(&["NOT_FOUND"])?
                } else {
                    let v = self.uint()?;
                    self.opt_spaces()?;
                    Reply::Number(v)
                }
            }
            Kind::Delete => self.word(&["DELETED", "NOT_FOUND"])?,
            Kind::Touch => self.word(&["TOUCHED", "NOT_FOUND"])?,
            Kind::FlushAll => self.word(&["OK"])?,
            Kind::Version => {
                self.lit(b"VERSION ")?;
                Reply::Version(self.text()?)
            }
        };
        self.nl()?;
        Ok(r)
    }

    fn word(&mut self, words: &[&'static str]) -> R<Reply> {
        // Longest first: STORED is a prefix of nothing, but be exact.
        for w in words {
            if self.peek_is(w.as_bytes())? {
                self.lit(w.as_bytes())?;
                return Ok(Reply::Word(w));
            }
        }
        Err(Some(format!(
            "none of {words:?} at {}: {:?}",
            self.p,
            show(&self.b[self.p..(self.p + 40).min(self.b.len())])
        )))
    }
}

/// One mcrouter backend connection.
struct Backend {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Backend {
    fn new(srv: &Server) -> Backend {
        let s = srv.tcp();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Backend { s, buf: Vec::new() }
    }

    /// Send every request in one write (a pipeline), then parse one reply
    /// per request with the grammar of its kind.
    fn pipeline(&mut self, reqs: &[(Kind, Vec<u8>)]) -> Vec<Reply> {
        let mut wire = Vec::new();
        for (_, r) in reqs {
            wire.extend_from_slice(r);
        }
        self.s.write_all(&wire).unwrap();
        let mut out = Vec::new();
        for (i, (k, req)) in reqs.iter().enumerate() {
            loop {
                let mut p = Parser { b: &self.buf, p: 0 };
                match p.reply(*k) {
                    Ok(r) => {
                        let used = p.p;
                        self.buf.drain(..used);
                        out.push(r);
                        break;
                    }
                    Err(Some(e)) => panic!(
                        "reply {i} to {:?} is not in mcrouter's grammar for {k:?}: {e}; buffer: {:?}",
                        show(req),
                        show(&self.buf[..self.buf.len().min(200)])
                    ),
                    Err(None) => {
                        let mut tmp = [0u8; 65536];
                        let n = self.s.read(&mut tmp).unwrap_or_else(|e| {
                            panic!("reply {i} to {:?}: {e}; have {:?}", show(req), show(&self.buf))
                        });
                        assert!(n > 0, "closed before reply {i} to {:?}", show(req));
                        self.buf.extend_from_slice(&tmp[..n]);
                    }
                }
            }
        }
        out
    }
}

// mcrouter's request forms (AsciiSerialized.cpp).
fn get(k: &str) -> (Kind, Vec<u8>) {
    (Kind::Get, format!("get {k}\r\n").into_bytes())
}
fn gets(k: &str) -> (Kind, Vec<u8>) {
    (Kind::Gets, format!("gets {k}\r\n").into_bytes())
}
fn gat(exp: i64, k: &str) -> (Kind, Vec<u8>) {
    (Kind::Get, format!("gat {exp} {k}\r\n").into_bytes())
}
fn gats(exp: i64, k: &str) -> (Kind, Vec<u8>) {
    (Kind::Gets, format!("gats {exp} {k}\r\n").into_bytes())
}
fn lease_get(k: &str) -> (Kind, Vec<u8>) {
    (Kind::LeaseGet, format!("lease-get {k}\r\n").into_bytes())
}
fn metaget(k: &str) -> (Kind, Vec<u8>) {
    (Kind::Metaget, format!("metaget {k}\r\n").into_bytes())
}
fn store(cmd: &str, k: &str, flags: u32, exp: i64, v: &[u8]) -> (Kind, Vec<u8>) {
    let mut r = format!("{cmd} {k} {flags} {exp} {}\r\n", v.len()).into_bytes();
    r.extend_from_slice(v);
    r.extend_from_slice(b"\r\n");
    (Kind::Storage, r)
}
fn cas(k: &str, flags: u32, exp: i64, v: &[u8], c: u64) -> (Kind, Vec<u8>) {
    let mut r = format!("cas {k} {flags} {exp} {} {c}\r\n", v.len()).into_bytes();
    r.extend_from_slice(v);
    r.extend_from_slice(b"\r\n");
    (Kind::Storage, r)
}
fn lease_set(k: &str, token: u64, flags: u32, exp: i64, v: &[u8]) -> (Kind, Vec<u8>) {
    let mut r = format!("lease-set {k} {token} {flags} {exp} {}\r\n", v.len()).into_bytes();
    r.extend_from_slice(v);
    r.extend_from_slice(b"\r\n");
    (Kind::Storage, r)
}
fn arith(cmd: &str, k: &str, d: u64) -> (Kind, Vec<u8>) {
    (Kind::Arith, format!("{cmd} {k} {d}\r\n").into_bytes())
}
fn delete(k: &str) -> (Kind, Vec<u8>) {
    (Kind::Delete, format!("delete {k}\r\n").into_bytes())
}
fn touch(k: &str, exp: i64) -> (Kind, Vec<u8>) {
    (Kind::Touch, format!("touch {k} {exp}\r\n").into_bytes())
}

fn token_of(r: &Reply) -> u64 {
    match r {
        Reply::Lease { token, .. } => *token,
        other => panic!("expected LVALUE, got {other:?}"),
    }
}

/// Everything mcrouter sends, over one connection, in long pipelines with
/// hits, misses, leases (won, hot, filled, refused) and errors mixed in.
#[test]
fn mcrouter_request_forms_in_one_long_pipeline() {
    let srv = Server::corecached(&["-t", "2"]);
    let mut b = Backend::new(&srv);
    const N: usize = 150;
    let key = |i: usize| format!("mcr:{i}");

    // Round 1: fill half the keys, then lease-get every key twice.
    let mut reqs = vec![
        (Kind::Version, b"version\r\n".to_vec()),
        (Kind::FlushAll, b"flush_all\r\n".to_vec()),
    ];
    for i in (0..N).step_by(2) {
        reqs.push(store(
            "set",
            &key(i),
            i as u32,
            0,
            format!("v{i}").as_bytes(),
        ));
    }
    for i in 0..N {
        reqs.push(lease_get(&key(i)));
        reqs.push(lease_get(&key(i)));
        if i % 10 == 0 {
            // errors mixed in: a key too long, a non-numeric incr
            reqs.push((
                Kind::Get,
                format!("get {}\r\n", "k".repeat(251)).into_bytes(),
            ));
            reqs.push(arith("incr", &key(i), 1));
        }
    }
    let r = b.pipeline(&reqs);
    let mut it = r.iter();
    assert!(matches!(it.next(), Some(Reply::Version(_))));
    assert_eq!(it.next(), Some(&Reply::Word("OK")));
    for _ in (0..N).step_by(2) {
        assert_eq!(it.next(), Some(&Reply::Word("STORED")));
    }
    let mut tokens = vec![0u64; N];
    for (i, t) in tokens.iter_mut().enumerate() {
        let (a, b2) = (it.next().unwrap(), it.next().unwrap());
        if i % 2 == 0 {
            let want = Reply::Found {
                flags: i as u64,
                value: format!("v{i}").into_bytes(),
                cas: None,
            };
            assert_eq!((a, b2), (&want, &want), "hit on {}", key(i));
        } else {
            *t = token_of(a);
            assert!(*t > 1, "the first lease-get of a miss wins a lease: {a:?}");
            assert_eq!(token_of(b2), 1, "the second one is a hot miss");
        }
        if i % 10 == 0 {
            assert_eq!(
                it.next(),
                Some(&Reply::ClientError("bad command line format".into()))
            );
            let incr = it.next().unwrap();
            if i % 2 == 0 {
                assert!(matches!(incr, Reply::ClientError(_)), "{incr:?}");
            } else {
                // an unfilled lease is an empty value: not a number either
                assert!(matches!(incr, Reply::ClientError(_)), "{incr:?}");
            }
        }
    }
    assert!(it.next().is_none());

    // Round 2: lease-set with wrong tokens (refused), with the hot-miss
    // token (refused), with the right token (stored), twice (the lease is
    // used up), plus metaget, gets/cas, touch, gat/gats, delete, arith.
    let mut reqs = Vec::new();
    for i in (1..N).step_by(2) {
        reqs.push(lease_set(&key(i), tokens[i] + 7, 0, 0, b"bad"));
        reqs.push(lease_set(&key(i), 1, 0, 0, b"hot"));
        reqs.push(lease_set(
            &key(i),
            tokens[i],
            3,
            100,
            format!("L{i}").as_bytes(),
        ));
        reqs.push(lease_set(&key(i), tokens[i], 3, 100, b"again"));
        reqs.push(get(&key(i)));
        reqs.push(metaget(&key(i)));
        reqs.push(lease_get(&key(i)));
    }
    reqs.push(metaget("mcr:none"));
    reqs.push(lease_set("mcr:none", 12345, 0, 0, b"x"));
    reqs.push(gets(&key(0)));
    reqs.push(store("set", "mcr:n", 0, 0, b"41"));
    reqs.push(arith("incr", "mcr:n", 1));
    reqs.push(arith("decr", "mcr:n", 2));
    reqs.push(arith("incr", "mcr:nope", 1));
    reqs.push(store("add", "mcr:n", 0, 0, b"x"));
    reqs.push(store("replace", "mcr:nope", 0, 0, b"x"));
    reqs.push(store("append", &key(0), 0, 0, b"+a"));
    reqs.push(store("prepend", &key(0), 0, 0, b"p+"));
    reqs.push(get(&key(0)));
    reqs.push(touch(&key(0), 500));
    reqs.push(touch("mcr:nope", 500));
    reqs.push(gat(600, &key(0)));
    reqs.push(gats(600, "mcr:nope"));
    reqs.push(delete(&key(2)));
    reqs.push(delete(&key(2)));
    reqs.push(lease_get(&key(2)));
    reqs.push(lease_get(&key(2)));
    let r = b.pipeline(&reqs);
    let mut it = r.iter();
    for i in (1..N).step_by(2) {
        assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")), "bad token");
        assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")), "token 1");
        assert_eq!(it.next(), Some(&Reply::Word("STORED")), "good token");
        assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")), "used token");
        let val = format!("L{i}").into_bytes();
        assert_eq!(
            it.next(),
            Some(&Reply::Found {
                flags: 3,
                value: val.clone(),
                cas: None
            })
        );
        match it.next() {
            Some(Reply::Meta { exptime, from, .. }) => {
                let now = common::unix_now() as u64;
                assert!(
                    (now + 90..=now + 110).contains(exptime),
                    "{exptime} vs {now}"
                );
                assert_eq!(from, "unknown");
            }
            other => panic!("metaget: {other:?}"),
        }
        assert_eq!(
            it.next(),
            Some(&Reply::Found {
                flags: 3,
                value: val,
                cas: None
            }),
            "a filled lease is a hit"
        );
    }
    assert_eq!(it.next(), Some(&Reply::NotFound), "metaget miss");
    assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")), "no lease");
    let cas0 = match it.next() {
        Some(Reply::Found { cas: Some(c), .. }) => *c,
        other => panic!("gets: {other:?}"),
    };
    assert_eq!(it.next(), Some(&Reply::Word("STORED")));
    assert_eq!(it.next(), Some(&Reply::Number(42)));
    assert_eq!(it.next(), Some(&Reply::Number(40)));
    assert_eq!(it.next(), Some(&Reply::Word("NOT_FOUND")));
    assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")));
    assert_eq!(it.next(), Some(&Reply::Word("NOT_STORED")));
    assert_eq!(it.next(), Some(&Reply::Word("STORED")));
    assert_eq!(it.next(), Some(&Reply::Word("STORED")));
    assert_eq!(
        it.next(),
        Some(&Reply::Found {
            flags: 0,
            value: b"p+v0+a".to_vec(),
            cas: None
        })
    );
    assert_eq!(it.next(), Some(&Reply::Word("TOUCHED")));
    assert_eq!(it.next(), Some(&Reply::Word("NOT_FOUND")));
    assert!(matches!(it.next(), Some(Reply::Found { .. })));
    assert_eq!(it.next(), Some(&Reply::NotFound));
    assert_eq!(it.next(), Some(&Reply::Word("DELETED")));
    assert_eq!(it.next(), Some(&Reply::Word("NOT_FOUND")));
    assert!(token_of(it.next().unwrap()) > 1, "deleted: a new lease");
    assert_eq!(token_of(it.next().unwrap()), 1);
    assert!(it.next().is_none());

    // Round 3: cas with the old and a fresh token; lease-set noreply.
    let fresh = match &b.pipeline(&[gets(&key(0))])[0] {
        Reply::Found { cas: Some(c), .. } => *c,
        other => panic!("{other:?}"),
    };
    assert_ne!(fresh, cas0);
    // A noreply lease-set answers nothing: sent after the third cas, no
    // reply of its own expected.
    let mut third = cas("mcr:nope", 0, 0, b"c", 5);
    third
        .1
        .extend_from_slice(b"lease-set mcr:4 99 0 0 1 noreply\r\nq\r\n");
    let r = b.pipeline(&[
        cas(&key(0), 0, 0, b"c1", cas0),
        cas(&key(0), 0, 0, b"c2", fresh),
        third,
        get(&key(0)),
        get(&key(4)),
    ]);
    assert_eq!(r[0], Reply::Word("EXISTS"));
    assert_eq!(r[1], Reply::Word("STORED"));
    assert_eq!(r[2], Reply::Word("NOT_FOUND"));
    assert!(matches!(&r[3], Reply::Found { value, .. } if value == b"c2"));
    assert!(matches!(&r[4], Reply::Found { value, .. } if value == b"v4"));
}

/// The pipeline above on the real memcached fails at the first `lease-get`
/// with `ERROR` -- the reason this work exists. Pins that the parser does
/// reject `ERROR` (so the test above would fail without the commands).
#[test]
fn memcached_answers_error_to_lease_get() {
    let srv = Server::memcached(&[]);
    let mut s = srv.tcp();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"lease-get k\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let mut p = Parser { b: &buf[..n], p: 0 };
    assert_eq!(
        p.reply(Kind::LeaseGet),
        Err(Some("ERROR reply received from server".into()))
    );
}

/// A stale item (`md ... I`, meta) is a lease miss whose first reader wins
/// and gets the stale value with its token; the next gets the hot miss;
/// the winner's lease-set makes it fresh.
#[test]
fn stale_item_is_a_lease_miss_with_its_value() {
    let srv = Server::corecached(&["-t", "2"]);
    let mut b = Backend::new(&srv);
    let r = b.pipeline(&[store("set", "st", 5, 0, b"old"), lease_get("st")]);
    assert_eq!(
        r[1],
        Reply::Found {
            flags: 5,
            value: b"old".to_vec(),
            cas: None
        }
    );
    let mut c = srv.conn();
    c.req("md st I\r\n", "HD\r\n");
    let r = b.pipeline(&[lease_get("st"), lease_get("st")]);
    let (t, hot) = (token_of(&r[0]), token_of(&r[1]));
    assert!(t > 1);
    assert_eq!(hot, 1);
    for x in &r {
        assert!(matches!(x, Reply::Lease { flags: 5, value, .. } if value == b"old"));
    }
    let r = b.pipeline(&[lease_set("st", t, 6, 0, b"new"), lease_get("st")]);
    assert_eq!(r[0], Reply::Word("STORED"));
    assert_eq!(
        r[1],
        Reply::Found {
            flags: 6,
            value: b"new".to_vec(),
            cas: None
        }
    );
    c.req("mg st v\r\n", "VA 3\r\nnew\r\n");
}
