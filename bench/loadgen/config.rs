//! Command line and the validated run configuration.

use clap::{Parser, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Classic ASCII: get/set, multiget as one `get k1 k2 ...`.
    Text,
    /// Binary protocol (magic 0x80): GET/SET; multiget as GETQ... + NOOP.
    Binary,
    /// Meta text protocol: `mg <key> v` / `ms <key> <len>`; multiget as W mg commands.
    Meta,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyPattern {
    /// Every key equally likely.
    Uniform,
    /// Zipf(s) popularity (see --zipf-s); key 0 the hottest.
    Zipf,
    /// Each connection walks its own slice of the key space in order, wrapping.
    Sequential,
}

/// memtier-style closed-loop load generator for memcached-compatible servers
/// (ASCII text, binary and meta protocols). Exits non-zero on any error (connection
/// refused or reset, error reply, unparseable or mismatched reply, timeout) unless
/// --allow-errors is given, and whenever no operation completed.
#[derive(Parser, Debug, Clone)]
#[command(name = "corecached-bench", version)]
pub struct Args {
    /// Server host or address.
    #[arg(short = 's', long, default_value = "127.0.0.1")]
    pub server: String,
    /// Server TCP port.
    #[arg(short = 'p', long, default_value_t = 11211)]
    pub port: u16,
    /// Protocol.
    #[arg(short = 'P', long, value_enum, default_value = "text")]
    pub protocol: Protocol,
    /// Client threads (one event loop each).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Connections per thread.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub conns: usize,
    /// Requests kept in flight per connection (1 = no pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Key popularity pattern.
    #[arg(long, value_enum, default_value = "uniform")]
    pub key_pattern: KeyPattern,
    /// Zipf exponent s for --key-pattern zipf.
    #[arg(long, default_value_t = 0.99)]
    pub zipf_s: f64,
    /// Size of the key space (keys 0..K).
    #[arg(short = 'k', long, default_value_t = 100_000)]
    pub keys: u64,
    /// Key prefix; a key is PREFIX + decimal index.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,
    /// Zero-pad the key index to at least this many digits (fixed-length keys).
    #[arg(long, default_value_t = 0)]
    pub key_pad: usize,
    /// Value size in bytes: fixed `N` or uniform range `MIN-MAX`.
    #[arg(long, default_value = "100")]
    pub value_size: String,
    /// With a MIN-MAX --value-size: each key always gets the same size (a hash of its
    /// index, uniform over the range) instead of a fresh random size per set.
    #[arg(long)]
    pub value_per_key: bool,
    /// set:get ratio, e.g. 1:10, 1:1, 0:1 (gets only), 1:0 (sets only).
    #[arg(long, default_value = "1:10")]
    pub ratio: String,
    /// Keys per get request (multiget width); 1 = single-key gets.
    #[arg(long, default_value_t = 1)]
    pub multiget: usize,
    /// Set every key of the key space once before the warm-up (not measured).
    #[arg(long)]
    pub populate: bool,
    /// After a get miss, the connection's next request sets that key (cache-aside).
    #[arg(long)]
    pub set_on_miss: bool,
    /// Measured duration in seconds (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many measured requests in total instead of after --duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Warm-up seconds: load runs but is excluded from all figures (errors still count).
    #[arg(short = 'w', long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Target total rate in requests/s (open-loop schedule per connection). Latency is then
    /// measured from each request's intended send time, which corrects for coordinated
    /// omission. Without it the generator is closed-loop and latency is service time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Memory-efficiency mode: set unique keys (0, 1, 2, ... never reused) until the
    /// server's `stats` shows evictions > 0, then --fill-extra more, and report items held
    /// and RSS per item (needs --server-pid for RSS). --duration is the time limit.
    #[arg(long)]
    pub fill: bool,
    /// In --fill mode, keep writing this fraction of the sets done before the first
    /// eviction, so the figures are taken in the evicting steady state.
    #[arg(long, default_value_t = 0.1)]
    pub fill_extra: f64,
    /// PID of a local server: report its CPU µs/op (utime+stime over the measured window)
    /// and its RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Fetch the server's `stats` (ASCII) at the end and include it in the JSON.
    #[arg(long)]
    pub server_stats: bool,
    /// Write the JSON report to this file, or `-` for stdout (the human table then goes to
    /// stderr).
    #[arg(long)]
    pub json: Option<String>,
    /// No human table.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Count errors but carry on (reconnecting broken connections) and exit 0 if any
    /// operation completed.
    #[arg(long)]
    pub allow_errors: bool,
    /// Do not check returned value bytes (lengths and framing are always checked).
    #[arg(long)]
    pub no_verify: bool,
    /// Seconds without progress on a connection with requests in flight before it counts
    /// as a timeout error; also the connect timeout.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Speak TLS (rustls, ring provider) on every connection, the `stats` one too. The
    /// handshake is done when a connection opens, before the warm-up; a server that does
    /// not answer it (a plaintext port) is an error. Needs --tls-ca.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificate(s) the server's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<String>,
    /// PEM client certificate chain, for a server that asks for one (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// Name the server's certificate must carry (default: --server).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub threads: usize,
    pub conns: usize,
    pub pipeline: usize,
    pub pattern: KeyPattern,
    pub zipf_s: f64,
    pub keys: u64,
    pub key_prefix: Vec<u8>,
    pub key_pad: usize,
    pub vmin: usize,
    pub vmax: usize,
    pub value_per_key: bool,
    pub set_r: u32,
    pub get_r: u32,
    pub multiget: usize,
    pub populate: bool,
    pub set_on_miss: bool,
    pub duration: f64,
    pub requests: Option<u64>,
    pub warmup: f64,
    pub rate: Option<f64>,
    pub fill: bool,
    pub fill_extra: f64,
    pub allow_errors: bool,
    pub verify: bool,
    pub timeout: f64,
    pub seed: u64,
    /// --tls: how connections are made TLS.
    pub tls: Option<Arc<crate::tls::Setup>>,
}

impl Config {
    pub fn total_conns(&self) -> usize {
        self.threads * self.conns
    }

    pub fn from_args(a: &Args) -> Result<Config, String> {
        let addr = (a.server.as_str(), a.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}:{}: {e}", a.server, a.port))?
            .next()
            .ok_or_else(|| format!("no address for {}", a.server))?;
        let (vmin, vmax) = parse_range(&a.value_size)?;
        let (set_r, get_r) = parse_ratio(&a.ratio)?;
        if a.threads == 0 || a.conns == 0 || a.pipeline == 0 {
            return Err("--threads, --conns and --pipeline must be at least 1".into());
        }
        if a.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if a.multiget == 0 || a.multiget > 10_000 {
            return Err("--multiget must be in 1..=10000".into());
        }
        if vmin == 0 || vmax > 64 << 20 {
            return Err("--value-size must be within 1..=64MiB".into());
        }
        let max_key =
            crate::keys::key_len(a.key_prefix.len(), a.keys.max(1_000_000_000), a.key_pad);
        if max_key > 250 || a.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("keys must be at most 250 bytes without spaces or control bytes".into());
        }
        if !pos(a.duration) || !(pos(a.warmup) || a.warmup == 0.0) || !pos(a.timeout) {
            return Err("--duration and --timeout must be > 0, --warmup >= 0".into());
        }
        if a.key_pattern == KeyPattern::Zipf && !pos(a.zipf_s) {
            return Err("--zipf-s must be > 0".into());
        }
        if let Some(r) = a.rate {
            if !pos(r) {
                return Err("--rate must be > 0".into());
            }
        }
        if a.fill && a.requests.is_some() {
            return Err("--fill and --requests do not combine".into());
        }
        let tls = if a.tls {
            let ca = a.tls_ca.as_deref().ok_or("--tls needs --tls-ca FILE")?;
            let name = a.tls_name.as_deref().unwrap_or(&a.server);
            Some(Arc::new(crate::tls::Setup::new(
                ca,
                a.tls_cert.as_deref(),
                a.tls_key.as_deref(),
                name,
            )?))
        } else {
            if a.tls_cert.is_some() {
                return Err("--tls-cert needs --tls".into());
            }
            None
        };
        let seed = a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        Ok(Config {
            addr,
            protocol: a.protocol,
            threads: a.threads,
            conns: a.conns,
            pipeline: a.pipeline,
            pattern: a.key_pattern,
            zipf_s: a.zipf_s,
            keys: a.keys,
            key_prefix: a.key_prefix.clone().into_bytes(),
            key_pad: a.key_pad,
            vmin,
            vmax,
            value_per_key: a.value_per_key,
            set_r,
            get_r,
            multiget: a.multiget,
            populate: a.populate,
            set_on_miss: a.set_on_miss,
            duration: a.duration,
            requests: a.requests,
            warmup: a.warmup,
            rate: a.rate,
            fill: a.fill,
            fill_extra: a.fill_extra.max(0.0),
            allow_errors: a.allow_errors,
            verify: !a.no_verify,
            timeout: a.timeout,
            seed,
            tls,
        })
    }
}

/// Strictly positive and finite (false for NaN).
fn pos(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("bad --value-size {s:?}: want N or MIN-MAX");
    match s.split_once('-') {
        None => {
            let v = s.trim().parse().map_err(|_| bad())?;
            Ok((v, v))
        }
        Some((a, b)) => {
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
    }
}

fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad --ratio {s:?}: want SET:GET, e.g. 1:10");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a + b == 0 || a + b > 1_000_000 {
        return Err(bad());
    }
    Ok((a, b))
}
