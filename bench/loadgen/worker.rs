//! One client thread: an epoll loop over many non-blocking connections, each keeping up to
//! `pipeline` requests in flight (closed loop, or on an open-loop schedule with --rate).
//! Every reply is parsed and checked; anything unexpected is an error.

use crate::config::{Config, KeyPattern, Protocol};
use crate::keys::{put_key, Rng, Zipf};
use crate::tls::Io;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PH_POPULATE: u8 = 0;
pub const PH_WARMUP: u8 = 1;
pub const PH_MEASURE: u8 = 2;
pub const PH_STOP: u8 = 3;

const POP_CHUNK: u64 = 64;
const MAX_BODY: usize = 128 << 20;
const MAX_LINE: usize = 8192;
const RBUF_INIT: usize = 64 << 10;

/// State shared by the main thread and the client threads.
pub struct Shared {
    pub phase: AtomicU8,
    /// Next key to hand out for --populate (keys 0..K) and --fill (unbounded).
    pub pop_next: AtomicU64,
    /// Threads that have finished the populate phase.
    pub pop_done: AtomicUsize,
    /// Threads connected and ready.
    pub ready: AtomicUsize,
    /// Threads that have used up their --requests budget.
    pub budget_done: AtomicUsize,
    /// An error occurred and --allow-errors is off: everyone stops.
    pub fatal: AtomicBool,
    /// First few error messages, for the report.
    pub samples: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            phase: AtomicU8::new(PH_POPULATE),
            pop_next: AtomicU64::new(0),
            pop_done: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            budget_done: AtomicUsize::new(0),
            fatal: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn sample(&self, msg: String) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < 10 {
            s.push(msg);
        }
    }
}

/// Figures of the measured window (reset when the measured phase starts).
pub struct Stats {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub gets: u64,
    pub mgets: u64,
    pub sets: u64,
    pub keys_requested: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            // 1 ns .. 1 h, 3 significant digits
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds"),
            ops: 0,
            gets: 0,
            mgets: 0,
            sets: 0,
            keys_requested: 0,
            hits: 0,
            misses: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        let _ = self.hist.add(&o.hist);
        self.ops += o.ops;
        self.gets += o.gets;
        self.mgets += o.mgets;
        self.sets += o.sets;
        self.keys_requested += o.keys_requested;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

pub struct ThreadResult {
    pub stats: Stats,
    /// Errors of the whole run (all phases), by kind.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Get,
    MGet,
    Set,
}

struct Pending {
    kind: Kind,
    nkeys: u32,
    /// Keys of this request already answered (text: scan cursor; meta: replies seen).
    seen: u32,
    opaque: u32,
    sent_ns: u64,
    failed: bool,
}

struct Conn {
    stream: Option<Io>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    want_out: bool,
    pending: VecDeque<Pending>,
    /// Key indices of all pending requests, in request order.
    keys: VecDeque<u64>,
    opaque: u32,
    cycle: u32,
    seq_next: u64,
    seq_start: u64,
    seq_len: u64,
    miss_queue: VecDeque<u64>,
    budget: u64,
    next_due: u64,
    last_progress: u64,
    pop_next: u64,
    pop_end: u64,
    pop_exhausted: bool,
    reconnect_at: Option<u64>,
}

/// What one parsed reply element does to the front pending request.
enum Act {
    /// Text/binary-quiet: the key at this position of the request hit; the ones skipped missed.
    HitAt(u32),
    /// Meta / binary single: the next key of the request hit or missed.
    Next(bool),
    /// END / NOOP: the request is complete, unanswered keys missed.
    End,
    /// STORED / HD / binary SET ok.
    Stored,
    /// An error reply (kind, the reply line); `then` says how it advances the request.
    ErrReply(String, String, Then),
}

#[derive(Clone, Copy)]
enum Then {
    Complete,
    NextKey,
    Nothing,
}

struct ConnErr {
    kind: &'static str,
    detail: String,
}

fn cerr(kind: &'static str, detail: impl Into<String>) -> ConnErr {
    ConnErr {
        kind,
        detail: detail.into(),
    }
}

/// Thread-wide context used while servicing connections.
struct Ctx<'a> {
    cfg: &'a Config,
    shared: &'a Shared,
    tid: usize,
    rng: Rng,
    zipf: Option<Zipf>,
    stats: Stats,
    errors: BTreeMap<String, u64>,
    phase: u8,
    measuring: bool,
    scratch: Vec<u8>,
    value: Vec<u8>,
    epoch: Instant,
    interval_ns: Option<u64>,
    depth: usize,
}

