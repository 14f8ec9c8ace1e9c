//! Command line: memcached's flags with memcached's meanings.

use clap::{ArgAction, Parser};
use std::net::IpAddr;

/// sysexits.h EX_USAGE.
pub const EX_USAGE: i32 = 64;

/// The memcached version we are compatible with, reported by `version`.
pub const MEMCACHED_VERSION: &str = "1.6.18";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "corecached",
    version = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)"),
    about = "A memcached-compatible cache server: one event loop and one shard per core",
    disable_version_flag = true
)]
struct Cli {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
    /// Interface(s) to listen on (repeat or comma-separate).
    #[arg(
        short = 'l',
        long = "listen",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    listen: Vec<IpAddr>,
    /// Item memory in megabytes.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    memory_limit: u64,
    /// Max simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024)]
    conn_limit: usize,
    /// Number of event loops (one per core; default: online CPUs).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Maximum item size (bytes, or with k/m suffix), 1k..1g.
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    max_item_size: usize,
    /// UDP port: 0 only (UDP is not served).
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    udp_port: u16,
    /// Return an error on memory exhausted instead of evicting.
    #[arg(short = 'M', long = "disable-evictions")]
    disable_evictions: bool,
    /// Minimum space allocated for key+value+flags (bytes).
    #[arg(short = 'n', long = "slab-min-size", default_value_t = 48)]
    slab_min_size: usize,
    /// Chunk size growth factor.
    #[arg(short = 'f', long = "slab-growth-factor", default_value_t = 1.25)]
    growth_factor: f64,
    /// Verbose (-v), more verbose (-vv).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Accepted for compatibility: the user to run as (privileges are dropped to it when started as root).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Write the process id to this file.
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<String>,
    /// I/O driver: auto (io_uring when the kernel allows it, else epoll), io_uring, epoll.
    #[arg(long = "io-driver", value_enum, default_value_t = IoDriver::Auto)]
    io_driver: IoDriver,
    /// Pin each event loop to a CPU: auto (one loop per allowed CPU when
    /// there are no more loops than CPUs, else none), always, never.
    #[arg(long = "pin", value_enum, default_value_t = Pin::Auto)]
    pin: Pin,
    /// Turn on SASL authentication (binary protocol only; text connections
    /// are refused, as memcached refuses them).
    #[arg(short = 'S', long = "enable-sasl")]
    enable_sasl: bool,
    /// SASL password file, lines `user:password` (default: the
    /// MEMCACHED_SASL_PWDB environment variable, as memcached reads it).
    #[arg(long = "sasl-pwdb", value_name = "FILE")]
    sasl_pwdb: Option<std::path::PathBuf>,
    /// Extended options, comma-separated `name=value` (memcached's -o). Only
    /// `read_buf_mem_limit=MB` is known here; any other is refused.
    #[arg(short = 'o', long = "extended", value_delimiter = ',')]
    extended: Vec<String>,
    /// Print version and exit.
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    #[command(flatten)]
    replication: ReplicationArgs,
}

/// Which monoio driver the event loops run on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    Auto,
    #[value(name = "io_uring")]
    IoUring,
    Epoll,
}

/// Whether event loops are pinned to CPUs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    Auto,
    Always,
    Never,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("not a size: {s}"))?;
    let v = n.checked_mul(mult).ok_or("size too large")?;
    if v < 1024 {
        return Err("item max size cannot be less than 1024 bytes".into());
    }
    if v > 1 << 30 {
        return Err("cannot set item size limit higher than 1 GiB".into());
    }
    Ok(v)
}

/// The server's settings, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub listen: Vec<IpAddr>,
    pub memory_limit: usize,
    pub conn_limit: usize,
    pub threads: usize,
    pub max_item_size: usize,
    pub no_evict: bool,
    pub chunk_size: usize,
    pub growth_factor: f64,
    pub verbose: u8,
    pub user: Option<String>,
    pub pidfile: Option<String>,
    pub io_driver: IoDriver,
    pub pin: Pin,
    /// `-S`: SASL required on every connection.
    pub sasl: bool,
    /// SASL users (empty unless `sasl`).
    pub sasl_db: crate::sasl::PwDb,
    /// Bytes all connection buffers together may hold beyond the first
    /// 64 KiB of each (`-o read_buf_mem_limit=MB`; 0 = no limit). Default:
    /// 64 MiB or twice `-I`, whichever is larger (see `server::conn`).
    pub read_buf_mem_limit: usize,
    /// Partner-host replication (`--partner`, `--replication-listen`);
    /// `None`: nothing is started and no journal is set.
    pub replication: Option<Box<ReplicationConfig>>,
}

