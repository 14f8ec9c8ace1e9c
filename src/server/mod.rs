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
pub mod exec;
mod meta_exec;
#[cfg(test)]
mod seam_tests;
mod stats_cmd;

use crate::config::{Config, IoDriver, Pin};
use crate::stats::Stats;
use crate::store::{Store, StoreConfig};
use crate::time;
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    /// Partner replication, when `--partner` or `--replication-listen`.
    pub replication: Option<crate::replication::Replication>,
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
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
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
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait on a valid, initialised set with a valid out pointer.
            unsafe { libc::sigwait(&set, &mut sig) };
            log(
                &shared.config,
                1,
                format_args!("signal {sig}: shutting down"),
            );
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
    let threads = config.threads;
    for ip in &config.listen {
        if let Err(e) = port_is_free(SocketAddr::new(*ip, config.port)) {
            eprintln!("failed to listen on {ip} port {}: {e}", config.port);
            return 71; // EX_OSERR
        }
    }
    let mut listeners: Vec<Vec<std::net::TcpListener>> = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut mine = Vec::new();
        for ip in &config.listen {
            match listener(SocketAddr::new(*ip, config.port)) {
                Ok(l) => mine.push(l),
                Err(e) => {
                    eprintln!("failed to listen on {ip} port {}: {e}", config.port);
                    return 71; // EX_OSERR
                }
            }
        }
        listeners.push(mine);
    }
    if let Err(e) = drop_privileges(&config) {
        eprintln!("{e}");
        return 71;
    }
    if let Some(p) = &config.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("could not write pid file {p}: {e}");
        }
    }
    let uring = match config.io_driver {
        IoDriver::Auto => monoio::utils::detect_uring(),
        IoDriver::IoUring => {
            if !monoio::utils::detect_uring() {
                eprintln!("io_uring is not available here (blocked or unsupported); use --io-driver epoll");
                return 71;
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
    let shared = Arc::new(Shared {
        replication,
        store,
        stats: Stats::new(threads),
        shutdown: AtomicBool::new(false),
        verbosity: AtomicU32::new(config.verbose as u32),
        config,
    });
    start_signal_thread(shared.clone());
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
    let mut code = 0;
    for h in handles {
        if h.join().is_err() {
            code = 70; // EX_SOFTWARE
        }
    }
    if let Some(p) = &shared.config.pidfile {
        let _ = std::fs::remove_file(p);
    }
    code
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

fn event_loop(
    id: usize,
    cpu: Option<usize>,
    uring: bool,
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
) {
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
            .map(|mut rt| rt.block_on(serve_loop(id, shared, listeners)))
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(serve_loop(id, shared, listeners)))
    };
    if let Err(e) = built {
        eprintln!("loop {id}: cannot build runtime: {e}");
        std::process::exit(71);
    }
}

/// One event loop: accept, serve, tick, and shut down.
async fn serve_loop(id: usize, shared: Arc<Shared>, listeners: Vec<std::net::TcpListener>) {
    let worker = Rc::new(Worker {
        id,
        shared: shared.clone(),
        conns: RefCell::new(HashSet::new()),
    });
    let canceller = monoio::io::Canceller::new();
    let mut accepts = Vec::new();
    for l in listeners {
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
                conn::accept_loop(l, w, cancel).await;
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
    let mut busy = false;
    let owns_shard = id < shared.store.shard_count();
    while !shared.shutdown.load(Ordering::Relaxed) {
        let pause = if busy { 1 } else { 100 };
        monoio::time::sleep(Duration::from_millis(pause)).await;
        if owns_shard {
            busy = shared.store.lock_shard(id).tick(time::now());
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