impl Ctx<'_> {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn error(&mut self, kind: &str, detail: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
        self.shared
            .sample(format!("thread {}: {kind}: {detail}", self.tid));
        if !self.cfg.allow_errors {
            self.shared.fatal.store(true, SeqCst);
        }
    }

    /// The size of the next value set under key `k`.
    fn vsize(&mut self, k: u64) -> usize {
        if self.cfg.vmin == self.cfg.vmax {
            self.cfg.vmin
        } else if self.cfg.value_per_key {
            let span = (self.cfg.vmax - self.cfg.vmin + 1) as u64;
            self.cfg.vmin + (mix64(k) % span) as usize
        } else {
            self.cfg.vmin + self.rng.below((self.cfg.vmax - self.cfg.vmin + 1) as u64) as usize
        }
    }
}

/// splitmix64's finaliser: a key index to a well-spread 64-bit value.
pub fn mix64(k: u64) -> u64 {
    let mut x = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value bytes: every value is a prefix of this pattern, so hits can be checked.
pub fn value_pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + i / 26) % 26) as u8)
        .collect()
}

/// Opens one connection (with --tls: and runs the handshake), non-blocking.
pub fn connect(cfg: &Config) -> io::Result<Io> {
    let t = Duration::from_secs_f64(cfg.timeout);
    let s = TcpStream::connect_timeout(&cfg.addr, t)?;
    s.set_nodelay(true)?;
    let io = match &cfg.tls {
        None => Io::Plain(s),
        Some(setup) => Io::Tls(Box::new(setup.handshake(s, t)?)),
    };
    match &io {
        Io::Plain(s) => s.set_nonblocking(true)?,
        Io::Tls(t) => t.set_nonblocking()?,
    }
    Ok(io)
}

struct Epoll(i32);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: the buffer is valid for events.len() entries.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        if n < 0 {
            0
        } else {
            n as usize
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe {
            libc::close(self.0);
        }
    }
}

const EV_IN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const EV_OUT: u32 = libc::EPOLLOUT as u32;

