//! Command line: memcached's flags with memcached's meanings.

use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::net::IpAddr;

/// The process's exit codes (sysexits.h), all of them: `EX_OK` after a
/// clean shutdown or `--help`/`--version`; `EX_USAGE` for a bad command
/// line; `EX_SOFTWARE` when an event loop panicked; `EX_OSERR` when the OS
/// refuses what start-up needs (the listening socket, the user switch,
/// io_uring when forced, an event loop's runtime).
pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_OSERR: i32 = 71;

/// The memcached version we are compatible with, reported by `version`.
pub const MEMCACHED_VERSION: &str = "1.6.18";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "corecached",
    version = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)"),
    about = "A memcached-compatible cache server: one event loop and one shard per core",
    disable_version_flag = true,
    args_override_self = true,
    after_help = "--config FILE reads flags from FILE first, one or more per line, '#' comments \
                  (the format of Debian's /etc/memcached.conf); flags given after it win."
)]
struct Cli {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
    /// Interface(s) to listen on (repeat or comma-separate): IP, IP:PORT,
    /// [IPv6]:PORT; with -Z, a `notls:` prefix makes that listener plaintext.
    #[arg(
        short = 'l',
        long = "listen",
        action = ArgAction::Append,
        value_delimiter = ',',
        default_value = "127.0.0.1",
        value_parser = parse_listen
    )]
    listen: Vec<Listen>,
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
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Accepted for compatibility: the user to run as (privileges are dropped to it when started as root).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Write the process id to this file.
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<String>,
    /// Also listen on this unix socket (as memcached, TCP stays on unless
    /// `-p 0`).
    #[arg(short = 's', long = "unix-socket", value_name = "PATH")]
    unix_socket: Option<std::path::PathBuf>,
    /// Access mask of the unix socket, octal (default 0700).
    #[arg(short = 'a', long = "unix-mask", default_value = "0700", value_parser = parse_octal)]
    unix_mask: u32,
    /// Enable the `shutdown` command.
    #[arg(short = 'A', long = "enable-shutdown")]
    enable_shutdown: bool,
    /// Lock all paged memory (mlockall); a failure is a warning, as in memcached.
    #[arg(short = 'k', long = "lock-memory")]
    lock_memory: bool,
    /// Maximise the core file limit.
    #[arg(short = 'r', long = "enable-coredumps")]
    enable_coredumps: bool,
    /// Run as a daemon (fork, new session, stdio to /dev/null).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Maximum requests served for one connection before others get a turn.
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = 20)]
    reqs_per_event: i64,
    /// Listen backlog.
    #[arg(short = 'b', long = "listen-backlog", default_value_t = 1024)]
    backlog: i32,
    /// Protocols served: auto (ascii, meta and binary, detected per
    /// connection), ascii (text and meta) or binary.
    #[arg(short = 'B', long = "protocol", default_value = "auto", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Disable CAS (items carry no CAS value; replies show 0).
    #[arg(short = 'C', long = "disable-cas")]
    disable_cas: bool,
    /// Disable flush_all.
    #[arg(short = 'F', long = "disable-flush-all")]
    disable_flush_all: bool,
    /// Disable the dump commands (stats cachedump, lru_crawler metadump).
    #[arg(short = 'X', long = "disable-dumping")]
    disable_dumping: bool,
    /// Disable the watch command.
    #[arg(short = 'W', long = "disable-watch")]
    disable_watch: bool,
    /// Prefix delimiter for `stats detail` (turns detail recording on).
    #[arg(short = 'D', value_name = "CHAR")]
    prefix_delimiter: Option<String>,
    /// memcached's large pages: accepted, no effect here (a warning says so).
    #[arg(short = 'L', long = "enable-largepages")]
    large_pages: bool,
    /// memcached's NAPI-id thread selection: accepted, no effect here.
    #[arg(short = 'N', long = "napi-ids")]
    napi_ids: Option<i64>,
    /// memcached's ASCII token authentication: not built here (refused).
    #[arg(short = 'Y', long = "auth-file")]
    auth_file: Option<String>,
    /// memcached's restartable memory file: not built here (refused).
    #[arg(short = 'e', long = "memory-file")]
    memory_file: Option<String>,
    /// TLS: not built yet (refused).
    #[arg(short = 'Z', long = "enable-ssl")]
    enable_ssl: bool,
    /// Print the license and exit.
    #[arg(short = 'i', long = "license")]
    license: bool,
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
    /// Extended options, comma-separated `name=value` (memcached's -o; every
    /// one of memcached 1.6 is accepted: docs/COMPATIBILITY.md says what
    /// each does here).
    #[arg(short = 'o', long = "extended", action = ArgAction::Append, value_delimiter = ',')]
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

