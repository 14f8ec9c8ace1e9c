//! TLS (`-Z`): rustls with the `ring` provider (pure Rust and assembly, no
//! OpenSSL, no C toolchain beyond what `ring` builds), memcached's `-o ssl_*`
//! settings, and certificate reload (`refresh_certs`, SIGHUP) that new
//! connections pick up while open ones keep theirs.

use crate::config::TlsSettings;
use monoio_rustls::TlsAcceptor;
use parking_lot::RwLock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The process's TLS state.
pub struct Tls {
    settings: TlsSettings,
    acceptor: RwLock<TlsAcceptor>,
    /// Relative time of the last successful (re)load.
    pub last_refresh: AtomicU32,
    pub handshake_errors: AtomicU64,
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &text[..]).collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut &text[..])
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key", path.display()))
}

/// Build a server configuration from the files, with memcached's error
/// texts (`refresh_certs` prints them).
fn server_config(s: &TlsSettings) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = s.chain_cert.as_deref().ok_or("no ssl_chain_cert")?;
    let chain_certs =
        certs(chain).map_err(|e| format!("Error loading the certificate chain: {e}"))?;
    let key_path = s.key.as_deref().unwrap_or(chain);
    let key = key(key_path).map_err(|e| format!("Error loading the key: {e}"))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if s.min_version >= 3 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("Error setting the TLS versions: {e}"))?;
    let builder = if s.verify_mode == 0 {
        builder.with_no_client_auth()
    } else {
        let ca = s
            .ca_cert
            .as_deref()
            .ok_or("ssl_verify_mode needs ssl_ca_cert")?;
        let mut roots = RootCertStore::empty();
        for c in certs(ca).map_err(|e| format!("Error loading the CA certificate: {e}"))? {
            roots
                .add(c)
                .map_err(|e| format!("Error loading the CA certificate: {e}"))?;
        }
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        // 1: ask for a certificate and check one if given; 2, 3: require it.
        let v = if s.verify_mode == 1 {
            v.allow_unauthenticated()
        } else {
            v
        };
        builder.with_client_cert_verifier(
            v.build()
                .map_err(|e| format!("Error loading the CA certificate: {e}"))?,
        )
    };
    let mut cfg = builder
        .with_single_cert(chain_certs, key)
        .map_err(|e| format!("Error validating the certificate: {e}"))?;
    cfg.session_storage = if s.session_cache {
        ServerSessionMemoryCache::new(4096)
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    Ok(cfg)
}

impl Tls {
    pub fn load(settings: &TlsSettings, now: u32) -> Result<Tls, String> {
        let cfg = server_config(settings)?;
        Ok(Tls {
            settings: settings.clone(),
            acceptor: RwLock::new(TlsAcceptor::from(cfg)),
            last_refresh: AtomicU32::new(now),
            handshake_errors: AtomicU64::new(0),
        })
    }

    /// The acceptor for a new connection (an `Arc` clone; one short read
    /// lock per accepted connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// Read the certificate files again; on failure the old ones stay.
    pub fn reload(&self, now: u32) -> Result<(), String> {
        let cfg = server_config(&self.settings)?;
        *self.acceptor.write() = TlsAcceptor::from(cfg);
        self.last_refresh.store(now, Relaxed);
        Ok(())
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// `refresh_certs` (text protocol only): `OK`, or memcached's error line.
pub fn refresh_certs(env: &super::env::Env<'_>, ctx: &crate::protocol::Ctx, out: &mut Vec<u8>) {
    let result = match &env.shared.tls {
        None => Err("Error TLS not enabled".to_string()),
        Some(t) => t.reload(crate::time::now()),
    };
    if ctx.noreply {
        return;
    }
    match result {
        Ok(()) => super::env::emit(ctx, crate::protocol::Response::Ok, out),
        Err(e) => {
            // An error text with the file name and cause, as memcached's.
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}