/// Runs one client thread until the STOP phase (or a fatal error).
pub fn run_thread(tid: usize, cfg: &Config, shared: &Shared) -> ThreadResult {
    let total_conns = cfg.total_conns() as u64;
    let mut x = Ctx {
        cfg,
        shared,
        tid,
        rng: Rng::new(
            cfg.seed
                .wrapping_add((tid as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
        ),
        zipf: (cfg.pattern == KeyPattern::Zipf).then(|| Zipf::new(cfg.keys, cfg.zipf_s)),
        stats: Stats::new(),
        errors: BTreeMap::new(),
        phase: PH_POPULATE,
        measuring: false,
        scratch: Vec::with_capacity(512),
        value: value_pattern(cfg.vmax),
        epoch: Instant::now(),
        interval_ns: cfg
            .rate
            .map(|r| ((total_conns as f64) * 1e9 / r).max(1.0) as u64),
        depth: cfg.pipeline.max(32), // the populate phase comes first
    };
    let ep = match Epoll::new() {
        Ok(e) => e,
        Err(e) => {
            x.error("setup", &format!("epoll_create: {e}"));
            return ThreadResult {
                stats: x.stats,
                errors: x.errors,
            };
        }
    };

    // Connect everything first; a refused connection is fatal whatever --allow-errors says.
    let mut conns: Vec<Conn> = Vec::with_capacity(cfg.conns);
    let now = x.now();
    for i in 0..cfg.conns {
        let gidx = (tid * cfg.conns + i) as u64;
        let slice = (cfg.keys / total_conns).max(1);
        let seq_start = (gidx * slice) % cfg.keys;
        let budget = cfg.requests.map_or(u64::MAX, |n| {
            n / total_conns + u64::from(gidx < n % total_conns)
        });
        let stream = match connect(cfg) {
            Ok(s) => s,
            Err(e) => {
                *x.errors.entry("connect".into()).or_insert(0) += 1;
                shared.sample(format!("thread {tid}: connect {}: {e}", cfg.addr));
                shared.fatal.store(true, SeqCst);
                return ThreadResult {
                    stats: x.stats,
                    errors: x.errors,
                };
            }
        };
        if let Err(e) = ep.ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), EV_IN, i as u64) {
            x.error("setup", &format!("epoll_ctl: {e}"));
            return ThreadResult {
                stats: x.stats,
                errors: x.errors,
            };
        }
        conns.push(Conn {
            stream: Some(stream),
            rbuf: vec![0; RBUF_INIT],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(16 << 10),
            wpos: 0,
            want_out: false,
            pending: VecDeque::with_capacity(cfg.pipeline * 2),
            keys: VecDeque::with_capacity(cfg.pipeline * cfg.multiget * 2),
            opaque: 1,
            cycle: x.rng.below(u64::from(cfg.set_r + cfg.get_r)) as u32,
            seq_next: seq_start,
            seq_start,
            seq_len: slice.min(cfg.keys),
            miss_queue: VecDeque::new(),
            budget,
            next_due: 0,
            last_progress: now,
            pop_next: 0,
            pop_end: 0,
            pop_exhausted: false,
            reconnect_at: None,
        });
    }
    shared.ready.fetch_add(1, SeqCst);

    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut pop_signalled = false;
    let mut budget_signalled = false;
    let mut last_sweep = 0u64;
    let mut stop_deadline = u64::MAX;
    let timeout_ns = (cfg.timeout * 1e9) as u64;
    let mut kick = true;

    loop {
        if shared.fatal.load(Relaxed) {
            break;
        }
        let phase = shared.phase.load(Acquire);
        if phase != x.phase {
            let now = x.now();
            if phase >= PH_WARMUP && x.phase < PH_WARMUP {
                if let Some(iv) = x.interval_ns {
                    for c in conns.iter_mut() {
                        c.next_due = now + x.rng.below(iv);
                    }
                }
            }
            if phase == PH_MEASURE {
                x.stats = Stats::new();
                x.measuring = true;
            }
            if phase == PH_STOP {
                x.measuring = false;
                stop_deadline = now + timeout_ns;
            }
            x.phase = phase;
            // populate is not measured: keep plenty in flight so it is quick
            x.depth = if phase == PH_POPULATE {
                cfg.pipeline.max(32)
            } else {
                cfg.pipeline
            };
            kick = true;
        }
        if kick || x.interval_ns.is_some() {
            kick = false;
            let now = x.now();
            for (i, c) in conns.iter_mut().enumerate() {
                service(&ep, i, c, &mut x, now, false);
            }
        }

        let mut wait_ms = 10;
        if let Some(iv) = x.interval_ns {
            if x.phase == PH_WARMUP || x.phase == PH_MEASURE {
                let now = x.now();
                let due = conns
                    .iter()
                    .filter(|c| c.stream.is_some() && c.pending.len() < x.depth && c.budget > 0)
                    .map(|c| c.next_due)
                    .min()
                    .unwrap_or(now + iv);
                wait_ms = (due.saturating_sub(now) / 1_000_000).min(10) as i32;
            }
        }
        let n = ep.wait(&mut events, wait_ms);
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            let flags = ev.events;
            let now = x.now();
            let c = &mut conns[i];
            if c.stream.is_none() {
                continue;
            }
            if flags & EV_OUT != 0 {
                if let Err(e) = flush(&ep, i, c, &mut x) {
                    conn_failed(&ep, c, &mut x, e, now);
                    continue;
                }
            }
            service(&ep, i, c, &mut x, now, flags & !EV_OUT != 0);
        }

        let now = x.now();
        if now.saturating_sub(last_sweep) > 50_000_000 {
            last_sweep = now;
            for (i, c) in conns.iter_mut().enumerate() {
                if c.stream.is_some() {
                    if !c.pending.is_empty() && now.saturating_sub(c.last_progress) > timeout_ns {
                        let e = cerr(
                            "timeout",
                            format!(
                                "no reply for {:.1} s with {} requests in flight",
                                cfg.timeout,
                                c.pending.len()
                            ),
                        );
                        conn_failed(&ep, c, &mut x, e, now);
                    }
                } else if c.reconnect_at.is_some_and(|t| now >= t) && x.phase != PH_STOP {
                    reconnect(&ep, i, c, &mut x, now);
                }
            }
            kick = true;
        }

        if x.phase == PH_POPULATE && !pop_signalled {
            let done = conns
                .iter()
                .all(|c| c.pending.is_empty() && (c.pop_exhausted || c.stream.is_none()));
            if done {
                pop_signalled = true;
                shared.pop_done.fetch_add(1, SeqCst);
            }
        }
        if cfg.requests.is_some() && x.phase == PH_MEASURE && !budget_signalled {
            let done = conns
                .iter()
                .all(|c| (c.budget == 0 || c.stream.is_none()) && c.pending.is_empty());
            if done {
                budget_signalled = true;
                shared.budget_done.fetch_add(1, SeqCst);
            }
        }
        if x.phase == PH_STOP {
            let idle = conns
                .iter()
                .all(|c| c.pending.is_empty() || c.stream.is_none());
            if idle {
                break;
            }
            if now > stop_deadline {
                for c in conns.iter_mut() {
                    if c.stream.is_some() && !c.pending.is_empty() {
                        let e = cerr("timeout", "no reply while draining at the end of the run");
                        conn_failed(&ep, c, &mut x, e, now);
                    }
                }
                break;
            }
        }
    }
    ThreadResult {
        stats: x.stats,
        errors: x.errors,
    }
}

