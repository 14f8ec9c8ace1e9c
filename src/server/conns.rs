//! Every open client connection and listener, as `stats conns` lists them
//! (memcached's fields: `addr`, `listen_addr`, `state`,
//! `secs_since_last_cmd`), plus the `-vv` connection log.
//!
//! A connection registers once when accepted and leaves when its task ends:
//! one short lock per connection, never per request. Its last-command time
//! is an atomic the connection stores once per batch of requests read.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// One connection's row.
pub struct ConnInfo {
    pub fd: RawFd,
    /// The peer, as memcached prints it: `tcp:IP:PORT` or `unix:PATH`.
    pub addr: String,
    /// The local end: `tcp:IP:PORT` or `unix:PATH`.
    pub listen_addr: String,
    /// Relative time (`crate::time`) of the last request read.
    pub last_cmd: AtomicU32,
    /// What it waits for: [`NEW`], [`READ`], [`NREAD`] or [`WATCH`].
    pub state: AtomicU8,
}

/// Has not sent anything yet (memcached's `conn_new_cmd`).
pub const NEW: u8 = 3;
/// Waiting for a command (memcached's `conn_read`).
pub const READ: u8 = 0;
/// Waiting for the rest of a value (`conn_nread`).
pub const NREAD: u8 = 1;
/// A `watch` log stream (`conn_watch`).
pub const WATCH: u8 = 2;

/// All connections and listeners of the process.
#[derive(Default)]
pub struct ConnTable {
    conns: Mutex<BTreeMap<RawFd, Arc<ConnInfo>>>,
    /// Listening sockets: fd and local address.
    listeners: Mutex<Vec<(RawFd, String)>>,
}

/// memcached's text form of a socket address.
fn addr_text(a: &socket2::SockAddr) -> String {
    // memcached names the family: `tcp:1.2.3.4:11211`, `tcp6:[::1]:11211`.
    match a.as_socket() {
        Some(sa @ std::net::SocketAddr::V4(_)) => return format!("tcp:{sa}"),
        Some(sa @ std::net::SocketAddr::V6(_)) => return format!("tcp6:{sa}"),
        None => {}
    }
    match a.as_pathname() {
        Some(p) => format!("unix:{}", p.display()),
        None => "unix:".to_string(),
    }
}

/// Local and peer address of an open socket.
fn ends(fd: RawFd) -> (String, String) {
    // SAFETY: `fd` is an open socket owned by the caller for the duration of
    // this call (a connection registering itself, or a listener at start-up).
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&sock);
    let local = sock.local_addr().map(|a| addr_text(&a)).unwrap_or_default();
    let peer = sock.peer_addr().map(|a| addr_text(&a)).unwrap_or_default();
    (local, peer)
}

impl ConnTable {
    /// A listening socket (listed with state `conn_listening`).
    pub fn add_listener(&self, fd: RawFd) {
        let (local, _) = ends(fd);
        self.listeners.lock().push((fd, local));
    }

    /// A new client connection.
    pub fn register(&self, fd: RawFd, now: u32) -> Arc<ConnInfo> {
        let (local, peer) = ends(fd);
        let info = Arc::new(ConnInfo {
            fd,
            addr: peer,
            listen_addr: local,
            last_cmd: AtomicU32::new(now),
            state: AtomicU8::new(NEW),
        });
        self.conns.lock().insert(fd, info.clone());
        info
    }

    /// Forget a connection. Only its own row: once its socket is closed,
    /// another loop may already have accepted a new connection with the
    /// same fd number and registered it.
    pub fn remove(&self, info: &Arc<ConnInfo>) {
        let mut conns = self.conns.lock();
        if conns.get(&info.fd).is_some_and(|c| Arc::ptr_eq(c, info)) {
            conns.remove(&info.fd);
        }
    }

    /// `stats conns` rows: (fd, addr, listen_addr or None for a listener,
    /// state, seconds since the last command). `me` is the asking
    /// connection (state `conn_parse_cmd`; the others wait in `conn_read`,
    /// for a value's data in `conn_nread`, or watch in `conn_watch`; one
    /// that never spoke is `conn_new_cmd`).
    pub fn rows(
        &self,
        me: RawFd,
        now: u32,
    ) -> Vec<(RawFd, String, Option<String>, &'static str, u32)> {
        let mut rows: Vec<_> = self
            .listeners
            .lock()
            .iter()
            .map(|(fd, a)| {
                (
                    *fd,
                    a.clone(),
                    None,
                    "conn_listening",
                    now.saturating_sub(2),
                )
            })
            .collect();
        for c in self.conns.lock().values() {
            let state = match c.state.load(Relaxed) {
                _ if c.fd == me => "conn_parse_cmd",
                NREAD => "conn_nread",
                WATCH => "conn_watch",
                NEW => "conn_new_cmd",
                _ => "conn_read",
            };
            let idle = now.saturating_sub(c.last_cmd.load(Relaxed));
            rows.push((
                c.fd,
                c.addr.clone(),
                Some(c.listen_addr.clone()),
                state,
                idle,
            ));
        }
        rows.sort_by_key(|r| r.0);
        rows
    }
}

/// `stats conns`, memcached's lines: per connection (and listener) in fd
/// order `STAT <fd>:addr ...`, `:listen_addr` (not for listeners),
/// `:state`, `:secs_since_last_cmd`; then `END`. `me` is the asking
/// connection's fd.
pub(super) fn stats(
    env: &super::env::Env<'_>,
    ctx: &crate::protocol::Ctx,
    me: RawFd,
    out: &mut Vec<u8>,
) {
    use crate::protocol::{put_i64, put_u64, Response};
    let now = crate::time::now();
    for (fd, addr, listen, state, idle) in env.shared.conn_table.rows(me, now) {
        let mut put = |name: &[u8], v: &[u8]| {
            if ctx.noreply {
                return;
            }
            out.extend_from_slice(b"STAT ");
            put_i64(out, fd as i64);
            out.push(b':');
            out.extend_from_slice(name);
            out.push(b' ');
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        };
        put(b"addr", addr.as_bytes());
        if let Some(l) = &listen {
            put(b"listen_addr", l.as_bytes());
        }
        put(b"state", state.as_bytes());
        let mut n = Vec::with_capacity(10);
        put_u64(&mut n, idle as u64);
        put(b"secs_since_last_cmd", &n);
    }
    super::env::emit(ctx, Response::StatsEnd, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closing connection removes its own row, not the row of a newer
    /// connection that got the same fd number on another loop.
    #[test]
    fn remove_keeps_a_newer_connection_with_the_same_fd() {
        let t = ConnTable::default();
        // Not a socket: the addresses are empty, the rows are what counts.
        let old = t.register(1_000_000, 5);
        let new = t.register(1_000_000, 7);
        t.remove(&old);
        let rows = t.rows(-1, 10);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].4, 3, "the newer row (last command at 7) stays");
        t.remove(&new);
        assert!(t.rows(-1, 10).is_empty());
    }

    #[test]
    fn addresses_as_memcached_prints_them() {
        let v4: std::net::SocketAddr = "127.0.0.1:11211".parse().unwrap();
        let v6: std::net::SocketAddr = "[::1]:11211".parse().unwrap();
        assert_eq!(addr_text(&v4.into()), "tcp:127.0.0.1:11211");
        assert_eq!(addr_text(&v6.into()), "tcp6:[::1]:11211");
        let unix = socket2::SockAddr::unix("/run/cc.sock").unwrap();
        assert_eq!(addr_text(&unix), "unix:/run/cc.sock");
    }
}
