//! The runtime: one monoio event loop per core, each pinned to its core with
//! its own SO_REUSEPORT listener(s) on the same address and port, so the
//! kernel spreads connections over cores and a connection lives on the core
//! that accepted it.
//!
//! Shutdown (SIGTERM/SIGINT): a signal thread sets a flag; each loop's ticker
//! sees it, stops accepting, shuts down the read side of its connections so
//! idle reads end, lets every connection answer what it has already read,
//! and the process exits 0.

mod admin;
mod conn;
pub(crate) use conn::Isolated;
mod conns;
mod detail;
mod env;
pub mod exec;
/// A connection without a socket, for the fuzz targets (tests/fuzz).
#[doc(hidden)]
pub mod fuzzing;
mod meta_exec;
mod notify;
mod ops;
#[cfg(test)]
mod seam_tests;
mod stats_cmd;
pub mod tls;
mod watch;

use crate::config::{Config, IoDriver, Pin, EX_OK, EX_OSERR, EX_SOFTWARE};
use crate::stats::Stats;
use crate::store::{Store, StoreConfig};
use crate::time;
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The version string `version` reports: memcached's, so clients that parse
/// it keep working, tagged with ours.
pub const VERSION: &str = concat!("1.6.18-corecached-", env!("CARGO_PKG_VERSION"));

/// State shared by all event loops.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    pub shutdown: AtomicBool,
    /// Current `verbosity` level (set by `-v` and the `verbosity` command).
    pub verbosity: AtomicU32,
    /// TLS (`-Z`): the certificates new connections get.
    pub tls: Option<tls::Tls>,
    /// Open connections and listeners (`stats conns`, `-vv` logs).
    pub conn_table: conns::ConnTable,
    /// Event loops serving their listeners (systemd readiness: `notify`).
    pub loops_ready: AtomicUsize,
    /// Per loop: when its ticker last ran (`notify::mono_ms`), for the
    /// systemd watchdog.
    pub heartbeats: Box<[AtomicU64]>,
    /// Partner replication, when `--partner` or `--replication-listen`.
    pub replication: Option<crate::replication::Replication>,
    /// `watch` log streams (the store reports lookups, stores and
    /// evictions to it).
    pub watch: Arc<watch::Watchers>,
}

impl Shared {
    /// The state `loops` event loops share: the store (told of lookups,
    /// stores and evictions for `watch`), fresh counters and tables, and
    /// what start-up made (TLS, replication).
    pub(crate) fn new(
        config: Config,
        store: Store,
        loops: usize,
        tls: Option<tls::Tls>,
        replication: Option<crate::replication::Replication>,
    ) -> Shared {
        let watch = Arc::new(watch::Watchers::new(
            config.chunk_size,
            config.growth_factor,
        ));
        store.observe(Some(watch.clone()));
        Shared {
            watch,
            replication,
            store,
            stats: Stats::new(loops),
            shutdown: AtomicBool::new(false),
            verbosity: AtomicU32::new(config.verbose as u32),
            tls,
            conn_table: conns::ConnTable::default(),
            loops_ready: AtomicUsize::new(0),
            heartbeats: (0..loops)
                .map(|_| AtomicU64::new(notify::mono_ms()))
                .collect(),
            config,
        }
    }
}

/// One loop's listening sockets.
#[derive(Default)]
struct Listeners {
    /// TCP listeners, each with whether it speaks TLS.
    tcp: Vec<(std::net::TcpListener, bool)>,
    unix: Option<std::os::unix::net::UnixListener>,
}

/// Per-loop state.
pub(crate) struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// Open connections' fds, so shutdown can end their idle reads.
    pub conns: RefCell<HashSet<RawFd>>,
}

fn log(cfg: &Config, level: u8, msg: std::fmt::Arguments<'_>) {
    if cfg.verbose >= level {
        eprintln!("{msg}");
    }
}