/// Reads what is there, parses replies, refills the pipeline and writes.
fn service(ep: &Epoll, i: usize, c: &mut Conn, x: &mut Ctx, now: u64, readable: bool) {
    if c.stream.is_none() {
        return;
    }
    if readable {
        if let Err(e) = read_and_parse(c, x, now) {
            conn_failed(ep, c, x, e, now);
            return;
        }
    }
    fill_pipeline(c, x, now);
    if c.wpos < c.wbuf.len() && !c.want_out {
        if let Err(e) = flush(ep, i, c, x) {
            conn_failed(ep, c, x, e, now);
        }
    }
}

fn conn_failed(ep: &Epoll, c: &mut Conn, x: &mut Ctx, e: ConnErr, now: u64) {
    let lost = c.pending.len();
    let detail = if lost > 0 {
        format!("{} ({lost} requests lost)", e.detail)
    } else {
        e.detail
    };
    x.error(e.kind, &detail);
    if let Some(s) = c.stream.take() {
        let _ = ep.ctl(libc::EPOLL_CTL_DEL, s.as_raw_fd(), 0, 0);
    }
    c.pending.clear();
    c.keys.clear();
    c.rstart = 0;
    c.rend = 0;
    c.wbuf.clear();
    c.wpos = 0;
    c.want_out = false;
    c.reconnect_at = Some(now + 100_000_000);
}

fn reconnect(ep: &Epoll, i: usize, c: &mut Conn, x: &mut Ctx, now: u64) {
    match connect(x.cfg) {
        Ok(s) => {
            if ep
                .ctl(libc::EPOLL_CTL_ADD, s.as_raw_fd(), EV_IN, i as u64)
                .is_ok()
            {
                c.stream = Some(s);
                c.reconnect_at = None;
                c.last_progress = now;
            }
        }
        Err(e) => {
            x.error("connect", &format!("reconnect {}: {e}", x.cfg.addr));
            c.reconnect_at = Some(now + 100_000_000);
        }
    }
}