/// The default bound on connection buffers: room for 64 MiB of in-flight
/// requests, and always for two of the largest values at once.
pub fn default_read_buf_mem_limit(max_item_size: usize) -> usize {
    (64usize << 20).max(max_item_size.saturating_mul(2))
}

/// What parsing the command line decided.
pub enum Parsed {
    Run(Config),
    /// Print this and exit with this code (help, version, errors).
    Exit(String, i32),
}

impl Config {
    /// Parse `args` (including the program name).
    pub fn from_args<I, T>(args: I) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::from_args_env(args, std::env::var_os("MEMCACHED_SASL_PWDB"))
    }

    /// [`Config::from_args`] with the value of `MEMCACHED_SASL_PWDB` given.
    pub fn from_args_env<I, T>(args: I, env_pwdb: Option<std::ffi::OsString>) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = match Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => {
                use clap::error::ErrorKind as K;
                let code = match e.kind() {
                    K::DisplayHelp | K::DisplayVersion => 0,
                    _ => EX_USAGE,
                };
                return Parsed::Exit(e.render().to_string(), code);
            }
        };
        if cli.udp_port != 0 {
            return Parsed::Exit(
                format!(
                    "corecached: UDP is not served (-U {}); use -U 0 or leave it out\n",
                    cli.udp_port
                ),
                EX_USAGE,
            );
        }
        let threads = cli
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 || threads > 1024 {
            return Parsed::Exit(
                "corecached: -t must be between 1 and 1024\n".into(),
                EX_USAGE,
            );
        }
        if cli.memory_limit == 0 {
            return Parsed::Exit("corecached: -m must be at least 1\n".into(), EX_USAGE);
        }
        if cli.conn_limit == 0 {
            return Parsed::Exit("corecached: -c must be at least 1\n".into(), EX_USAGE);
        }
        if cli.growth_factor.is_nan() || cli.growth_factor <= 1.0 {
            return Parsed::Exit(
                "corecached: factor (-f) must be greater than 1\n".into(),
                EX_USAGE,
            );
        }
        let mut read_buf_mem_limit = default_read_buf_mem_limit(cli.max_item_size);
        for opt in &cli.extended {
            let (name, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
            match name {
                "read_buf_mem_limit" => match value.parse::<usize>() {
                    Ok(mb) => read_buf_mem_limit = mb.saturating_mul(1 << 20),
                    Err(_) => {
                        return Parsed::Exit(
                            "corecached: could not parse argument to read_buf_mem_limit\n".into(),
                            EX_USAGE,
                        )
                    }
                },
                _ => {
                    return Parsed::Exit(
                        format!("corecached: unknown -o option: {opt}\n"),
                        EX_USAGE,
                    )
                }
            }
        }
        let mut sasl_db = crate::sasl::PwDb::default();
        if cli.enable_sasl {
            let path = cli
                .sasl_pwdb
                .or_else(|| env_pwdb.filter(|p| !p.is_empty()).map(Into::into));
            let Some(path) = path else {
                return Parsed::Exit(
                    "corecached: -S needs a password file: --sasl-pwdb FILE or MEMCACHED_SASL_PWDB\n"
                        .into(),
                    EX_USAGE,
                );
            };
            sasl_db = match crate::sasl::PwDb::load(&path) {
                Ok(db) => db,
                Err(e) => {
                    return Parsed::Exit(
                        format!(
                            "corecached: cannot read SASL password file {}: {e}\n",
                            path.display()
                        ),
                        EX_USAGE,
                    )
                }
            };
        }
        let replication = match cli.replication.into_config() {
            Ok(r) => r,
            Err(msg) => return Parsed::Exit(format!("corecached: {msg}\n"), EX_USAGE),
        };
        Parsed::Run(Config {
            port: cli.port,
            listen: cli.listen,
            memory_limit: (cli.memory_limit as usize).saturating_mul(1 << 20),
            conn_limit: cli.conn_limit,
            threads,
            max_item_size: cli.max_item_size,
            no_evict: cli.disable_evictions,
            chunk_size: cli.slab_min_size,
            growth_factor: cli.growth_factor,
            verbose: cli.verbose,
            user: cli.user,
            pidfile: cli.pidfile,
            io_driver: cli.io_driver,
            pin: cli.pin,
            sasl: cli.enable_sasl,
            sasl_db,
            read_buf_mem_limit,
            replication,
        })
    }
}