/// One `-l` entry: an address, its own port (else `-p`), and whether it is
/// a TLS listener (every listener is, with `-Z`, unless marked `notls:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub notls: bool,
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.notls {
            f.write_str("notls:")?;
        }
        match (self.port, self.ip) {
            (None, ip) => write!(f, "{ip}"),
            (Some(p), IpAddr::V6(ip)) => write!(f, "[{ip}]:{p}"),
            (Some(p), ip) => write!(f, "{ip}:{p}"),
        }
    }
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let (notls, rest) = match s.strip_prefix("notls:") {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.starts_with("proto[") {
        return Err(format!(
            "{s}: per-listener protocols (proto[...]) are not supported; use -B"
        ));
    }
    let bad = || format!("not an address: {s}");
    if let Ok(ip) = rest.parse::<IpAddr>() {
        return Ok(Listen {
            ip,
            port: None,
            notls,
        });
    }
    let sa: std::net::SocketAddr = rest.parse().map_err(|_| bad())?;
    Ok(Listen {
        ip: sa.ip(),
        port: Some(sa.port()),
        notls,
    })
}

/// Which protocols a connection may speak (`-B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Ascii,
    Binary,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "auto" => Ok(Protocol::Auto),
        "ascii" => Ok(Protocol::Ascii),
        "binary" => Ok(Protocol::Binary),
        _ => Err(format!(
            "Invalid value for binding protocol: {s} -- should be one of auto, binary, or ascii"
        )),
    }
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|_| format!("not an octal mask: {s}"))
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
    pub listen: Vec<Listen>,
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
    /// `-s`: a unix socket to listen on too, with permissions `-a`.
    pub unix_socket: Option<std::path::PathBuf>,
    pub unix_mask: u32,
    /// `-A`: the `shutdown` command is served.
    pub enable_shutdown: bool,
    /// `-k`: mlockall at start.
    pub lock_memory: bool,
    /// `-r`: core file limit raised to the maximum.
    pub enable_coredumps: bool,
    /// `-d`: detach from the terminal.
    pub daemonize: bool,
    /// `-R`: requests served from one connection's input before the loop
    /// turns to other connections.
    pub reqs_per_event: usize,
    /// `-b`: listen backlog.
    pub backlog: i32,
    /// `-B`: protocols served.
    pub protocol: Protocol,
    /// `-C` turns CAS off.
    pub use_cas: bool,
    /// `-F` turns flush_all off.
    pub flush_enabled: bool,
    /// `-X` turns the dump commands off.
    pub dump_enabled: bool,
    /// `-W` turns watch off.
    pub watch_enabled: bool,
    /// `-D`: the prefix delimiter of `stats detail`, and detail recording
    /// on from the start.
    pub prefix_delimiter: u8,
    pub detail_enabled: bool,
    /// `-Z` with its `-o ssl_*` settings; None without `-Z`.
    pub tls: Option<TlsSettings>,
    /// `-o` settings this server keeps (others are documented no-ops).
    pub ext: Extended,
    /// One line each for accepted flags that do nothing here; printed at
    /// start-up.
    pub warnings: Vec<String>,
    /// Partner-host replication (`--partner`, `--replication-listen`);
    /// `None`: nothing is started and no journal is set.
    pub replication: Option<Box<ReplicationConfig>>,
}

/// TLS (`-Z`), memcached's `-o ssl_*` options with memcached's defaults.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub chain_cert: Option<std::path::PathBuf>,
    /// The private key; memcached's default is the chain file itself.
    pub key: Option<std::path::PathBuf>,
    pub ca_cert: Option<std::path::PathBuf>,
    /// 0 none, 1 request (verify if given), 2 require, 3 require once.
    pub verify_mode: u8,
    /// Oldest protocol accepted: 2 = TLS 1.2, 3 = TLS 1.3.
    pub min_version: u8,
    pub session_cache: bool,
    /// `--replication-tls`: also build the replication link's mutual-TLS
    /// configurations from these files.
    pub replication: bool,
}

