//! Certificates for the TLS suites, made per run with the `openssl`
//! command line (Debian package openssl), and a blocking rustls client:
//! shared by `tls` (client-facing -Z) and `replication_tls` (the partner
//! link over mutual TLS).

use crate::common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A CA, a server certificate for 127.0.0.1 (and a renewed one), a client
/// certificate, all in a fresh directory.
pub struct Pki {
    pub dir: PathBuf,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("corecached-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = &dir;
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn) in [
            ("server", "server-1"),
            ("renewed", "server-2"),
            ("client", "client"),
        ] {
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            );
            let (csr, out) = (format!("{name}.csr"), format!("{name}.pem"));
            let mut args = vec![
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
            ];
            args.extend(["-CAcreateserial", "-days", "2", "-out", &out]);
            // v3 certificates (webpki refuses v1): each gets an extension.
            let ext = if name == "client" {
                "client.ext"
            } else {
                "san.ext"
            };
            args.extend(["-extfile", ext]);
            openssl(d, &args);
        }
        Pki { dir }
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    /// `-o` value for a server using `cert`/`key` (copied to live files, so
    /// a reload can swap them).
    pub fn server_opts(&self, extra: &str) -> String {
        std::fs::copy(self.dir.join("server.pem"), self.dir.join("live.pem")).unwrap();
        std::fs::copy(self.dir.join("server.key"), self.dir.join("live.key")).unwrap();
        format!(
            "ssl_chain_cert={},ssl_key={}{extra}",
            self.path("live.pem"),
            self.path("live.key")
        )
    }

    pub fn renew(&self) {
        std::fs::copy(self.dir.join("renewed.pem"), self.dir.join("live.pem")).unwrap();
        std::fs::copy(self.dir.join("renewed.key"), self.dir.join("live.key")).unwrap();
    }

    pub fn client(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&self.dir.join("ca.pem")) {
            roots.add(c).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = if with_cert {
            let key = rustls_pemfile::private_key(
                &mut &std::fs::read(self.dir.join("client.key")).unwrap()[..],
            )
            .unwrap()
            .unwrap();
            b.with_client_auth_cert(pem_certs(&self.dir.join("client.pem")), key)
                .unwrap()
        } else {
            b.with_no_client_auth()
        };
        Arc::new(cfg)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn pem_certs(p: &Path) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &std::fs::read(p).unwrap()[..])
        .collect::<Result<_, _>>()
        .unwrap()
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn connect(port: u16, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake to its end (a refused client certificate shows here).
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}