/// Replication flags (docs/REPLICATION.md).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Replication")]
struct ReplicationArgs {
    /// The partner host's replication address (its --replication-listen):
    /// every client mutation here is copied there.
    #[arg(long = "partner", value_name = "HOST:PORT")]
    partner: Option<String>,
    /// Listen for the partner's copies on this address (default: off,
    /// nothing listens).
    #[arg(long = "replication-listen", value_name = "ADDR:PORT")]
    replication_listen: Option<std::net::SocketAddr>,
    /// async: replies do not wait for the partner. sync: a connection's
    /// replies wait until the partner acknowledged every write journaled
    /// before them, up to --replication-timeout; then async (counted) until
    /// the partner has caught up.
    #[arg(long = "replication-mode", value_enum, default_value_t = ReplicationMode::Async)]
    replication_mode: ReplicationMode,
    /// Sync mode: how long a reply waits for the partner's ack (ms). Also
    /// bounds the link's connect and handshake (at least 2 s) and drops a
    /// link whose partner stops acknowledging (at least 5 s).
    #[arg(
        long = "replication-timeout",
        value_name = "MS",
        default_value_t = 1000
    )]
    replication_timeout: u64,
    /// File holding the shared secret both partners must present
    /// (HMAC-SHA256 challenge-response); without it any peer that can
    /// reach --replication-listen may replicate.
    #[arg(long = "replication-secret", value_name = "FILE")]
    replication_secret: Option<std::path::PathBuf>,
    /// Backlog for partial resync, bytes over all streams (k/m/g suffix);
    /// split evenly between the shards' streams.
    #[arg(long = "replication-backlog", value_name = "BYTES", default_value = "64m", value_parser = parse_bytes)]
    replication_backlog: usize,
    /// Backlog age bound: a partner further behind than this many seconds
    /// gets a full sync even if the bytes are still held.
    #[arg(
        long = "replication-backlog-age",
        value_name = "SECS",
        default_value_t = 3600
    )]
    replication_backlog_age: u32,
    /// Warm rejoin: with --partner and --replication-listen, wait up to this
    /// many seconds for the partner to connect at start-up; if it does,
    /// serve clients only once its full sync has filled this host (0: no
    /// wait, serve at once).
    #[arg(
        long = "replication-rejoin-wait",
        value_name = "SECS",
        default_value_t = 3
    )]
    replication_rejoin_wait: u64,
}

/// `--replication-mode`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    Async,
    Sync,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The replication settings, fixed at start-up.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub partner: Option<std::net::SocketAddr>,
    pub listen: Option<std::net::SocketAddr>,
    pub mode: ReplicationMode,
    pub timeout_ms: u64,
    /// Empty: no secret configured.
    pub secret: Secret,
    pub backlog: usize,
    pub backlog_age_secs: u32,
    /// `--replication-rejoin-wait`, seconds.
    pub rejoin_wait_secs: u64,
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1usize << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("not a size: {s}"))?;
    n.checked_mul(mult).ok_or_else(|| "size too large".into())
}