/// memcached's `-o` settings that mean something here, with memcached's
/// defaults.
#[derive(Debug, Clone)]
pub struct Extended {
    /// Seconds of silence after which a client connection is closed (0: never).
    pub idle_timeout: u32,
    pub hashpower: Option<u32>,
    pub slab_reassign: bool,
    pub slab_automove: u8,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
    pub lru_crawler: bool,
    pub lru_crawler_sleep: u32,
    pub lru_crawler_tocrawl: u32,
    pub maxconns_fast: bool,
    pub hash_expand: bool,
}

impl Default for Extended {
    fn default() -> Self {
        Extended {
            idle_timeout: 0,
            hashpower: None,
            slab_reassign: true,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            lru_crawler: true,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            maxconns_fast: true,
            hash_expand: true,
        }
    }
}

/// The default bound on connection buffers: room for 64 MiB of in-flight
/// requests, and always for two of the largest values at once.
pub fn default_read_buf_mem_limit(max_item_size: usize) -> usize {
    (64usize << 20).max(max_item_size.saturating_mul(2))
}

/// What parsing the command line decided.
pub enum Parsed {
    Run(Box<Config>),
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
        let mut file_warnings = Vec::new();
        let args = match expand_config_file(args, &mut file_warnings) {
            Ok(a) => a,
            Err(e) => return Parsed::Exit(format!("corecached: {e}\n"), EX_USAGE),
        };
        let cli = match Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => {
                use clap::error::ErrorKind as K;
                let code = match e.kind() {
                    K::DisplayHelp | K::DisplayVersion => EX_OK,
                    _ => EX_USAGE,
                };
                return Parsed::Exit(e.render().to_string(), code);
            }
        };
        if cli.license {
            return Parsed::Exit(
                format!(
                    "corecached {}: MIT license (see the LICENSE file of the source)\n",
                    env!("CARGO_PKG_VERSION")
                ),
                EX_OK,
            );
        }
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
        let mut ext = Extended::default();
        let mut tls = TlsSettings {
            min_version: 2,
            ..TlsSettings::default()
        };
        let mut warnings = file_warnings;
        for opt in &cli.extended {
            if let Err(e) = extended(
                opt,
                &mut ext,
                &mut tls,
                &mut read_buf_mem_limit,
                &mut warnings,
            ) {
                return Parsed::Exit(format!("corecached: {e}\n"), EX_USAGE);
            }
        }
        if let Err(e) = check_flags(&cli, &mut warnings) {
            return Parsed::Exit(format!("corecached: {e}\n"), EX_USAGE);
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
        if replication.as_ref().is_some_and(|r| r.tls) {
            if !cli.enable_ssl || tls.chain_cert.is_none() {
                return Parsed::Exit(
                    "corecached: --replication-tls needs -Z and -o ssl_chain_cert=FILE (the replication link uses the server's own certificate)\n".into(),
                    EX_USAGE,
                );
            }
            if tls.ca_cert.is_none() {
                return Parsed::Exit(
                    "corecached: --replication-tls needs -o ssl_ca_cert=FILE (the CA the partner's certificate must chain to)\n".into(),
                    EX_USAGE,
                );
            }
            tls.replication = true;
        }
        Parsed::Run(Box::new(Config {
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
            unix_socket: cli.unix_socket,
            unix_mask: cli.unix_mask,
            enable_shutdown: cli.enable_shutdown,
            lock_memory: cli.lock_memory,
            enable_coredumps: cli.enable_coredumps,
            daemonize: cli.daemon,
            reqs_per_event: cli.reqs_per_event as usize,
            backlog: cli.backlog,
            protocol: cli.protocol,
            use_cas: !cli.disable_cas,
            flush_enabled: !cli.disable_flush_all,
            dump_enabled: !cli.disable_dumping,
            watch_enabled: !cli.disable_watch,
            prefix_delimiter: cli
                .prefix_delimiter
                .as_deref()
                .map_or(b':', |d| d.as_bytes()[0]),
            detail_enabled: cli.prefix_delimiter.is_some(),
            tls: if cli.enable_ssl {
                if tls.chain_cert.is_none() {
                    return Parsed::Exit(
                        "corecached: -Z needs -o ssl_chain_cert=FILE (and ssl_key=FILE unless the key is in it)\n".into(),
                        EX_USAGE,
                    );
                }
                if tls.verify_mode > 0 && tls.ca_cert.is_none() {
                    return Parsed::Exit(
                        "corecached: ssl_verify_mode 1-3 needs -o ssl_ca_cert=FILE (the CAs client certificates are checked against)\n".into(),
                        EX_USAGE,
                    );
                }
                Some(tls)
            } else {
                None
            },
            ext,
            warnings,
            replication,
        }))
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
    /// Speak mutual TLS on the replication link, both ways, with the -Z
    /// certificates (ssl_chain_cert, ssl_key): each side presents its
    /// certificate and requires the partner's to chain to ssl_ca_cert.
    /// Needs -Z and ssl_ca_cert; both partners must give it.
    #[arg(long = "replication-tls")]
    replication_tls: bool,
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
    /// `--replication-tls`: the link speaks mutual TLS (the configurations
    /// are in `server::tls`, built with the client-facing ones).
    pub tls: bool,
    /// The host part of `--partner` (a DNS name or an IP address): the name
    /// the partner's certificate must carry under `--replication-tls`.
    pub partner_name: Option<String>,
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
            if self.replication_tls {
                return Err("--replication-tls needs --partner or --replication-listen".into());
            }
            return Ok(None);
        }
        let partner_name = self.partner.as_deref().map(|p| {
            let host = p.rsplit_once(':').map_or(p, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
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
            tls: self.replication_tls,
            partner_name,
        })))
    }
}