/// Open one listening socket with SO_REUSEPORT.
fn listener(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The unix socket of `-s`, as memcached makes it: a stale socket file is
/// removed (any other kind of file is left alone and the bind fails), the
/// socket gets the permissions of `-a`, and the loops share it.
fn unix_listener(
    path: &std::path::Path,
    mask: u32,
    backlog: i32,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    s.bind(&socket2::SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask & 0o777))?;
    s.listen(backlog)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// `-d`: detach as memcached does (fork, new session, stdio to /dev/null
/// unless verbose; stay in the working directory with `-r` so cores land
/// there). Before any thread exists.
fn daemonize(cfg: &Config) -> Result<(), String> {
    let nochdir = cfg.enable_coredumps as libc::c_int;
    let noclose = (cfg.verbose > 0) as libc::c_int;
    // SAFETY: called from the only thread of the process, before any other
    // thread or runtime exists; daemon(3) forks and the parent exits.
    if unsafe { libc::daemon(nochdir, noclose) } != 0 {
        return Err(format!(
            "failed to daemon() in order to daemonize: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `-r` and `-k`, with memcached's warnings when they fail.
fn process_limits(cfg: &Config) {
    if cfg.enable_coredumps {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid rlimit we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_CORE, &mut rl) == 0 {
                rl.rlim_cur = rl.rlim_max;
                if libc::setrlimit(libc::RLIMIT_CORE, &rl) != 0 {
                    eprintln!("failed to ensure corefile creation");
                }
            }
        }
    }
    if cfg.lock_memory {
        // SAFETY: mlockall has no memory-safety preconditions.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            eprintln!(
                "warning: -k invalid, mlockall() failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Slab pages (64 KiB to 1 MiB), large items (above half a page: 32 KiB and
/// up) and grown connection buffers are big heap blocks, freed on one loop
/// and allocated on another. With glibc's default of one heap per thread,
/// each loop's heap kept what the others freed into it, and freed blocks
/// stay resident: memory given back between shards and classes kept RSS
/// well above `-m`. So, at start-up (before any thread exists), the process
/// gets one heap (`M_ARENA_MAX` 1; only those big blocks are allocated while
/// serving, so its lock is rarely contended), and loop 0's ticker hands the
/// heap's whole free pages back to the system once a second
/// (`return_freed_memory`). Measured at `-m 64 -t 2` (nothing pinned), 50
/// connections overwriting 3000 items of 50 KB, 1:1 gets (corecached-bench,
/// 8 s, 3 alternating rounds, memcached `-t 2` beside): one heap + trim
/// 77.1-77.2 MB RSS at 14.4-16.7 µs of server CPU per op; default heaps
/// (`MALLOC_ARENA_MAX=8`) + trim 91-116 MB at 14.4-16.8 µs; memcached
/// 72.7 MB at 12.7-13.6 µs. (A fixed
/// 32 KiB mmap threshold, tried first, kept RSS at 73 MB but made every
/// large item an mmap and a munmap whose TLB shootdowns interrupt the other
/// loops: 44 µs per op at half the ops/s.) An operator's `MALLOC_ARENA_MAX`
/// wins.
fn one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tunables; called before any
        // thread of ours exists, and 1 is a valid arena count.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

/// How often loop 0's ticker hands freed heap memory back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Return the heap's whole free pages to the system (see [`one_heap`]). It
/// holds the heap's lock while it walks the free blocks: 0.3-0.5 ms a call
/// at `-m 1024` under 50 connections of 50 B-60 KB sets and gets, once a
/// second.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it takes the heap's own lock
    // while it releases the heap's free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SO_REUSEPORT would let a second server (same user) share the port and
/// silently split the traffic: refuse, as memcached does, by binding a plain
/// socket first. Only if that succeeds is the port free for our own set.
fn port_is_free(addr: SocketAddr) -> std::io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    Ok(())
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed cpu_set_t we own, of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        let v: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&i| libc::CPU_ISSET(i, &set))
            .collect();
        if v.is_empty() {
            vec![0]
        } else {
            v
        }
    }
}

/// Block SIGTERM/SIGINT in the calling thread (inherited by threads it
/// spawns) and wait for them on a dedicated thread.
fn start_signal_thread(shared: Arc<Shared>) {
    // SAFETY: plain libc signal-mask calls on a local sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            loop {
                // SAFETY: sigwait on a valid, initialised set with a valid out pointer.
                unsafe { libc::sigwait(&set, &mut sig) };
                if sig != libc::SIGHUP {
                    break;
                }
                // SIGHUP: new TLS certificates for new connections.
                if let Some(t) = &shared.tls {
                    match t.reload(time::now()) {
                        Ok(()) => log(
                            &shared.config,
                            1,
                            format_args!("SIGHUP: certificates reloaded"),
                        ),
                        Err(e) => eprintln!("SIGHUP: certificates not reloaded: {e}"),
                    }
                }
            }
            log(
                &shared.config,
                1,
                format_args!("signal {sig}: shutting down"),
            );
            notify::stopping(&format!("signal {sig}"));
            shared.shutdown.store(true, Ordering::SeqCst);
        })
        .expect("spawn signal thread");
}

