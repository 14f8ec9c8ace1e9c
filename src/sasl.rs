//! SASL PLAIN for the binary protocol: the password file and the checks.
//!
//! The password file is memcached's `MEMCACHED_SASL_PWDB` format: one
//! `user:password` per line; anything after a second `:` is ignored (so
//! `user:password:comment` works), as are `\r` line ends. Lines are matched
//! the way memcached matches them: the first line whose user matches decides.
//!
//! memcached re-reads its file on every authentication; we read it once at
//! start-up (no file I/O on an event loop, and a missing or unreadable file is
//! a start-up error instead of every login failing later).

use std::fmt;

/// The only mechanism served.
pub const MECHS: &str = "PLAIN";

/// memcached's MAX_SASL_MECH_LEN: longer mechanism names are invalid arguments.
pub const MAX_MECH_LEN: usize = 32;

/// One `user:password` line.
#[derive(Clone)]
struct Entry {
    user: Box<[u8]>,
    pass: Box<[u8]>,
}

/// Users and passwords from a password file.
#[derive(Clone, Default)]
pub struct PwDb {
    entries: Vec<Entry>,
}

impl fmt::Debug for PwDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print passwords.
        write!(f, "PwDb({} users)", self.entries.len())
    }
}

impl PwDb {
    /// Parse the contents of a password file.
    pub fn parse(text: &[u8]) -> PwDb {
        let mut entries = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let user = &line[..colon];
            let rest = &line[colon + 1..];
            let pass = rest.split(|&b| b == b':').next().unwrap_or(b"");
            if user.is_empty() {
                continue;
            }
            entries.push(Entry {
                user: user.into(),
                pass: pass.into(),
            });
        }
        PwDb { entries }
    }

    /// Read and parse a password file.
    pub fn load(path: &std::path::Path) -> std::io::Result<PwDb> {
        std::fs::read(path).map(|b| PwDb::parse(&b))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Does `user` exist with exactly `pass`? The password comparison takes
    /// the same time wherever the first difference is.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        match self.entries.iter().find(|e| &e.user[..] == user) {
            Some(e) => ct_eq(&e.pass, pass),
            None => {
                // Spend the same work as for a known user.
                let _ = ct_eq(pass, pass);
                false
            }
        }
    }
}

/// Constant-time equality: the time depends only on the length of `given`
/// (the client's input), never on where `secret` and `given` first differ or
/// on the secret's contents. A dozen lines of our own rather than the
/// `subtle` crate: this is the only constant-time operation we need, and
/// `black_box` keeps the compiler from turning the fold into an early exit.
pub fn ct_eq(secret: &[u8], given: &[u8]) -> bool {
    let mut diff: u8 = (secret.len() != given.len()) as u8;
    for (i, &g) in given.iter().enumerate() {
        let s = if secret.is_empty() {
            0
        } else {
            secret[i % secret.len()]
        };
        diff |= std::hint::black_box(s ^ g);
    }
    std::hint::black_box(diff) == 0
}

/// Outcome of a PLAIN exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Plain {
    Ok,
    /// No initial response: the client sends the credentials in a step.
    Continue,
    Fail,
}

/// Check a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616) as
/// Cyrus SASL's PLAIN plugin does: exactly two NULs, and an authorization
/// identity, when given, must be the authenticated user (no proxying).
pub fn plain(db: &PwDb, msg: &[u8]) -> Plain {
    if msg.is_empty() {
        return Plain::Continue;
    }
    let mut parts = msg.splitn(3, |&b| b == 0);
    let (Some(authz), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
        return Plain::Fail;
    };
    if pass.contains(&0) || user.is_empty() {
        return Plain::Fail;
    }
    let ok = db.check(user, pass);
    if ok && (authz.is_empty() || authz == user) {
        Plain::Ok
    } else {
        Plain::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwdb_format() {
        let db = PwDb::parse(b"alice:secret\r\nbob:pw:comment\nnocolon\n:x\ncarol:\nalice:other\n");
        assert_eq!(db.len(), 4);
        assert!(db.check(b"alice", b"secret"));
        assert!(
            !db.check(b"alice", b"other"),
            "first line for a user decides"
        );
        assert!(db.check(b"bob", b"pw"));
        assert!(!db.check(b"bob", b"pw:comment"));
        assert!(db.check(b"carol", b""));
        assert!(!db.check(b"dave", b""));
        assert!(!format!("{db:?}").contains("secret"));
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"abc", b"abcabc"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn plain_messages() {
        let db = PwDb::parse(b"u:p\n");
        assert_eq!(plain(&db, b"\0u\0p"), Plain::Ok);
        assert_eq!(plain(&db, b"u\0u\0p"), Plain::Ok);
        assert_eq!(plain(&db, b"x\0u\0p"), Plain::Fail);
        assert_eq!(plain(&db, b"\0u\0q"), Plain::Fail);
        assert_eq!(plain(&db, b"\0u\0p\0"), Plain::Fail);
        assert_eq!(plain(&db, b"up"), Plain::Fail);
        assert_eq!(plain(&db, b"\0u"), Plain::Fail);
        assert_eq!(plain(&db, b""), Plain::Continue);
    }
}