/// `--config FILE` (or `--config=FILE`) is replaced by the flags in FILE,
/// read as Debian's memcached wrapper reads /etc/memcached.conf: `#` starts
/// a comment (unless escaped as `\#`), each remaining line holds one flag
/// and its value (split on white space), `-d` and `-h` lines are dropped (a
/// service manager runs the server in the foreground), and lines that are
/// not flags (`logfile PATH`) are ignored with a warning.
fn expand_config_file<I, T>(args: I, warnings: &mut Vec<String>) -> Result<Vec<OsString>, String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut out = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        let path = match a.to_str() {
            Some("--config") => match it.next() {
                Some(p) => p,
                None => return Err("--config needs a file".into()),
            },
            Some(s) if s.starts_with("--config=") => OsString::from(&s["--config=".len()..]),
            _ => {
                out.push(a);
                continue;
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.to_string_lossy()))?;
        for raw in text.lines() {
            let mut line = String::new();
            let mut prev = '\0';
            for c in raw.chars() {
                if c == '#' && prev != '\\' {
                    break;
                }
                if c == '#' {
                    line.pop();
                }
                line.push(c);
                prev = c;
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with("-d") || line.starts_with("-h") {
                continue;
            }
            if !line.starts_with('-') {
                warnings.push(format!(
                    "{}: ignored (not a flag): {line}",
                    path.to_string_lossy()
                ));
                continue;
            }
            out.extend(line.split_whitespace().map(OsString::from));
        }
    }
    Ok(out)
}

/// The flags memcached refuses (with its reasons), the ones this server
/// refuses because it does not build them (never a silent no-op for a
/// security or persistence flag), and warnings for accepted no-ops.
fn check_flags(cli: &Cli, warnings: &mut Vec<String>) -> Result<(), String> {
    if cli.slab_min_size == 0 {
        return Err("Chunk size must be greater than 0".into());
    }
    if cli.reqs_per_event <= 0 {
        return Err("Number of requests per event must be greater than 0".into());
    }
    if cli.max_item_size as u64 > cli.memory_limit.saturating_mul(1 << 20) / 2 {
        return Err("Cannot set item size limit higher than 1/2 of memory max.".into());
    }
    if let Some(d) = &cli.prefix_delimiter {
        if d.is_empty() {
            return Err("No delimiter specified".into());
        }
    }
    if cli.enable_sasl && cli.protocol == Protocol::Ascii {
        return Err("ERROR: You cannot allow the ASCII protocol while using SASL.".into());
    }
    if cli.listen.iter().any(|l| l.notls) && !cli.enable_ssl {
        return Err("'notls' option is valid only when SSL is enabled".into());
    }
    if cli.auth_file.is_some() {
        return Err(
            "-Y: ASCII token authentication is not built into corecached; use -S (SASL, binary)"
                .into(),
        );
    }
    if cli.memory_file.is_some() {
        return Err(
            "-e: memcached's restartable memory file is not built into corecached; \
             items do not survive a restart"
                .into(),
        );
    }
    if let Some(n) = cli.napi_ids {
        if n <= 0 {
            return Err("Maximum number of NAPI IDs must be greater than 0".into());
        }
        warnings.push("-N: NAPI-id thread selection has no effect here (the kernel's SO_REUSEPORT spreads connections)".into());
    }
    if cli.large_pages {
        warnings.push(
            "-L: large pages have no effect here (slab pages are allocated as needed)".into(),
        );
    }
    Ok(())
}