/// Drop root privileges to `-u user`, as memcached does.
fn drop_privileges(cfg: &Config) -> Result<(), String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(());
    }
    let Some(user) = cfg.user.as_deref() else {
        return Ok(());
    };
    if user == "root" {
        return Ok(());
    }
    let name = std::ffi::CString::new(user).map_err(|_| "bad user name".to_string())?;
    // SAFETY: getpwnam with a valid C string; the result is checked for null and
    // read before any other passwd call.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!("can't find the user {user} to switch to"));
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(format!("failed to assume identity of user {user}"));
        }
    }
    Ok(())
}

/// Run the server until shutdown. Returns the process exit code.
pub fn run(config: Config) -> i32 {
    time::init();
    ops::init(&config);
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    if config.daemonize {
        if let Err(e) = daemonize(&config) {
            eprintln!("{e}");
            return EX_OSERR;
        }
    }
    process_limits(&config);
    one_heap();
    let tls = match &config.tls {
        None => None,
        Some(t) => match tls::Tls::load(t, time::now()) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("{e}");
                return crate::config::EX_USAGE;
            }
        },
    };
    let threads = config.threads;
    // memcached: a unix socket replaces the TCP listeners.
    let tcp: Vec<(SocketAddr, bool)> = if config.unix_socket.is_some() {
        Vec::new()
    } else {
        config
            .listen
            .iter()
            .map(|l| {
                let addr = SocketAddr::new(l.ip, l.port.unwrap_or(config.port));
                (addr, config.tls.is_some() && !l.notls)
            })
            .collect()
    };
    let unix = match &config.unix_socket {
        None => None,
        Some(path) => match unix_listener(path, config.unix_mask, config.backlog) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("failed to listen on UNIX socket: {}: {e}", path.display());
                return EX_OSERR;
            }
        },
    };
    for (addr, _) in &tcp {
        if let Err(e) = port_is_free(*addr) {
            eprintln!("failed to listen on {addr}: {e}");
            return EX_OSERR;
        }
    }
    let mut listeners: Vec<Listeners> = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut mine = Listeners::default();
        if let Some(u) = &unix {
            match u.try_clone() {
                Ok(u) => mine.unix = Some(u),
                Err(e) => {
                    eprintln!("failed to listen on UNIX socket: {e}");
                    return EX_OSERR;
                }
            }
        }
        for (addr, tls) in &tcp {
            match listener(*addr, config.backlog) {
                Ok(l) => mine.tcp.push((l, *tls)),
                Err(e) => {
                    eprintln!("failed to listen on {addr}: {e}");
                    return EX_OSERR;
                }
            }
        }
        listeners.push(mine);
    }
    if let Err(e) = drop_privileges(&config) {
        eprintln!("{e}");
        return EX_OSERR;
    }
    // Removed when `run` returns, whichever way: every exit of the process
    // goes through here (no loop thread exits the process itself).
    let _pidfile = config.pidfile.as_deref().and_then(PidFile::write);
    let uring = match config.io_driver {
        IoDriver::Auto => monoio::utils::detect_uring(),
        IoDriver::IoUring => {
            if !monoio::utils::detect_uring() {
                eprintln!("io_uring is not available here (blocked or unsupported); use --io-driver epoll");
                return EX_OSERR;
            }
            true
        }
        IoDriver::Epoll => false,
    };
    let driver = if uring { "io_uring" } else { "epoll" };
    let pins = loop_cpus(config.pin, threads, &allowed_cpus());
    let pinning = if pins.iter().all(Option::is_some) {
        let list: Vec<String> = pins.iter().flatten().map(|c| c.to_string()).collect();
        format!("pinned to CPU {}", list.join(","))
    } else {
        "not pinned".to_string()
    };
    eprintln!(
        "corecached {} listening on {:?} port {} with {} event loop(s), {} driver, {}, {} MiB",
        env!("CARGO_PKG_VERSION"),
        config.listen,
        config.port,
        threads,
        driver,
        pinning,
        config.memory_limit >> 20
    );
    let mut store_config = StoreConfig::for_server(
        config.memory_limit,
        threads,
        config.max_item_size,
        config.no_evict,
        config.chunk_size,
        config.growth_factor,
    );
    // Replication partners must differ in the HLC host bit.
    store_config.host_bit = crate::replication::host_bit(config.replication.as_deref());
    let store = Store::new(store_config);
    store.set_automove(config.ext.slab_automove);
    if store.shard_count() < threads {
        eprintln!(
            "note: -m {} MiB is shared by {} shard(s) for {} event loops (each shard needs {} MiB \
             to keep its hit ratio; give -m {} or more for one shard per loop)",
            config.memory_limit >> 20,
            store.shard_count(),
            threads,
            crate::store::MIN_SHARD_MEM >> 20,
            (crate::store::MIN_SHARD_MEM * threads) >> 20,
        );
    }
    let replication = match config.replication.as_ref() {
        None => None,
        Some(rc) => match crate::replication::Replication::start(rc, &store) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("{e}");
                return 71; // EX_OSERR
            }
        },
    };
    let shared = Arc::new(Shared::new(config, store, threads, tls, replication));
    for l in &listeners {
        for (t, _) in &l.tcp {
            shared.conn_table.add_listener(t.as_raw_fd());
        }
        if let Some(u) = &l.unix {
            shared.conn_table.add_listener(u.as_raw_fd());
        }
    }
    start_signal_thread(shared.clone());
    notify::start_watchdog(shared.clone());
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(id, ls)| {
            let shared = shared.clone();
            let cpu = pins[id];
            std::thread::Builder::new()
                .name(format!("loop-{id}"))
                .spawn(move || event_loop(id, cpu, uring, shared, ls))
                .expect("spawn event loop")
        })
        .collect();
    let mut code = EX_OK;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(())) => code = code.max(EX_OSERR),
            Err(_) => code = code.max(EX_SOFTWARE),
        }
    }
    code
}