fn flush(ep: &Epoll, i: usize, c: &mut Conn, x: &mut Ctx) -> Result<(), ConnErr> {
    let Some(s) = c.stream.as_mut() else {
        return Ok(());
    };
    // TLS: records encrypted earlier and still waiting for the socket first
    s.send_pending().map_err(|e| io_err("write", e))?;
    while c.wpos < c.wbuf.len() {
        match s.write(&c.wbuf[c.wpos..]) {
            Ok(0) => return Err(cerr("conn_closed", "write returned 0")),
            Ok(n) => {
                c.wpos += n;
                if x.measuring {
                    x.stats.bytes_out += n as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("write", e)),
        }
    }
    let fd = s.as_raw_fd();
    if c.wpos == c.wbuf.len() {
        c.wbuf.clear();
        c.wpos = 0;
    }
    if c.wbuf.is_empty() && !s.pending_out() {
        if c.want_out {
            c.want_out = false;
            let _ = ep.ctl(libc::EPOLL_CTL_MOD, fd, EV_IN, i as u64);
        }
    } else if !c.want_out {
        c.want_out = true;
        let _ = ep.ctl(libc::EPOLL_CTL_MOD, fd, EV_IN | EV_OUT, i as u64);
    }
    Ok(())
}

fn io_err(op: &str, e: io::Error) -> ConnErr {
    let kind = match e.kind() {
        io::ErrorKind::ConnectionReset => "conn_reset",
        io::ErrorKind::BrokenPipe => "conn_reset",
        io::ErrorKind::ConnectionAborted => "conn_reset",
        _ => "io",
    };
    cerr(kind, format!("{op}: {e}"))
}

fn read_and_parse(c: &mut Conn, x: &mut Ctx, now: u64) -> Result<(), ConnErr> {
    loop {
        if c.rstart == c.rend {
            c.rstart = 0;
            c.rend = 0;
        }
        if c.rend == c.rbuf.len() {
            if c.rstart > 0 {
                c.rbuf.copy_within(c.rstart..c.rend, 0);
                c.rend -= c.rstart;
                c.rstart = 0;
            } else {
                let n = c.rbuf.len() * 2;
                c.rbuf.resize(n, 0);
            }
        }
        let space = c.rbuf.len() - c.rend;
        let Some(s) = c.stream.as_mut() else {
            return Ok(());
        };
        match s.read(&mut c.rbuf[c.rend..]) {
            Ok(0) => {
                return Err(cerr("conn_closed", "server closed the connection"));
            }
            Ok(n) => {
                c.rend += n;
                c.last_progress = now;
                if x.measuring {
                    x.stats.bytes_in += n as u64;
                }
                parse_all(c, x, now)?;
                if n < space {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", e)),
        }
    }
}

fn parse_all(c: &mut Conn, x: &mut Ctx, now: u64) -> Result<(), ConnErr> {
    while c.rstart < c.rend {
        let Some(front) = c.pending.front() else {
            let n = (c.rend - c.rstart).min(40);
            return Err(cerr(
                "protocol",
                format!(
                    "unsolicited bytes from the server: {:?}",
                    String::from_utf8_lossy(&c.rbuf[c.rstart..c.rstart + n])
                ),
            ));
        };
        let buf = &c.rbuf[c.rstart..c.rend];
        let parsed = match x.cfg.protocol {
            Protocol::Text => parse_text(buf, front, &c.keys, x),
            Protocol::Meta => parse_meta(buf, front, x),
            Protocol::Binary => parse_binary(buf, front, x),
        }?;
        let Some((used, act)) = parsed else {
            return Ok(());
        };
        c.rstart += used;
        apply(c, x, act, now);
    }
    Ok(())
}

fn key_result(c: &mut Conn, x: &mut Ctx, pos: usize, hit: bool) {
    if x.measuring {
        if hit {
            x.stats.hits += 1;
        } else {
            x.stats.misses += 1;
        }
    }
    if !hit && x.cfg.set_on_miss && x.phase != PH_STOP {
        if let Some(&k) = c.keys.get(pos) {
            c.miss_queue.push_back(k);
        }
    }
}

fn apply(c: &mut Conn, x: &mut Ctx, act: Act, now: u64) {
    let (nkeys, seen) = {
        let p = c.pending.front().expect("pending");
        (p.nkeys, p.seen)
    };
    match act {
        Act::HitAt(pos) => {
            for k in seen..pos {
                key_result(c, x, k as usize, false);
            }
            key_result(c, x, pos as usize, true);
            c.pending.front_mut().expect("pending").seen = pos + 1;
        }
        Act::Next(hit) => {
            key_result(c, x, seen as usize, hit);
            c.pending.front_mut().expect("pending").seen = seen + 1;
            if seen + 1 >= nkeys {
                complete(c, x, now);
            }
        }
        Act::End => {
            for k in seen..nkeys {
                key_result(c, x, k as usize, false);
            }
            complete(c, x, now);
        }
        Act::Stored => complete(c, x, now),
        Act::ErrReply(kind, line, then) => {
            x.error(&kind, &line);
            let p = c.pending.front_mut().expect("pending");
            p.failed = true;
            match then {
                Then::Complete => complete(c, x, now),
                Then::NextKey => {
                    p.seen = seen + 1;
                    if seen + 1 >= nkeys {
                        complete(c, x, now);
                    }
                }
                Then::Nothing => {}
            }
        }
    }
}

fn complete(c: &mut Conn, x: &mut Ctx, now: u64) {
    let p = c.pending.pop_front().expect("pending");
    for _ in 0..p.nkeys {
        c.keys.pop_front();
    }
    if x.measuring && !p.failed {
        x.stats.ops += 1;
        match p.kind {
            Kind::Get => x.stats.gets += 1,
            Kind::MGet => x.stats.mgets += 1,
            Kind::Set => x.stats.sets += 1,
        }
        if p.kind != Kind::Set {
            x.stats.keys_requested += u64::from(p.nkeys);
        }
        x.stats
            .hist
            .saturating_record(now.saturating_sub(p.sent_ns).max(1));
    }
}

/// Finds `\r\n`; returns the line without it and the bytes consumed.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ConnErr> {
    match memchr::memchr(b'\n', buf) {
        None if buf.len() > MAX_LINE => Err(cerr("protocol", "reply line too long")),
        None => Ok(None),
        Some(0) => Err(cerr("protocol", "bare \\n in reply")),
        Some(i) if buf[i - 1] != b'\r' => Err(cerr("protocol", "reply line not ended by \\r\\n")),
        Some(i) => Ok(Some((&buf[..i - 1], i + 1))),
    }
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(60)]);
    format!("{s:?}")
}

/// Error lines shared by text and meta.
fn error_line(l: &[u8], then: Then) -> Option<Act> {
    let kind = if l == b"ERROR" {
        "ERROR"
    } else if l.starts_with(b"CLIENT_ERROR") {
        "CLIENT_ERROR"
    } else if l.starts_with(b"SERVER_ERROR") {
        "SERVER_ERROR"
    } else {
        return None;
    };
    Some(Act::ErrReply(
        kind.into(),
        format!("reply {}", show(l)),
        then,
    ))
}

fn parse_num(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 12 {
        return None;
    }
    let mut v = 0usize;
    for &d in b {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + usize::from(d - b'0');
    }
    Some(v)
}

/// Checks a value's bytes (length range always; contents unless --no-verify).
fn check_value(data: &[u8], x: &Ctx) -> Result<(), ConnErr> {
    let n = data.len();
    if n < x.cfg.vmin || n > x.cfg.vmax {
        return Err(cerr(
            "value_mismatch",
            format!(
                "value of {n} bytes, expected {}..={}",
                x.cfg.vmin, x.cfg.vmax
            ),
        ));
    }
    if x.cfg.verify && data != &x.value[..n] {
        return Err(cerr(
            "value_mismatch",
            "value bytes differ from what was set",
        ));
    }
    Ok(())
}