impl ReplicationArgs {
    fn into_config(self) -> Result<Option<Box<ReplicationConfig>>, String> {
        if self.partner.is_none() && self.replication_listen.is_none() {
            return Ok(None);
        }
        let partner = match &self.partner {
            None => None,
            Some(p) => {
                use std::net::ToSocketAddrs;
                let mut it = p
                    .to_socket_addrs()
                    .map_err(|e| format!("--partner {p}: {e}"))?;
                Some(it.next().ok_or(format!("--partner {p}: no address"))?)
            }
        };
        let secret = match &self.replication_secret {
            None => Vec::new(),
            Some(f) => {
                let mut s = std::fs::read(f).map_err(|e| {
                    format!("cannot read --replication-secret {}: {e}", f.display())
                })?;
                while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    s.pop();
                }
                if s.is_empty() {
                    return Err(format!("--replication-secret {} is empty", f.display()));
                }
                s
            }
        };
        if self.replication_timeout == 0 {
            return Err("--replication-timeout must be at least 1 ms".into());
        }
        Ok(Some(Box::new(ReplicationConfig {
            partner,
            listen: self.replication_listen,
            mode: self.replication_mode,
            timeout_ms: self.replication_timeout,
            secret: Secret(secret),
            backlog: self.replication_backlog.max(64 << 10),
            backlog_age_secs: self.replication_backlog_age,
            rejoin_wait_secs: self.replication_rejoin_wait,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, i32> {
        let mut v = vec!["corecached"];
        v.extend_from_slice(args);
        match Config::from_args(v) {
            Parsed::Run(c) => Ok(c),
            Parsed::Exit(_, code) => Err(code),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&["-t", "2"]).unwrap();
        assert_eq!(
            (c.port, c.memory_limit, c.conn_limit, c.max_item_size),
            (11211, 64 << 20, 1024, 1 << 20)
        );
        let c = run(&[
            "-p",
            "1",
            "-m",
            "1024",
            "-I",
            "2m",
            "-l",
            "127.0.0.1,127.0.0.2",
            "-vv",
        ])
        .unwrap();
        assert_eq!(
            (
                c.port,
                c.memory_limit,
                c.max_item_size,
                c.listen.len(),
                c.verbose
            ),
            (1, 1 << 30, 2 << 20, 2, 2)
        );
    }

    #[test]
    fn sasl_flags() {
        let c = run(&["-t", "1"]).unwrap();
        assert!(!c.sasl && c.sasl_db.is_empty());
        let dir = std::env::temp_dir().join(format!("corecached-pwdb-{}", std::process::id()));
        std::fs::write(&dir, "u:p\n").unwrap();
        let path = dir.to_str().unwrap();
        let c = run(&["-S", "--sasl-pwdb", path]).unwrap();
        assert!(c.sasl && c.sasl_db.check(b"u", b"p"));
        let from_env = |args: &[&str], env: Option<&str>| {
            let mut v = vec!["corecached"];
            v.extend_from_slice(args);
            match Config::from_args_env(v, env.map(Into::into)) {
                Parsed::Run(c) => Ok(c),
                Parsed::Exit(_, code) => Err(code),
            }
        };
        let c = from_env(&["--enable-sasl"], Some(path)).unwrap();
        assert!(c.sasl && c.sasl_db.len() == 1);
        assert_eq!(from_env(&["-S"], None).err(), Some(EX_USAGE));
        assert_eq!(
            from_env(&["-S", "--sasl-pwdb", "/nonexistent/pwdb"], None).err(),
            Some(EX_USAGE)
        );
        // Without -S the password file is not read.
        assert!(from_env(&[], Some("/nonexistent/pwdb")).is_ok());
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(run(&["--bogus"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-U", "1"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-I", "12"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-p", "x"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-V"]).err(), Some(0));
        assert_eq!(run(&["-o", "bogus"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-o", "read_buf_mem_limit=x"]).err(), Some(EX_USAGE));
        assert_eq!(
            run(&["-o", "read_buf_mem_limit=1,slab_reassign"]).err(),
            Some(EX_USAGE)
        );
    }

    #[test]
    fn replication_flags() {
        assert!(run(&[]).unwrap().replication.is_none());
        let c = run(&["--replication-listen", "127.0.0.1:7000"]).unwrap();
        let r = c.replication.unwrap();
        assert_eq!(r.listen, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(
            (r.partner, r.mode, r.backlog),
            (None, ReplicationMode::Async, 64 << 20)
        );
        let secret = std::env::temp_dir().join(format!("corecached-secret-{}", std::process::id()));
        std::fs::write(&secret, "s3cret\n").unwrap();
        let r = run(&[
            "--partner",
            "127.0.0.1:7001",
            "--replication-mode",
            "sync",
            "--replication-timeout",
            "50",
            "--replication-backlog",
            "1m",
            "--replication-secret",
            secret.to_str().unwrap(),
        ])
        .unwrap()
        .replication
        .unwrap();
        assert_eq!(r.partner, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(
            (r.mode, r.timeout_ms, r.backlog),
            (ReplicationMode::Sync, 50, 1 << 20)
        );
        assert_eq!(r.secret.0, b"s3cret");
        assert!(!format!("{r:?}").contains("s3cret"));
        std::fs::write(&secret, "\n").unwrap();
        let empty = [
            "--partner",
            "127.0.0.1:1",
            "--replication-secret",
            secret.to_str().unwrap(),
        ];
        assert_eq!(run(&empty).err(), Some(EX_USAGE));
        let _ = std::fs::remove_file(&secret);
        assert_eq!(
            run(&["--partner", "nohost-without-port"]).err(),
            Some(EX_USAGE)
        );
        assert_eq!(run(&["--replication-mode", "later"]).err(), Some(EX_USAGE));
        assert_eq!(
            run(&["--partner", "127.0.0.1:1", "--replication-timeout", "0"]).err(),
            Some(EX_USAGE)
        );
    }

    #[test]
    fn read_buf_mem_limit() {
        assert_eq!(run(&[]).unwrap().read_buf_mem_limit, 64 << 20);
        assert_eq!(run(&["-I", "64m"]).unwrap().read_buf_mem_limit, 128 << 20);
        let c = run(&["-o", "read_buf_mem_limit=16"]).unwrap();
        assert_eq!(c.read_buf_mem_limit, 16 << 20);
        assert_eq!(
            run(&["-o", "read_buf_mem_limit=0"])
                .unwrap()
                .read_buf_mem_limit,
            0
        );
    }
}