/// The `-P` pid file: written at start-up, removed when dropped.
struct PidFile(String);

impl PidFile {
    /// Write our PID to `path`; None (after saying why) if that fails.
    fn write(path: &str) -> Option<PidFile> {
        match std::fs::write(path, format!("{}\n", std::process::id())) {
            Ok(()) => Some(PidFile(path.to_string())),
            Err(e) => {
                eprintln!("could not write pid file {path}: {e}");
                None
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The io_uring set-up: one thread submits to the ring (SINGLE_ISSUER) and
/// completion work runs only when the loop waits for completions
/// (DEFER_TASKRUN), instead of interrupting the loop with a task-work IPI
/// after every socket event. Profile of the text 50-connection row
/// (docs/BENCHMARKS.md): task_work_run + reschedule IPIs ~6 % of server CPU
/// without it, ~1.6 % with it. Needs Linux 6.1; older kernels get a plain
/// ring (see `event_loop`).
fn uring_builder(deferred: bool) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if deferred {
        b.setup_single_issuer();
        b.setup_defer_taskrun();
    }
    b
}

/// Which CPU each loop is pinned to, if any. `auto` pins one loop per CPU
/// when there are no more loops than CPUs the process may run on (measured:
/// with the machine shared with other work, pinned loops serve 1.5-2x the
/// ops/s of unpinned ones at a lower p99; docs/ARCHITECTURE.md), and never
/// pins two loops to one CPU.
fn loop_cpus(pin: Pin, threads: usize, cpus: &[usize]) -> Vec<Option<usize>> {
    let pin = match pin {
        Pin::Never => false,
        Pin::Always => true,
        Pin::Auto => threads <= cpus.len(),
    };
    (0..threads)
        .map(|id| pin.then(|| cpus[id % cpus.len()]))
        .collect()
}

/// One event loop thread. Err if its runtime cannot be built: the other
/// loops are told to shut down, and `run` returns `EX_OSERR`.
fn event_loop(
    id: usize,
    cpu: Option<usize>,
    uring: bool,
    shared: Arc<Shared>,
    listeners: Listeners,
) -> Result<(), ()> {
    if let Some(cpu) = cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            log(
                &shared.config,
                1,
                format_args!("loop {id}: could not pin to cpu {cpu}: {e:?}"),
            );
        }
    }
    let built = if uring {
        let build = |deferred| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(1024)
                .uring_builder(uring_builder(deferred))
                .build()
        };
        // Kernels before 6.1 refuse DEFER_TASKRUN: fall back to a plain ring.
        build(true)
            .or_else(|_| build(false))
            .map(|mut rt| rt.block_on(serve_loop(id, shared.clone(), listeners)))
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(serve_loop(id, shared.clone(), listeners)))
    };
    built.map_err(|e| {
        eprintln!("loop {id}: cannot build runtime: {e}");
        shared.shutdown.store(true, Ordering::SeqCst);
    })
}