type Parsed = Result<Option<(usize, Act)>, ConnErr>;

fn parse_text(buf: &[u8], front: &Pending, keys: &VecDeque<u64>, x: &mut Ctx) -> Parsed {
    let Some((l, used)) = line(buf)? else {
        return Ok(None);
    };
    if let Some(a) = error_line(l, Then::Complete) {
        return Ok(Some((used, a)));
    }
    match front.kind {
        Kind::Set => {
            if l == b"STORED" {
                Ok(Some((used, Act::Stored)))
            } else {
                Err(cerr(
                    "protocol",
                    format!("set: unexpected reply {}", show(l)),
                ))
            }
        }
        Kind::Get | Kind::MGet => {
            if l == b"END" {
                return Ok(Some((used, Act::End)));
            }
            let Some(rest) = l.strip_prefix(b"VALUE ") else {
                return Err(cerr(
                    "protocol",
                    format!("get: unexpected reply {}", show(l)),
                ));
            };
            let mut it = rest.split(|&b| b == b' ');
            let (Some(key), Some(_flags), Some(len)) = (it.next(), it.next(), it.next()) else {
                return Err(cerr("protocol", format!("bad VALUE line {}", show(l))));
            };
            let Some(len) = parse_num(len) else {
                return Err(cerr("protocol", format!("bad VALUE length {}", show(l))));
            };
            if len > MAX_BODY {
                return Err(cerr("protocol", "VALUE too large"));
            }
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            let data = &buf[used..used + len];
            if &buf[used + len..used + len + 2] != b"\r\n" {
                return Err(cerr("protocol", "value data not followed by \\r\\n"));
            }
            // The key must be one of this request's keys not yet answered, in order.
            let mut pos = None;
            for j in front.seen..front.nkeys {
                x.scratch.clear();
                put_key(
                    &mut x.scratch,
                    &x.cfg.key_prefix,
                    keys[j as usize],
                    x.cfg.key_pad,
                );
                if x.scratch == key {
                    pos = Some(j);
                    break;
                }
            }
            let Some(pos) = pos else {
                return Err(cerr(
                    "key_mismatch",
                    format!(
                        "VALUE for a key not requested (or out of order): {}",
                        show(key)
                    ),
                ));
            };
            check_value(data, x)?;
            Ok(Some((used + len + 2, Act::HitAt(pos))))
        }
    }
}

fn parse_meta(buf: &[u8], front: &Pending, x: &mut Ctx) -> Parsed {
    let Some((l, used)) = line(buf)? else {
        return Ok(None);
    };
    if let Some(a) = error_line(l, Then::NextKey) {
        return Ok(Some((used, a)));
    }
    match front.kind {
        Kind::Set => match l {
            b"HD" => Ok(Some((used, Act::Stored))),
            b"NS" | b"EX" | b"NF" => Ok(Some((
                used,
                Act::ErrReply(
                    format!("meta_{}", String::from_utf8_lossy(l)),
                    "ms not stored".into(),
                    Then::Complete,
                ),
            ))),
            _ => Err(cerr(
                "protocol",
                format!("ms: unexpected reply {}", show(l)),
            )),
        },
        Kind::Get | Kind::MGet => {
            if l == b"EN" || l.starts_with(b"EN ") {
                return Ok(Some((used, Act::Next(false))));
            }
            let Some(rest) = l.strip_prefix(b"VA ") else {
                return Err(cerr(
                    "protocol",
                    format!("mg: unexpected reply {}", show(l)),
                ));
            };
            let len_s = rest.split(|&b| b == b' ').next().unwrap_or(b"");
            let Some(len) = parse_num(len_s) else {
                return Err(cerr("protocol", format!("bad VA line {}", show(l))));
            };
            if len > MAX_BODY {
                return Err(cerr("protocol", "VA too large"));
            }
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            if &buf[used + len..used + len + 2] != b"\r\n" {
                return Err(cerr("protocol", "value data not followed by \\r\\n"));
            }
            check_value(&buf[used..used + len], x)?;
            Ok(Some((used + len + 2, Act::Next(true))))
        }
    }
}

const OP_GET: u8 = 0x00;
const OP_SET: u8 = 0x01;
const OP_GETQ: u8 = 0x09;
const OP_NOOP: u8 = 0x0a;

