//! The replication link's byte streams: plain TCP, or mutual TLS
//! (`--replication-tls`) through a small adapter over rustls' buffered API.
//!
//! Why not monoio-rustls here: the sender reads acknowledgements in one
//! task while another writes records, on halves of one connection. Split
//! halves of a monoio-rustls stream share one write buffer, and a TLS error
//! seen by the reading half makes it write an alert through that buffer
//! while the writing half may have it out in an io_uring write (a panic in
//! its buffer wrapper). Here the two halves are the socket's own halves and
//! share only the rustls connection, borrowed in synchronous blocks that
//! never span an await, so no borrow can collide. The reading half never
//! writes; a TLS error ends the link.
//!
//! Buffers are per connection and reused: no allocation per record (rustls
//! itself allocates per TLS record it encrypts, i.e. per batch of up to
//! 16 KiB, not per replication record).

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// Reading half of a link.
pub(crate) trait LinkRead: 'static {
    /// Append what arrives to `buf`'s spare capacity (the caller reserved
    /// it): the bytes appended, 0 at the end of the stream.
    async fn read_more(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
}

/// Writing half of a link.
pub(crate) trait LinkWrite: 'static {
    /// Write all of `out`; gives the buffer back.
    async fn write_all_vec(&mut self, out: Vec<u8>) -> (io::Result<()>, Vec<u8>);
}

impl LinkRead for TcpOwnedReadHalf {
    async fn read_more(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        let (res, b) = self.read(buf.slice_mut(len..)).await;
        (res, b.into_inner())
    }
}

impl LinkWrite for TcpOwnedWriteHalf {
    async fn write_all_vec(&mut self, out: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, b) = self.write_all(out).await;
        (res.map(|_| ()), b)
    }
}

/// Raw (encrypted) bytes read or to write, per half.
const RAW: usize = 64 << 10;

/// The reading half of a TLS link.
pub(crate) struct TlsRead {
    tcp: TcpOwnedReadHalf,
    conn: Rc<RefCell<rustls::Connection>>,
    /// Bytes read from the socket, `raw[fed..]` not yet given to rustls.
    raw: Vec<u8>,
    fed: usize,
}

/// The writing half of a TLS link.
pub(crate) struct TlsWrite {
    tcp: TcpOwnedWriteHalf,
    conn: Rc<RefCell<rustls::Connection>>,
    raw: Vec<u8>,
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsRead {
    /// Give rustls what is at hand, until it has plaintext to read (its
    /// plaintext buffer is bounded: the caller drains it first). Never
    /// awaits.
    fn feed(&mut self) -> io::Result<()> {
        let mut c = self.conn.borrow_mut();
        while self.fed < self.raw.len() {
            let mut rest = &self.raw[self.fed..];
            let n = c.read_tls(&mut rest)?;
            self.fed += n;
            let st = c.process_new_packets().map_err(invalid)?;
            if n == 0 || st.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        Ok(())
    }

    /// Read more raw bytes from the socket (all of the old ones were fed):
    /// false at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        self.fed = 0;
        let (res, b) = self.tcp.read(raw).await;
        self.raw = b;
        Ok(res? > 0)
    }
}

impl LinkRead for TlsRead {
    async fn read_more(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            // Plaintext at hand: copy it out.
            {
                let mut c = self.conn.borrow_mut();
                let room = buf.capacity() - buf.len();
                let have = match c.process_new_packets() {
                    Ok(st) => st.plaintext_bytes_to_read(),
                    Err(e) => return (Err(invalid(e)), buf),
                };
                if have > 0 {
                    if room == 0 {
                        return (Err(io::Error::other("no room to read into")), buf);
                    }
                    let len = buf.len();
                    let take = have.min(room);
                    buf.resize(len + take, 0);
                    let res = c.reader().read(&mut buf[len..]);
                    let n = *res.as_ref().unwrap_or(&0);
                    buf.truncate(len + n);
                    return (res, buf);
                }
            }
            if self.fed < self.raw.len() {
                let before = self.fed;
                if let Err(e) = self.feed() {
                    return (Err(e), buf);
                }
                if self.fed == before {
                    return (Err(io::Error::other("TLS input stalled")), buf);
                }
                continue;
            }
            match self.fill().await {
                Ok(true) => {
                    if let Err(e) = self.feed() {
                        return (Err(e), buf);
                    }
                }
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl TlsWrite {
    /// Send what rustls has to send.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut raw = std::mem::take(&mut self.raw);
            raw.clear();
            {
                let mut c = self.conn.borrow_mut();
                while c.wants_write() && raw.len() < RAW {
                    c.write_tls(&mut raw)?;
                }
            }
            if raw.is_empty() {
                self.raw = raw;
                return Ok(());
            }
            let (res, b) = self.tcp.write_all(raw).await;
            self.raw = b;
            res?;
        }
    }
}

impl LinkWrite for TlsWrite {
    async fn write_all_vec(&mut self, out: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut at = 0;
        loop {
            {
                let mut c = self.conn.borrow_mut();
                while at < out.len() {
                    match c.writer().write(&out[at..]) {
                        Ok(0) => break, // its buffer is full: send first
                        Ok(n) => at += n,
                        Err(e) => return (Err(e), out),
                    }
                }
            }
            if let Err(e) = self.flush().await {
                return (Err(e), out);
            }
            if at == out.len() {
                return (Ok(()), out);
            }
        }
    }
}

/// Run the handshake on `tcp`, then split. Errors are handshake failures
/// (the caller counts them); the peer gets rustls' alert where there is one.
pub(crate) async fn handshake(
    tcp: TcpStream,
    conn: rustls::Connection,
) -> io::Result<(TlsRead, TlsWrite)> {
    let (rd, wr) = tcp.into_split();
    let conn = Rc::new(RefCell::new(conn));
    let mut r = TlsRead {
        tcp: rd,
        conn: conn.clone(),
        raw: Vec::with_capacity(RAW),
        fed: 0,
    };
    let mut w = TlsWrite {
        tcp: wr,
        conn,
        raw: Vec::with_capacity(RAW),
    };
    loop {
        w.flush().await?;
        let (handshaking, wants_read) = {
            let c = r.conn.borrow();
            (c.is_handshaking(), c.wants_read())
        };
        if !handshaking {
            break;
        }
        if !wants_read {
            // Flushed, handshaking, and nothing to read: cannot happen.
            return Err(io::Error::other("TLS handshake stalled"));
        }
        if r.fed == r.raw.len() && !r.fill().await? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the TLS handshake",
            ));
        }
        let before = r.fed;
        if let Err(e) = r.feed() {
            // Tell the peer why (rustls queued an alert), then fail.
            let _ = w.flush().await;
            return Err(e);
        }
        if r.fed == before {
            return Err(io::Error::other("TLS input stalled"));
        }
    }
    w.flush().await?;
    Ok((r, w))
}