/// One `-o` sub-option (memcached 1.6's whole list; memcached's messages
/// for values it refuses).
fn extended(
    opt: &str,
    ext: &mut Extended,
    tls: &mut TlsSettings,
    read_buf_mem_limit: &mut usize,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let (name, value) = match opt.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (opt, None),
    };
    let need = |what: &str| value.ok_or_else(|| format!("Missing {what} argument"));
    let num = |what: &str| -> Result<i64, String> {
        need(what)?
            .parse::<i64>()
            .map_err(|_| format!("could not parse argument to {what}"))
    };
    let mut noop = |why: &str| warnings.push(format!("-o {name}: {why}"));
    match name {
        "read_buf_mem_limit" => {
            let mb = num(name)?;
            if mb < 0 {
                return Err(format!("could not parse argument to {name}"));
            }
            *read_buf_mem_limit = (mb as usize).saturating_mul(1 << 20);
        }
        "idle_timeout" => ext.idle_timeout = num(name)?.clamp(0, u32::MAX as i64) as u32,
        "hashpower" => {
            let n = num(name)?;
            if n < 12 {
                return Err(format!("Initial hashtable multiplier of {n} is too low"));
            }
            if n > 32 {
                return Err(format!("Initial hashtable multiplier of {n} is too high"));
            }
            ext.hashpower = Some(n as u32);
            noop(
                "the index starts small and doubles in background slices; shown in stats settings",
            );
        }
        "no_hashexpand" => {
            ext.hash_expand = false;
            noop("the index always grows, in bounded background slices");
        }
        "slab_reassign" => ext.slab_reassign = true,
        "no_slab_reassign" => ext.slab_reassign = false,
        "slab_automove" => {
            let n = if value.is_some() { num(name)? } else { 1 };
            if !(0..=2).contains(&n) {
                return Err("slab_automove must be between 0 and 2".into());
            }
            ext.slab_automove = n as u8;
        }
        "no_slab_automove" => ext.slab_automove = 0,
        "slab_automove_ratio" => {
            let r: f64 = need(name)?
                .parse()
                .map_err(|_| format!("could not parse argument to {name}"))?;
            if !(r > 0.0 && r <= 1.0) {
                return Err("slab_automove_ratio must be > 0 and < 1".into());
            }
            ext.slab_automove_ratio = r;
            noop("automove here follows evictions in the ticker, without a ratio");
        }
        "slab_automove_window" => {
            let n = num(name)?;
            if n < 3 {
                return Err("slab_automove_window must be > 2".into());
            }
            ext.slab_automove_window = n as u32;
            noop("automove here follows evictions in the ticker, without a window");
        }
        "lru_crawler" => ext.lru_crawler = true,
        "no_lru_crawler" => ext.lru_crawler = false,
        "lru_crawler_sleep" => {
            let n = num(name)?;
            if !(0..=1_000_000).contains(&n) {
                return Err("LRU crawler sleep must be between 0 and 1 second".into());
            }
            ext.lru_crawler_sleep = n as u32;
        }
        "lru_crawler_tocrawl" => {
            let n = num(name)?;
            if !(0..=u32::MAX as i64).contains(&n) {
                return Err("lru_crawler_tocrawl takes a numeric 32bit value".into());
            }
            ext.lru_crawler_tocrawl = n as u32;
        }
        "maxconns_fast" => ext.maxconns_fast = true,
        "no_maxconns_fast" => {
            ext.maxconns_fast = false;
            noop("a connection past -c always gets memcached's error line, then is closed");
        }
        // memcached's checks, then no effect here.
        "hash_algorithm" => {
            if !matches!(need(name)?, "jenkins" | "murmur3" | "xxh3") {
                return Err("Unknown hash_algorithm option (jenkins, murmur3, xxh3)".into());
            }
            noop("keys are hashed with ahash here");
        }
        "tail_repair_time" => {
            if num(name)? < 10 {
                return Err("Cannot set tail_repair_time to less than 10 seconds".into());
            }
            noop("there is no item refcount to repair here");
        }
        "hot_lru_pct" | "warm_lru_pct" => {
            let n = num(name)?;
            if !(1..80).contains(&n) {
                return Err(format!("{name} must be > 1 and < 80"));
            }
            noop("one CLOCK per class here, no segmented LRU");
        }
        "hot_max_factor" | "warm_max_factor" => {
            let f: f64 = need(name)?
                .parse()
                .map_err(|_| format!("could not parse argument to {name}"))?;
            if f <= 0.0 {
                return Err(format!("{name} must be > 0"));
            }
            noop("one CLOCK per class here, no segmented LRU");
        }
        "temporary_ttl" => {
            num(name)?;
            noop("no temporary LRU here");
        }
        "watcher_logbuf_size" | "worker_logbuf_size" => {
            num(name)?;
            noop("log buffers are sized by the server");
        }
        "slab_sizes" | "slab_chunk_max" => {
            need(name)?;
            noop("slab classes follow -n and -f here");
        }
        "modern" | "no_modern" => noop("its defaults are this server's defaults"),
        "lru_maintainer" | "no_lru_maintainer" => {
            noop("no background LRU maintainer here (CLOCK eviction)")
        }
        "track_sizes" => noop("not tracked here"),
        "inline_ascii_resp" | "no_inline_ascii_resp" => noop("no effect in memcached 1.6 either"),
        "no_chunked_items" => noop("large items are never chunked here"),
        "drop_privileges" | "no_drop_privileges" | "relaxed_privileges" => {
            noop("no seccomp profile here; run it under systemd's hardening (dist/)")
        }
        "resp_obj_mem_limit" => {
            num(name)?;
            noop("responses are written from one buffer per connection (read_buf_mem_limit bounds it)");
        }
        "sock_cookie_id" => {
            num(name)?;
            noop("no socket cookies here");
        }
        "ssl_chain_cert" => tls.chain_cert = Some(need(name)?.into()),
        "ssl_key" => tls.key = Some(need(name)?.into()),
        "ssl_ca_cert" => tls.ca_cert = Some(need(name)?.into()),
        "ssl_verify_mode" => {
            let n = num(name)?;
            if !(0..=3).contains(&n) {
                return Err("Invalid ssl_verify_mode. Use help to see valid options.".into());
            }
            tls.verify_mode = n as u8;
        }
        "ssl_min_version" => {
            tls.min_version = match need(name)? {
                "tlsv1.2" => 2,
                "tlsv1.3" => 3,
                "tlsv1" | "tlsv1.0" | "tlsv1.1" => {
                    return Err(format!(
                    "-o {opt}: TLS before 1.2 is not offered here (rustls); use tlsv1.2 or tlsv1.3"
                ))
                }
                _ => return Err(format!("Invalid ssl_min_version: {opt}")),
            }
        }
        "ssl_keyformat" => {
            if num(name)? != 1 {
                return Err(format!("-o {opt}: only PEM keys (1) are read here"));
            }
        }
        "ssl_session_cache" => tls.session_cache = true,
        "ssl_wbuf_size" => {
            num(name)?;
            noop("TLS records are written from the connection's own buffer");
        }
        "ssl_ciphers" => {
            need(name)?;
            return Err(format!(
                "-o {name}: OpenSSL cipher strings are not mapped here; rustls offers only its \
                 modern suites (TLS 1.3 AES-GCM/ChaCha20, TLS 1.2 ECDHE AES-GCM/ChaCha20)"
            ));
        }
        "ssl_kernel_tls" => return Err(format!("-o {name}: kernel TLS is not supported here")),
        _ if name.starts_with("ext_") => {
            return Err(format!(
                "-o {name}: extstore (items on flash) is not built into corecached"
            ))
        }
        _ => return Err(format!("Illegal suboption \"{opt}\"")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, i32> {
        let mut v = vec!["corecached"];
        v.extend_from_slice(args);
        match Config::from_args(v) {
            Parsed::Run(c) => Ok(*c),
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
                Parsed::Run(c) => Ok(*c),
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
            run(&["-o", "read_buf_mem_limit=1,bogus"]).err(),
            Some(EX_USAGE)
        );
    }

    /// Every flag of memcached 1.6.18's getopt string is accepted (those
    /// with a meaning here change the configuration; -d is left out: it
    /// would only be parsed, but keep tests from looking like daemons).
    #[test]
    fn every_memcached_flag_is_accepted() {
        let c = run(&[
            "-a",
            "0770",
            "-A",
            "-p",
            "11300",
            "-U",
            "0",
            "-m",
            "128",
            "-M",
            "-c",
            "99",
            "-k",
            "-r",
            "-v",
            "-l",
            "127.0.0.1",
            "-u",
            "nobody",
            "-P",
            "/tmp/x.pid",
            "-f",
            "1.5",
            "-n",
            "64",
            "-t",
            "3",
            "-D",
            "|",
            "-L",
            "-R",
            "7",
            "-C",
            "-b",
            "50",
            "-B",
            "ascii",
            "-I",
            "2m",
            "-F",
            "-X",
            "-W",
            "-N",
            "1",
            "-s",
            "/tmp/cc.sock",
            "-o",
            "modern",
        ])
        .unwrap();
        assert_eq!(c.unix_mask, 0o770);
        assert!(c.enable_shutdown && c.lock_memory && c.enable_coredumps && !c.daemonize);
        assert_eq!(
            (c.port, c.conn_limit, c.threads, c.chunk_size),
            (11300, 99, 3, 64)
        );
        assert_eq!(
            (c.reqs_per_event, c.backlog, c.protocol),
            (7, 50, Protocol::Ascii)
        );
        assert!(!c.use_cas && !c.flush_enabled && !c.dump_enabled && !c.watch_enabled);
        assert!(c.detail_enabled && c.prefix_delimiter == b'|' && c.no_evict);
        assert_eq!(
            c.unix_socket.as_deref(),
            Some(std::path::Path::new("/tmp/cc.sock"))
        );
        // One warning line per accepted no-op (-L, -N, -o modern).
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        let d = run(&["-d"]).unwrap();
        assert!(d.daemonize);
        let c = run(&[]).unwrap();
        assert!(c.use_cas && c.flush_enabled && c.dump_enabled && c.watch_enabled);
        assert_eq!(
            (c.reqs_per_event, c.backlog, c.protocol),
            (20, 1024, Protocol::Auto)
        );
        assert!(c.warnings.is_empty());
    }

    /// memcached 1.6's whole -o list: each accepted (alone, with a valid
    /// value), the TLS and extstore ones refused until they exist here.
    #[test]
    fn every_extended_option() {
        for o in [
            "maxconns_fast",
            "hashpower=16",
            "no_hashexpand",
            "slab_reassign",
            "slab_automove",
            "slab_automove=2",
            "slab_automove_ratio=0.5",
            "slab_automove_window=10",
            "tail_repair_time=20",
            "hash_algorithm=murmur3",
            "lru_crawler",
            "lru_crawler_sleep=50",
            "lru_crawler_tocrawl=10",
            "lru_maintainer",
            "hot_lru_pct=20",
            "warm_lru_pct=40",
            "hot_max_factor=0.2",
            "warm_max_factor=2.0",
            "temporary_ttl=61",
            "idle_timeout=30",
            "watcher_logbuf_size=256",
            "worker_logbuf_size=64",
            "slab_sizes=100-200-300",
            "slab_chunk_max=524288",
            "track_sizes",
            "no_inline_ascii_resp",
            "modern",
            "no_modern",
            "no_chunked_items",
            "no_slab_reassign",
            "no_slab_automove",
            "no_maxconns_fast",
            "inline_ascii_resp",
            "no_lru_crawler",
            "no_lru_maintainer",
            "no_drop_privileges",
            "drop_privileges",
            "resp_obj_mem_limit=10",
            "read_buf_mem_limit=10",
            "relaxed_privileges",
            "sock_cookie_id=1",
        ] {
            assert!(run(&["-o", o]).is_ok(), "-o {o} refused");
        }
        // Settings kept for `stats settings` but without effect here warn.
        for o in [
            "hashpower=16",
            "no_hashexpand",
            "no_maxconns_fast",
            "slab_automove_ratio=0.5",
            "slab_automove_window=10",
        ] {
            assert_eq!(run(&["-o", o]).unwrap().warnings.len(), 1, "-o {o}");
        }
        let c = run(&[
            "-o",
            "idle_timeout=30,hashpower=20,no_lru_crawler,slab_automove=2",
        ])
        .unwrap();
        assert_eq!(c.ext.idle_timeout, 30);
        assert_eq!(c.ext.hashpower, Some(20));
        assert!(!c.ext.lru_crawler && c.ext.slab_automove == 2);
        for bad in [
            "ssl_ciphers=HIGH",
            "ssl_kernel_tls",
            "ssl_min_version=tlsv1.1",
            "ssl_verify_mode=4",
            "ext_path=/tmp/x:1g",
            "hashpower=11",
            "hashpower=33",
            "slab_automove=3",
            "slab_automove_ratio=0",
            "slab_automove_window=2",
            "tail_repair_time=5",
            "hash_algorithm=md5",
            "lru_crawler_sleep=2000000",
            "hot_lru_pct=80",
            "idle_timeout",
            "bogus",
            "read_buf_mem_limit=x",
        ] {
            assert_eq!(run(&["-o", bad]).err(), Some(EX_USAGE), "-o {bad} accepted");
        }
    }

    /// -Z with memcached's ssl_* options; -l notls: entries and ports.
    #[test]
    fn tls_settings_and_listeners() {
        assert_eq!(run(&["-Z"]).err(), Some(EX_USAGE), "no certificate");
        let c = run(&["-Z", "-o", "ssl_chain_cert=/c.pem,ssl_key=/k.pem"]).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(
            t.chain_cert.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(
            (t.verify_mode, t.min_version, t.session_cache),
            (0, 2, false)
        );
        assert_eq!(
            run(&["-Z", "-o", "ssl_chain_cert=/c.pem,ssl_verify_mode=2"]).err(),
            Some(EX_USAGE),
            "verification needs a CA"
        );
        let c = run(&[
            "-Z", "-o", "ssl_chain_cert=/c,ssl_ca_cert=/ca,ssl_verify_mode=3,ssl_min_version=tlsv1.3,ssl_session_cache",
            "-l", "127.0.0.1,notls:127.0.0.1:11300,[::1]:11400",
        ])
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(
            (t.verify_mode, t.min_version, t.session_cache),
            (3, 3, true)
        );
        assert_eq!(c.listen.len(), 3);
        assert!(!c.listen[0].notls && c.listen[0].port.is_none());
        assert!(c.listen[1].notls && c.listen[1].port == Some(11300));
        assert_eq!(c.listen[2].to_string(), "[::1]:11400");
        assert!(
            run(&["-o", "ssl_chain_cert=/c"]).unwrap().tls.is_none(),
            "no -Z: no TLS"
        );
        assert_eq!(run(&["-l", "notls:127.0.0.1"]).err(), Some(EX_USAGE));
        assert_eq!(run(&["-l", "proto[ascii]:127.0.0.1"]).err(), Some(EX_USAGE));
    }

    /// What memcached refuses, refused; security and persistence flags we do
    /// not build are refused, never accepted as no-ops.
    #[test]
    fn refusals() {
        for bad in [
            &["-n", "0"][..],
            &["-m", "1", "-I", "1g"],
            &["-m", "64", "-I", "64m"],
            &["-R", "0"],
            &["-B", "http"],
            &["-Y", "/tmp/tokens"],
            &["-e", "/tmp/memfile"],
            &["-N", "0"],
            &["-S", "-B", "ascii"],
        ] {
            assert_eq!(run(bad).err(), Some(EX_USAGE), "{bad:?} accepted");
        }
        assert!(run(&["-m", "64", "-I", "32m"]).is_ok());
        assert_eq!(run(&["-i"]).err(), Some(0));
    }

    /// Debian's /etc/memcached.conf, read by --config as its wrapper reads
    /// it; flags after --config win.
    #[test]
    fn config_file_in_memcached_conf_format() {
        let path = std::env::temp_dir().join(format!("corecached-conf-{}", std::process::id()));
        std::fs::write(
            &path,
            "# memcached default config file\n\
             # Run memcached as a daemon.\n\
             -d\n\
             \n\
             logfile /var/log/memcached.log\n\
             -m 128   # memory\n\
             -p 11299\n\
             -u memcache\n\
             -l 127.0.0.1\n\
             -P /var/run/memcached/memcached.pid\n\
             -o idle_timeout=9,modern\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = run(&["--config", p]).unwrap();
        assert_eq!((c.memory_limit, c.port), (128 << 20, 11299));
        assert_eq!(c.user.as_deref(), Some("memcache"));
        assert_eq!(
            c.pidfile.as_deref(),
            Some("/var/run/memcached/memcached.pid")
        );
        assert_eq!(c.listen[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.ext.idle_timeout, 9);
        assert!(!c.daemonize, "-d in a config file is dropped");
        assert!(
            c.warnings.iter().any(|w| w.contains("logfile")),
            "{:?}",
            c.warnings
        );
        let c = run(&[&format!("--config={p}"), "-p", "1234", "-m", "64"]).unwrap();
        assert_eq!((c.memory_limit, c.port), (64 << 20, 1234));
        assert_eq!(
            run(&["--config", "/nonexistent/corecached.conf"]).err(),
            Some(EX_USAGE)
        );
        let _ = std::fs::remove_file(&path);
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
        assert_eq!(
            run(&["-m", "128", "-I", "64m"]).unwrap().read_buf_mem_limit,
            128 << 20
        );
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