fn parse_binary(buf: &[u8], front: &Pending, x: &mut Ctx) -> Parsed {
    if buf.len() < 24 {
        return Ok(None);
    }
    if buf[0] != 0x81 {
        return Err(cerr(
            "protocol",
            format!("binary reply with magic 0x{:02x}, expected 0x81", buf[0]),
        ));
    }
    let opcode = buf[1];
    let keylen = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let extlen = usize::from(buf[4]);
    let status = u16::from_be_bytes([buf[6], buf[7]]);
    let body = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let opaque = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if body > MAX_BODY || keylen + extlen > body {
        return Err(cerr("protocol", "bad binary body length"));
    }
    if buf.len() < 24 + body {
        return Ok(None);
    }
    let used = 24 + body;
    let value = &buf[24 + extlen + keylen..used];
    let status_err = |then| {
        Ok(Some((
            used,
            Act::ErrReply(
                format!("binary_status_0x{status:04x}"),
                format!("opcode 0x{opcode:02x}: {}", show(value)),
                then,
            ),
        )))
    };
    let mismatch = |what: &str| {
        Err(cerr(
            "protocol",
            format!(
                "binary {what}: got opcode 0x{opcode:02x} opaque {opaque}, expected {:?} opaque {}",
                front.kind, front.opaque
            ),
        ))
    };
    match front.kind {
        Kind::Set => {
            if opcode != OP_SET || opaque != front.opaque {
                return mismatch("set reply out of order");
            }
            if status == 0 {
                Ok(Some((used, Act::Stored)))
            } else {
                status_err(Then::Complete)
            }
        }
        Kind::Get => {
            if opcode != OP_GET || opaque != front.opaque {
                return mismatch("get reply out of order");
            }
            match status {
                0 => {
                    check_value(value, x)?;
                    Ok(Some((used, Act::Next(true))))
                }
                1 => Ok(Some((used, Act::Next(false)))),
                _ => status_err(Then::Complete),
            }
        }
        Kind::MGet => {
            let base = front.opaque;
            if opcode == OP_NOOP {
                if opaque != base.wrapping_add(front.nkeys) {
                    return mismatch("noop reply out of order");
                }
                return Ok(Some((used, Act::End)));
            }
            let pos = opaque.wrapping_sub(base);
            if opcode != OP_GETQ || pos < front.seen || pos >= front.nkeys {
                return mismatch("getq reply out of order");
            }
            match status {
                0 => {
                    check_value(value, x)?;
                    Ok(Some((used, Act::HitAt(pos))))
                }
                _ => status_err(Then::Nothing),
            }
        }
    }
}

fn next_key(c: &mut Conn, x: &mut Ctx) -> u64 {
    match x.cfg.pattern {
        KeyPattern::Uniform => x.rng.below(x.cfg.keys),
        KeyPattern::Zipf => x.zipf.as_ref().expect("zipf").sample(&mut x.rng),
        KeyPattern::Sequential => {
            let k = c.seq_next;
            c.seq_next += 1;
            if c.seq_next >= c.seq_start + c.seq_len || c.seq_next >= x.cfg.keys {
                c.seq_next = c.seq_start;
            }
            k
        }
    }
}

/// Next key of the populate / fill sequence, None when the populate key space is used up.
fn next_pop_key(c: &mut Conn, x: &mut Ctx) -> Option<u64> {
    let cap = if x.cfg.fill { u64::MAX } else { x.cfg.keys };
    if c.pop_next >= c.pop_end {
        let start = x.shared.pop_next.fetch_add(POP_CHUNK, Relaxed);
        if start >= cap {
            c.pop_exhausted = true;
            return None;
        }
        c.pop_next = start;
        c.pop_end = start.saturating_add(POP_CHUNK).min(cap);
    }
    let k = c.pop_next;
    c.pop_next += 1;
    Some(k)
}

fn fill_pipeline(c: &mut Conn, x: &mut Ctx, now: u64) {
    if c.stream.is_none() || c.want_out {
        return;
    }
    while c.pending.len() < x.depth {
        let mut sent_ns = now;
        match x.phase {
            PH_POPULATE => {
                if !x.cfg.populate || c.pop_exhausted {
                    break;
                }
                let Some(k) = next_pop_key(c, x) else { break };
                enc_set(c, x, k, sent_ns);
                continue;
            }
            PH_WARMUP | PH_MEASURE => {}
            _ => break,
        }
        if x.phase == PH_MEASURE && c.budget == 0 {
            break;
        }
        if let Some(iv) = x.interval_ns {
            if c.next_due > now {
                break;
            }
            sent_ns = c.next_due;
            c.next_due += iv;
        }
        if x.phase == PH_MEASURE && c.budget != u64::MAX {
            c.budget -= 1;
        }
        if x.cfg.fill {
            let Some(k) = next_pop_key(c, x) else { break };
            enc_set(c, x, k, sent_ns);
            continue;
        }
        if let Some(k) = c.miss_queue.pop_front() {
            enc_set(c, x, k, sent_ns);
            continue;
        }
        let is_set = c.cycle < x.cfg.set_r;
        c.cycle += 1;
        if c.cycle >= x.cfg.set_r + x.cfg.get_r {
            c.cycle = 0;
        }
        if is_set {
            let k = next_key(c, x);
            enc_set(c, x, k, sent_ns);
        } else {
            enc_get(c, x, sent_ns);
        }
    }
}

