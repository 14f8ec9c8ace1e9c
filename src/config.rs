//! Command line: memcached's flags with memcached's meanings.

use clap::{ArgAction, Parser};
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
                    K::DisplayHelp | K::DisplayVersion => EX_OK,
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
        })
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
