//! TLS (`-Z`): rustls with the `ring` provider (pure Rust and assembly, no
//! OpenSSL, no C toolchain beyond what `ring` builds), memcached's `-o ssl_*`
//! settings, and certificate reload (`refresh_certs`, SIGHUP) that new
//! connections pick up while open ones keep theirs. The replication link's
//! mutual-TLS configurations (`--replication-tls`) are built here too, from
//! the same reading of the same files, and reload with them.

use crate::config::TlsSettings;
use monoio_rustls::TlsAcceptor;
use parking_lot::RwLock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The process's TLS state.
pub struct Tls {
    settings: TlsSettings,
    configs: RwLock<Configs>,
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

/// The certificate files read once: the chain, its key and (if
/// configured) the CA roots. Every configuration below is built from one
/// reading, so a reload swaps them together.
struct Material {
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
}

fn material(s: &TlsSettings) -> Result<Material, String> {
    let chain = s.chain_cert.as_deref().ok_or("no ssl_chain_cert")?;
    let chain_certs =
        certs(chain).map_err(|e| format!("Error loading the certificate chain: {e}"))?;
    let key_path = s.key.as_deref().unwrap_or(chain);
    let key = key(key_path).map_err(|e| format!("Error loading the key: {e}"))?;
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS13_12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    let versions: &'static [&'static rustls::SupportedProtocolVersion] = if s.min_version >= 3 {
        &TLS13_ONLY
    } else {
        &TLS13_12
    };
    let roots = match s.ca_cert.as_deref() {
        None => None,
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca).map_err(|e| format!("Error loading the CA certificate: {e}"))? {
                roots
                    .add(c)
                    .map_err(|e| format!("Error loading the CA certificate: {e}"))?;
            }
            Some(Arc::new(roots))
        }
    };
    Ok(Material {
        provider: Arc::new(rustls::crypto::ring::default_provider()),
        versions,
        chain: chain_certs,
        key,
        roots,
    })
}

/// A server configuration: the client-facing one (`verify_mode` as
/// memcached's `ssl_verify_mode`), or the replication receiver's (2: a
/// client certificate chaining to `ssl_ca_cert` is required).
fn server_config(
    m: &Material,
    verify_mode: u8,
    session_cache: bool,
) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(m.provider.clone())
        .with_protocol_versions(m.versions)
        .map_err(|e| format!("Error setting the TLS versions: {e}"))?;
    let builder = if verify_mode == 0 {
        builder.with_no_client_auth()
    } else {
        let roots = m.roots.clone().ok_or("ssl_verify_mode needs ssl_ca_cert")?;
        let v = WebPkiClientVerifier::builder_with_provider(roots, m.provider.clone());
        // 1: ask for a certificate and check one if given; 2, 3: require it.
        let v = if verify_mode == 1 {
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
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| format!("Error validating the certificate: {e}"))?;
    cfg.session_storage = if session_cache {
        ServerSessionMemoryCache::new(4096)
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    Ok(cfg)
}

/// The replication sender's configuration: it presents the chain as its
/// client certificate and requires the partner's to chain to `ssl_ca_cert`
/// (and to name the `--partner` host, as any TLS client checks).
fn client_config(m: &Material) -> Result<ClientConfig, String> {
    let roots = m
        .roots
        .clone()
        .ok_or("--replication-tls needs ssl_ca_cert")?;
    ClientConfig::builder_with_provider(m.provider.clone())
        .with_protocol_versions(m.versions)
        .map_err(|e| format!("Error setting the TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| format!("Error validating the certificate: {e}"))
}

/// Replication over mutual TLS (`--replication-tls`): the receiver's and
/// the sender's configurations, from the same files as the client-facing one.
#[derive(Clone)]
pub struct ReplicationTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

struct Configs {
    acceptor: TlsAcceptor,
    replication: Option<ReplicationTls>,
}

/// Every configuration from one reading of the files, with memcached's
/// error texts (`refresh_certs` prints them).
fn configs(s: &TlsSettings) -> Result<Configs, String> {
    let m = material(s)?;
    let acceptor = TlsAcceptor::from(server_config(&m, s.verify_mode, s.session_cache)?);
    let replication = if s.replication {
        Some(ReplicationTls {
            server: Arc::new(server_config(&m, 2, false)?),
            client: Arc::new(client_config(&m)?),
        })
    } else {
        None
    };
    Ok(Configs {
        acceptor,
        replication,
    })
}

impl Tls {
    pub fn load(settings: &TlsSettings, now: u32) -> Result<Tls, String> {
        Ok(Tls {
            settings: settings.clone(),
            configs: RwLock::new(configs(settings)?),
            last_refresh: AtomicU32::new(now),
            handshake_errors: AtomicU64::new(0),
        })
    }

    /// The acceptor for a new connection (an `Arc` clone; one short read
    /// lock per accepted connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.configs.read().acceptor.clone()
    }

    /// The replication link's configurations (`--replication-tls`), as of
    /// the last (re)load: `Arc` clones, one short read lock per link.
    pub fn replication(&self) -> Option<ReplicationTls> {
        self.configs.read().replication.clone()
    }

    /// Read the certificate files again; on failure the old ones stay.
    pub fn reload(&self, now: u32) -> Result<(), String> {
        let cfg = configs(&self.settings)?;
        *self.configs.write() = cfg;
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