fn push_pending(c: &mut Conn, kind: Kind, nkeys: u32, opaque: u32, sent_ns: u64) {
    if c.pending.is_empty() {
        c.last_progress = sent_ns.max(c.last_progress);
    }
    c.pending.push_back(Pending {
        kind,
        nkeys,
        seen: 0,
        opaque,
        sent_ns,
        failed: false,
    });
}

fn bin_header(buf: &mut Vec<u8>, opcode: u8, keylen: usize, extlen: u8, body: usize, opaque: u32) {
    buf.extend_from_slice(&[0x80, opcode]);
    buf.extend_from_slice(&(keylen as u16).to_be_bytes());
    buf.extend_from_slice(&[extlen, 0, 0, 0]);
    buf.extend_from_slice(&(body as u32).to_be_bytes());
    buf.extend_from_slice(&opaque.to_be_bytes());
    buf.extend_from_slice(&[0u8; 8]);
}

fn enc_set(c: &mut Conn, x: &mut Ctx, k: u64, sent_ns: u64) {
    let vlen = x.vsize(k);
    let (prefix, pad) = (&x.cfg.key_prefix, x.cfg.key_pad);
    let w = &mut c.wbuf;
    let opaque = c.opaque;
    match x.cfg.protocol {
        Protocol::Text => {
            w.extend_from_slice(b"set ");
            put_key(w, prefix, k, pad);
            w.extend_from_slice(b" 0 0 ");
            put_num(w, vlen);
            w.extend_from_slice(b"\r\n");
            w.extend_from_slice(&x.value[..vlen]);
            w.extend_from_slice(b"\r\n");
        }
        Protocol::Meta => {
            w.extend_from_slice(b"ms ");
            put_key(w, prefix, k, pad);
            w.push(b' ');
            put_num(w, vlen);
            w.extend_from_slice(b"\r\n");
            w.extend_from_slice(&x.value[..vlen]);
            w.extend_from_slice(b"\r\n");
        }
        Protocol::Binary => {
            x.scratch.clear();
            put_key(&mut x.scratch, prefix, k, pad);
            let kl = x.scratch.len();
            bin_header(w, OP_SET, kl, 8, 8 + kl + vlen, opaque);
            w.extend_from_slice(&[0u8; 8]); // flags, exptime
            w.extend_from_slice(&x.scratch);
            w.extend_from_slice(&x.value[..vlen]);
            c.opaque = c.opaque.wrapping_add(1);
        }
    }
    c.keys.push_back(k);
    push_pending(c, Kind::Set, 1, opaque, sent_ns);
}

fn enc_get(c: &mut Conn, x: &mut Ctx, sent_ns: u64) {
    let n = x.cfg.multiget;
    let kind = if n == 1 { Kind::Get } else { Kind::MGet };
    let opaque = c.opaque;
    let first = c.keys.len();
    for _ in 0..n {
        let k = next_key(c, x);
        c.keys.push_back(k);
    }
    let (prefix, pad) = (&x.cfg.key_prefix, x.cfg.key_pad);
    let w = &mut c.wbuf;
    match x.cfg.protocol {
        Protocol::Text => {
            w.extend_from_slice(b"get");
            for j in 0..n {
                w.push(b' ');
                put_key(w, prefix, c.keys[first + j], pad);
            }
            w.extend_from_slice(b"\r\n");
        }
        Protocol::Meta => {
            for j in 0..n {
                w.extend_from_slice(b"mg ");
                put_key(w, prefix, c.keys[first + j], pad);
                w.extend_from_slice(b" v\r\n");
            }
        }
        Protocol::Binary => {
            for j in 0..n {
                x.scratch.clear();
                put_key(&mut x.scratch, prefix, c.keys[first + j], pad);
                let kl = x.scratch.len();
                let op = if n == 1 { OP_GET } else { OP_GETQ };
                bin_header(w, op, kl, 0, kl, opaque.wrapping_add(j as u32));
                w.extend_from_slice(&x.scratch);
            }
            if n > 1 {
                bin_header(w, OP_NOOP, 0, 0, 0, opaque.wrapping_add(n as u32));
            }
            c.opaque = c.opaque.wrapping_add(n as u32 + 1);
        }
    }
    push_pending(c, kind, n as u32, opaque, sent_ns);
}

fn put_num(w: &mut Vec<u8>, v: usize) {
    put_key(w, b"", v as u64, 0);
}