/// One event loop: accept, serve, tick, and shut down.
async fn serve_loop(id: usize, shared: Arc<Shared>, listeners: Listeners) {
    // From here on this thread's time::now() is the clock as of the last
    // tick below (requests do not each read the clock).
    time::refresh();
    let worker = Rc::new(Worker {
        id,
        shared: shared.clone(),
        conns: RefCell::new(HashSet::new()),
    });
    let canceller = monoio::io::Canceller::new();
    let mut accepts = Vec::new();
    if let Some(u) = listeners.unix {
        match monoio::net::UnixListener::from_std(u) {
            Ok(l) => {
                let (w, cancel) = (worker.clone(), canceller.handle());
                accepts.push(monoio::spawn(async move {
                    if crate::replication::warm_up(&w.shared).await {
                        conn::accept_unix_loop(l, w, cancel).await;
                    }
                }));
            }
            Err(e) => eprintln!("loop {id}: unix listener: {e}"),
        }
    }
    for (l, tls) in listeners.tcp {
        let l = match monoio::net::TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("loop {id}: listener: {e}");
                continue;
            }
        };
        let (w, cancel) = (worker.clone(), canceller.handle());
        accepts.push(monoio::spawn(async move {
            // Warm rejoin: clients only once filled from the partner.
            if crate::replication::warm_up(&w.shared).await {
                conn::accept_loop(l, tls, w, cancel).await;
            }
        }));
    }
    crate::replication::spawn_tasks(id, &shared);
    // Ticker: background work on the owned shard (expiry, index growth,
    // flush sweep, slab moves), one bounded slice (~100-200 µs under the
    // shard lock) per wake-up: every 100 ms when idle, every 1 ms while
    // work is waiting, so I/O runs between slices. Also watches shutdown.
    // With fewer shards than loops (small -m), loop i drives shard i and
    // the other loops only watch shutdown.
    // Ready for systemd once this loop's listeners accept clients: after a
    // warm rejoin from the partner, when there is one.
    {
        let shared = shared.clone();
        monoio::spawn(async move {
            if crate::replication::warm_up(&shared).await {
                notify::loop_ready(&shared);
            }
        });
    }
    let mut busy = false;
    let owns_shard = id < shared.store.shard_count();
    let mut trimmed = std::time::Instant::now();
    while !shared.shutdown.load(Ordering::Relaxed) {
        let pause = if busy { 1 } else { 100 };
        monoio::time::sleep(Duration::from_millis(pause)).await;
        // This loop's requests read the time the tick sets (time::now).
        let now = time::refresh();
        shared.heartbeats[id].store(notify::mono_ms(), Ordering::Relaxed);
        if owns_shard {
            busy = shared.store.lock_shard(id).tick(now);
        }
        if id == 0 && trimmed.elapsed() >= TRIM_EVERY {
            trimmed = std::time::Instant::now();
            return_freed_memory();
        }
    }
    let _ = canceller.cancel();
    for a in accepts {
        a.await;
    }
    for &fd in worker.conns.borrow().iter() {
        // SAFETY: fd is an open socket owned by one of this loop's
        // connections (removed from the set before it is closed).
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    // Let connections answer what they have read, bounded in time.
    for _ in 0..100 {
        if worker.conns.borrow().is_empty() {
            break;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
        time::refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_one_loop_per_cpu_only_when_loops_fit() {
        let cpus = [2, 5];
        assert_eq!(loop_cpus(Pin::Auto, 1, &cpus), vec![Some(2)]);
        assert_eq!(loop_cpus(Pin::Auto, 2, &cpus), vec![Some(2), Some(5)]);
        assert_eq!(loop_cpus(Pin::Auto, 3, &cpus), vec![None; 3]);
        assert_eq!(loop_cpus(Pin::Never, 1, &cpus), vec![None]);
        assert_eq!(
            loop_cpus(Pin::Always, 3, &cpus),
            vec![Some(2), Some(5), Some(2)]
        );
    }
}
