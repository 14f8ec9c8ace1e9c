//! `--tls`: rustls (ring provider, as the server) over the client threads'
//! non-blocking sockets. The handshake is done blocking when a connection is
//! opened (before any measured request); after it, a connection's reads and
//! writes go through [`Io`], which for a plaintext connection is the socket
//! itself (one match per system call, nothing else added).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// What every TLS connection of a run is made from.
#[derive(Debug)]
pub struct Setup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

fn pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &text[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no PEM certificate"));
    }
    Ok(certs)
}

fn pem_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    rustls_pemfile::private_key(&mut &text[..])
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("{path}: no PEM private key"))
}

impl Setup {
    /// The server is verified against the CA certificates in `ca` under
    /// `name` (a host name or an IP address, as in its certificate);
    /// `cert`+`key` is the client's certificate, if the server asks for one.
    pub fn new(
        ca: &str,
        cert: Option<&str>,
        key: Option<&str>,
        name: &str,
    ) -> Result<Setup, String> {
        let mut roots = RootCertStore::empty();
        for c in pem_certs(ca)? {
            roots.add(c).map_err(|e| format!("--tls-ca {ca}: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots);
        let config = match (cert, key) {
            (Some(c), Some(k)) => b
                .with_client_auth_cert(pem_certs(c)?, pem_key(k)?)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
            (None, None) => b.with_no_client_auth(),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("bad TLS server name {name:?}: {e}"))?;
        Ok(Setup {
            config: Arc::new(config),
            name,
        })
    }

    /// Runs the handshake on a connected (blocking) socket, bounded by
    /// `timeout` per read or write; returns the session.
    pub fn handshake(&self, mut tcp: TcpStream, timeout: Duration) -> io::Result<TlsIo> {
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake: no answer in {timeout:?} (is the port TLS?)"),
                ),
                _ => io::Error::new(e.kind(), format!("TLS handshake: {e}")),
            })?;
        }
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        Ok(TlsIo { tcp, conn })
    }
}

/// One TLS session over a TCP socket.
pub struct TlsIo {
    tcp: TcpStream,
    conn: ClientConnection,
}

impl TlsIo {
    /// "TLSv1_3 TLS13_AES_256_GCM_SHA384": what was negotiated.
    pub fn describe(&self) -> (String, String) {
        let v = self
            .conn
            .protocol_version()
            .map_or("?".to_string(), |v| format!("{v:?}"));
        let s = self
            .conn
            .negotiated_cipher_suite()
            .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
        (v, s)
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.tcp.set_nonblocking(true)
    }

    /// Writes encrypted records to the socket until none is left or it would
    /// block.
    fn send_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // the socket closed without close_notify: a close all the same
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // read_tls's WouldBlock ends the loop; after its Ok(0) (EOF) the
            // reader above answers Ok(0) or UnexpectedEof.
            self.conn.read_tls(&mut self.tcp)?;
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.send_tls(); // the alert, if any
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.send_tls()?;
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // What was encrypted before goes out first.
        self.send_tls()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(buf)?;
        self.send_tls()?;
        Ok(n)
    }

    /// A blocking stream over this session (the `stats` connection).
    pub fn into_blocking(self, timeout: Duration) -> io::Result<Blocking> {
        self.tcp.set_read_timeout(Some(timeout))?;
        self.tcp.set_write_timeout(Some(timeout))?;
        Ok(rustls::StreamOwned::new(self.conn, self.tcp))
    }

    /// Ends the session politely (close_notify), best effort.
    pub fn close(mut self) {
        self.conn.send_close_notify();
        let _ = self.send_tls();
    }
}

pub type Blocking = rustls::StreamOwned<ClientConnection, TcpStream>;

/// A connection's byte stream: the socket, or a TLS session over it.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsIo>),
}

impl Io {
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(t) => t.read(buf),
        }
    }

    /// Takes up to `buf.len()` bytes; over TLS they are encrypted at once and
    /// may wait in the session for the socket (see [`Io::pending_out`]).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(t) => t.write(buf),
        }
    }

    /// Encrypted bytes not yet on the socket (never for plaintext).
    pub fn pending_out(&self) -> bool {
        match self {
            Io::Plain(_) => false,
            Io::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Pushes pending encrypted bytes to the socket (plaintext: nothing).
    pub fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(_) => Ok(()),
            Io::Tls(t) => t.send_tls(),
        }
    }
}

impl AsRawFd for Io {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Io::Plain(s) => s.as_raw_fd(),
            Io::Tls(t) => t.tcp.as_raw_fd(),
        }
    }
}
