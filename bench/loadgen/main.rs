//! corecached-bench: a memtier-style load generator for memcached-compatible servers.
//!
//! Closed-loop clients on N threads × M connections, each keeping P requests in flight,
//! speaking ASCII text, binary or meta. Every reply is parsed and checked; errors make
//! the run fail (non-zero exit) unless --allow-errors. See docs/BENCHMARKS.md.

mod config;
mod json;
mod keys;
mod sys;
mod tls;
mod worker;

use clap::Parser;
use config::{Args, Config, KeyPattern, Protocol};
use json::J;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Shared, Stats, PH_MEASURE, PH_STOP, PH_WARMUP};

fn main() {
    let args = Args::parse();
    let code = match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corecached-bench: error: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Sleeps until `deadline`, returning early (false) if a fatal error occurred.
fn sleep_until(deadline: Instant, shared: &Shared) -> bool {
    loop {
        if shared.fatal.load(SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
    }
}

/// A blocking ASCII connection for `stats` (over TLS with --tls).
struct Control {
    s: Box<dyn ReadWrite>,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Control {
    fn connect(cfg: &Config) -> Result<Control, String> {
        let t = Duration::from_secs_f64(cfg.timeout);
        let s = TcpStream::connect_timeout(&cfg.addr, t)
            .map_err(|e| format!("connect {}: {e}", cfg.addr))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let s: Box<dyn ReadWrite> = match &cfg.tls {
            None => {
                s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
                Box::new(s)
            }
            Some(setup) => Box::new(
                setup
                    .handshake(s, t)
                    .and_then(|io| io.into_blocking(t))
                    .map_err(|e| format!("{}: {e}", cfg.addr))?,
            ),
        };
        Ok(Control { s })
    }

    fn stats(&mut self) -> Result<BTreeMap<String, String>, String> {
        self.s
            .write_all(b"stats\r\n")
            .map_err(|e| format!("stats: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        while !(buf.ends_with(b"END\r\n") || buf.ends_with(b"ERROR\r\n")) {
            let n = self.s.read(&mut chunk).map_err(|e| format!("stats: {e}"))?;
            if n == 0 {
                return Err("stats: connection closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 1 << 20 {
                return Err("stats: reply too long".into());
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let mut m = BTreeMap::new();
        for l in text.split("\r\n") {
            if l.is_empty() || l == "END" {
                continue;
            }
            let mut it = l.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("STAT"), Some(k), Some(v)) => {
                    m.insert(k.to_string(), v.to_string());
                }
                _ => return Err(format!("stats: unexpected line {l:?}")),
            }
        }
        Ok(m)
    }
}

fn stat_u64(m: &BTreeMap<String, String>, k: &str) -> Option<u64> {
    m.get(k).and_then(|v| v.parse().ok())
}

struct FillResult {
    items: u64,
    evictions: u64,
    bytes: Option<u64>,
    limit_maxbytes: Option<u64>,
    items_at_first_eviction: u64,
    sets_at_first_eviction: u64,
}

fn run(args: &Args) -> Result<i32, String> {
    let cfg = Arc::new(Config::from_args(args)?);
    let shared = Arc::new(Shared::new());
    let human_to_stderr = args.json.as_deref() == Some("-");

    // Fail fast and clearly when nothing listens (or, with --tls, when the
    // handshake fails); note what TLS was negotiated.
    let probe = TcpStream::connect_timeout(&cfg.addr, Duration::from_secs_f64(cfg.timeout))
        .map_err(|e| format!("cannot connect to {}: {e}", cfg.addr))?;
    let tls_session = match &cfg.tls {
        None => {
            drop(probe);
            None
        }
        Some(setup) => {
            let s = setup
                .handshake(probe, Duration::from_secs_f64(cfg.timeout))
                .map_err(|e| format!("{}: {e}", cfg.addr))?;
            let d = s.describe();
            s.close();
            Some(d)
        }
    };
    let mut control = if cfg.fill || args.server_stats {
        Some(Control::connect(&cfg)?)
    } else {
        None
    };
    let fill_base = match (&mut control, cfg.fill) {
        (Some(c), true) => {
            let st = c.stats()?;
            let ev =
                stat_u64(&st, "evictions").ok_or("--fill needs `stats` to report `evictions`")?;
            let sets = stat_u64(&st, "cmd_set").or_else(|| stat_u64(&st, "total_items"));
            Some((ev, sets.ok_or("--fill needs `stats` to report `cmd_set`")?))
        }
        _ => None,
    };

    let mut handles = Vec::new();
    for tid in 0..cfg.threads {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let h = std::thread::Builder::new()
            .name(format!("client-{tid}"))
            .spawn(move || worker::run_thread(tid, &cfg, &shared))
            .map_err(|e| format!("spawn: {e}"))?;
        handles.push(h);
    }
    let all_ready = || shared.ready.load(SeqCst) == cfg.threads;
    while !all_ready() && !shared.fatal.load(SeqCst) {
        if handles.iter().any(|h| h.is_finished()) && !all_ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut populate_s = None;
    if all_ready() && !shared.fatal.load(SeqCst) && cfg.populate && !cfg.fill {
        let t = Instant::now();
        while shared.pop_done.load(SeqCst) < cfg.threads && !shared.fatal.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        populate_s = Some(t.elapsed().as_secs_f64());
    }

    let mut window = None;
    let mut fill = None;
    let mut fill_err = None;
    if all_ready() && !shared.fatal.load(SeqCst) {
        if !cfg.fill {
            shared.phase.store(PH_WARMUP, SeqCst);
            sleep_until(
                Instant::now() + Duration::from_secs_f64(cfg.warmup),
                &shared,
            );
        }
        let cpu0 = args.server_pid.map(sys::proc_cpu_seconds);
        let (u0, s0) = sys::self_cpu_seconds();
        let t0 = Instant::now();
        shared.phase.store(PH_MEASURE, SeqCst);
        if cfg.fill {
            let (ev0, sets0) = fill_base.expect("fill base");
            let ctl = control.as_mut().expect("control");
            let limit = t0 + Duration::from_secs_f64(cfg.duration);
            let mut target = None;
            let mut first = (0, 0);
            loop {
                if !sleep_until(Instant::now() + Duration::from_millis(20), &shared) {
                    break;
                }
                let st = match ctl.stats() {
                    Ok(s) => s,
                    Err(e) => {
                        fill_err = Some(e);
                        break;
                    }
                };
                let ev = stat_u64(&st, "evictions").unwrap_or(0).saturating_sub(ev0);
                let sets = stat_u64(&st, "cmd_set")
                    .or_else(|| stat_u64(&st, "total_items"))
                    .unwrap_or(0)
                    .saturating_sub(sets0);
                if target.is_none() && ev > 0 {
                    first = (stat_u64(&st, "curr_items").unwrap_or(0), sets);
                    target = Some(sets + (sets as f64 * cfg.fill_extra) as u64);
                }
                if target.is_some_and(|t| sets >= t) {
                    break;
                }
                if Instant::now() > limit {
                    fill_err = Some(format!(
                        "--fill: no eviction after {:.0} s ({sets} sets): is the server's memory limit larger than intended?",
                        cfg.duration
                    ));
                    break;
                }
            }
            fill = Some(first);
        } else if cfg.requests.is_some() {
            while shared.budget_done.load(SeqCst) < cfg.threads && !shared.fatal.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            sleep_until(t0 + Duration::from_secs_f64(cfg.duration), &shared);
        }
        shared.phase.store(PH_STOP, SeqCst);
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = args.server_pid.map(sys::proc_cpu_seconds);
        let (u1, s1) = sys::self_cpu_seconds();
        let server_cpu = match (cpu0, cpu1) {
            (Some(Ok(a)), Some(Ok(b))) => Some(b - a),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                return Err(format!(
                    "cannot read /proc/{}/stat: {e}",
                    args.server_pid.unwrap_or(0)
                ))
            }
            _ => None,
        };
        window = Some((elapsed, (u1 - u0) + (s1 - s0), server_cpu));
    }
    shared.phase.store(PH_STOP, SeqCst);

    let mut stats = Stats::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        match h.join() {
            Ok(r) => {
                stats.merge(&r.stats);
                for (k, v) in r.errors {
                    *errors.entry(k).or_insert(0) += v;
                }
            }
            Err(_) => *errors.entry("client_panic".into()).or_insert(0) += 1,
        }
    }
    if let Some(e) = &fill_err {
        *errors.entry("fill".into()).or_insert(0) += 1;
        shared
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e.clone());
    }

    let rss = args.server_pid.and_then(|p| sys::proc_rss_bytes(p).ok());
    let server_stats = match control.as_mut() {
        Some(c) if args.server_stats || cfg.fill => match c.stats() {
            Ok(s) => Some(s),
            Err(e) => {
                *errors.entry("stats".into()).or_insert(0) += 1;
                shared
                    .samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(e);
                None
            }
        },
        _ => None,
    };
    let fill = match (fill, &server_stats) {
        (Some((items0, sets0)), Some(st)) if fill_err.is_none() => Some(FillResult {
            items: stat_u64(st, "curr_items").unwrap_or(0),
            evictions: stat_u64(st, "evictions")
                .unwrap_or(0)
                .saturating_sub(fill_base.map_or(0, |b| b.0)),
            bytes: stat_u64(st, "bytes"),
            limit_maxbytes: stat_u64(st, "limit_maxbytes"),
            items_at_first_eviction: items0,
            sets_at_first_eviction: sets0,
        }),
        _ => None,
    };

    let samples = shared
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let error_total: u64 = errors.values().sum();
    let mut failure = None;
    if error_total > 0 && !cfg.allow_errors {
        failure = Some(format!("{error_total} error(s)"));
    } else if stats.ops == 0 {
        failure = Some("no operation completed in the measured window".to_string());
    } else if cfg.fill && fill.is_none() {
        failure = Some("--fill did not complete".to_string());
    }

    let (elapsed, client_cpu, server_cpu) = window.unwrap_or((0.0, 0.0, None));
    let report = Report {
        cfg: &cfg,
        args,
        stats: &stats,
        errors: &errors,
        samples: &samples,
        elapsed,
        client_cpu,
        server_cpu,
        rss,
        populate_s,
        fill: fill.as_ref(),
        server_stats: server_stats.as_ref(),
        failure: failure.as_deref(),
        tls: tls_session.as_ref(),
    };
    if !args.quiet {
        let t = report.human();
        if human_to_stderr {
            eprint!("{t}");
        } else {
            print!("{t}");
        }
    }
    if let Some(path) = &args.json {
        let j = report.json().render();
        if path == "-" {
            print!("{j}");
        } else {
            std::fs::write(path, j).map_err(|e| format!("write {path}: {e}"))?;
        }
    }
    if let Some(f) = failure {
        eprintln!("corecached-bench: FAILED: {f}");
        for s in &samples {
            eprintln!("  {s}");
        }
        return Ok(1);
    }
    Ok(0)
}

struct Report<'a> {
    cfg: &'a Config,
    args: &'a Args,
    stats: &'a Stats,
    errors: &'a BTreeMap<String, u64>,
    samples: &'a [String],
    elapsed: f64,
    client_cpu: f64,
    server_cpu: Option<f64>,
    rss: Option<u64>,
    populate_s: Option<f64>,
    fill: Option<&'a FillResult>,
    server_stats: Option<&'a BTreeMap<String, String>>,
    failure: Option<&'a str>,
    /// --tls: the protocol version and cipher suite negotiated (probe connection).
    tls: Option<&'a (String, String)>,
}

fn per_sec(n: u64, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

impl Report<'_> {
    fn q_us(&self, q: f64) -> f64 {
        if self.stats.hist.is_empty() {
            return 0.0;
        }
        self.stats.hist.value_at_quantile(q) as f64 / 1000.0
    }

    fn hit_ratio(&self) -> Option<f64> {
        let n = self.stats.hits + self.stats.misses;
        (n > 0).then(|| self.stats.hits as f64 / n as f64)
    }

    fn us_per_op(&self, cpu_s: f64) -> Option<f64> {
        sys::us_per_op(cpu_s, self.stats.ops)
    }

    fn fill_keylen(&self) -> usize {
        keys::key_len(self.cfg.key_prefix.len(), 1, self.cfg.key_pad)
    }

    fn json(&self) -> J {
        let c = self.cfg;
        let s = self.stats;
        let mut cfg = J::obj();
        cfg.set("server", c.addr.to_string())
            .set("protocol", format!("{:?}", c.protocol).to_lowercase())
            .set("threads", c.threads)
            .set("conns_per_thread", c.conns)
            .set("pipeline", c.pipeline)
            .set("key_pattern", format!("{:?}", c.pattern).to_lowercase())
            .set(
                "zipf_s",
                (c.pattern == KeyPattern::Zipf).then_some(c.zipf_s),
            )
            .set("keys", c.keys)
            .set(
                "key_prefix",
                String::from_utf8_lossy(&c.key_prefix).to_string(),
            )
            .set("key_pad", c.key_pad)
            .set("value_min", c.vmin)
            .set("value_max", c.vmax)
            .set("ratio", format!("{}:{}", c.set_r, c.get_r))
            .set("multiget", c.multiget)
            .set("populate", c.populate)
            .set("set_on_miss", c.set_on_miss)
            .set("value_per_key", c.value_per_key)
            .set("duration_s", c.duration)
            .set("requests", c.requests)
            .set("warmup_s", c.warmup)
            .set("rate", c.rate)
            .set("fill", c.fill)
            .set("allow_errors", c.allow_errors)
            .set("verify", c.verify)
            .set("seed", c.seed);
        match self.tls {
            Some((v, suite)) => {
                let mut t = J::obj();
                t.set("version", v.as_str())
                    .set("cipher_suite", suite.as_str());
                cfg.set("tls", t);
            }
            None => {
                cfg.set("tls", J::Null);
            }
        }

        let mut lat = J::obj();
        lat.set("count", s.hist.len())
            .set(
                "mean",
                if s.hist.is_empty() {
                    0.0
                } else {
                    s.hist.mean() / 1000.0
                },
            )
            .set("p50", self.q_us(0.5))
            .set("p90", self.q_us(0.9))
            .set("p99", self.q_us(0.99))
            .set("p999", self.q_us(0.999))
            .set(
                "max",
                if s.hist.is_empty() {
                    0.0
                } else {
                    s.hist.max() as f64 / 1000.0
                },
            )
            .set("corrected_for_coordinated_omission", c.rate.is_some());

        let mut by_kind = J::obj();
        for (k, v) in self.errors {
            by_kind.set(k, *v);
        }
        let mut errs = J::obj();
        errs.set("total", self.errors.values().sum::<u64>())
            .set("by_kind", by_kind)
            .set(
                "samples",
                J::Arr(self.samples.iter().map(|s| J::from(s.as_str())).collect()),
            );

        let mut client = J::obj();
        client
            .set("cpu_s", self.client_cpu)
            .set(
                "cpu_util",
                if self.elapsed > 0.0 {
                    self.client_cpu / self.elapsed
                } else {
                    0.0
                },
            )
            .set("cpu_us_per_op", self.us_per_op(self.client_cpu));

        let mut server = J::obj();
        server
            .set("pid", self.args.server_pid)
            .set("cpu_s", self.server_cpu)
            .set(
                "cpu_util",
                self.server_cpu
                    .filter(|_| self.elapsed > 0.0)
                    .map(|v| v / self.elapsed),
            )
            .set(
                "cpu_us_per_op",
                self.server_cpu.and_then(|v| self.us_per_op(v)),
            )
            .set("rss_bytes", self.rss);

        let mut root = J::obj();
        root.set("tool", "corecached-bench")
            .set("version", env!("CARGO_PKG_VERSION"))
            .set("ok", self.failure.is_none())
            .set("failure", self.failure)
            .set("config", cfg)
            .set("populate_s", self.populate_s)
            .set("elapsed_s", self.elapsed)
            .set("ops", s.ops)
            .set("ops_per_sec", per_sec(s.ops, self.elapsed))
            .set("gets", s.gets)
            .set("multigets", s.mgets)
            .set("sets", s.sets)
            .set("keys_requested", s.keys_requested)
            .set("hits", s.hits)
            .set("misses", s.misses)
            .set("hit_ratio", self.hit_ratio())
            .set("bytes_in", s.bytes_in)
            .set("bytes_out", s.bytes_out)
            .set("latency_us", lat)
            .set("errors", errs)
            .set("client", client)
            .set("server", server);
        if let Some(f) = self.fill {
            let mut fj = J::obj();
            let payload = self.fill_keylen() + (c.vmin + c.vmax) / 2;
            fj.set("items", f.items)
                .set("evictions", f.evictions)
                .set("items_at_first_eviction", f.items_at_first_eviction)
                .set("sets_at_first_eviction", f.sets_at_first_eviction)
                .set("stats_bytes", f.bytes)
                .set("limit_maxbytes", f.limit_maxbytes)
                .set("rss_bytes", self.rss)
                .set(
                    "rss_bytes_per_item",
                    self.rss
                        .filter(|_| f.items > 0)
                        .map(|r| r as f64 / f.items as f64),
                )
                .set(
                    "limit_bytes_per_item",
                    f.limit_maxbytes
                        .filter(|_| f.items > 0)
                        .map(|r| r as f64 / f.items as f64),
                )
                .set("payload_bytes_per_item", payload);
            root.set("fill", fj);
        } else {
            root.set("fill", J::Null);
        }
        match self.server_stats {
            Some(m) => {
                let mut o = J::obj();
                for (k, v) in m {
                    o.set(k, v.as_str());
                }
                root.set("server_stats", o);
            }
            None => {
                root.set("server_stats", J::Null);
            }
        }
        root
    }

    fn human(&self) -> String {
        use std::fmt::Write as _;
        let c = self.cfg;
        let s = self.stats;
        let mut o = String::new();
        let proto = match c.protocol {
            Protocol::Text => "text",
            Protocol::Binary => "binary",
            Protocol::Meta => "meta",
        };
        let pattern = match c.pattern {
            KeyPattern::Uniform => "uniform".to_string(),
            KeyPattern::Zipf => format!("zipf({})", c.zipf_s),
            KeyPattern::Sequential => "sequential".to_string(),
        };
        let vs = if c.vmin == c.vmax {
            format!("{} B", c.vmin)
        } else {
            format!("{}-{} B", c.vmin, c.vmax)
        };
        let _ = writeln!(
            o,
            "corecached-bench  {proto} @ {}  {} thr x {} conns  pipeline {}  set:get {}:{}  mget {}  {} keys {pattern}  values {vs}{}",
            c.addr,
            c.threads,
            c.conns,
            c.pipeline,
            c.set_r,
            c.get_r,
            c.multiget,
            c.keys,
            if c.fill { "  [fill]" } else { "" }
        );
        if let Some((v, suite)) = self.tls {
            let _ = writeln!(o, "  tls          {v} {suite}");
        }
        if let Some(p) = self.populate_s {
            let _ = writeln!(o, "  populate     {} keys in {p:.2} s", c.keys);
        }
        let _ = writeln!(
            o,
            "  window       {:.2} s measured, {:.1} s warm-up excluded",
            self.elapsed,
            if c.fill { 0.0 } else { c.warmup }
        );
        let _ = writeln!(
            o,
            "  ops/s        {:.0}   (ops {}: gets {}, multigets {}, sets {})",
            per_sec(s.ops, self.elapsed),
            s.ops,
            s.gets,
            s.mgets,
            s.sets
        );
        match self.hit_ratio() {
            Some(h) => {
                let _ = writeln!(
                    o,
                    "  hits/misses  {} / {}   (hit ratio {:.2}%)",
                    s.hits,
                    s.misses,
                    h * 100.0
                );
            }
            None => {
                let _ = writeln!(o, "  hits/misses  - (no gets)");
            }
        }
        let ms = |q| self.q_us(q) / 1000.0;
        let _ = writeln!(
            o,
            "  latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}{}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            if s.hist.is_empty() {
                0.0
            } else {
                s.hist.max() as f64 / 1e6
            },
            if c.rate.is_some() {
                "  (from intended send times)"
            } else {
                ""
            }
        );
        if self.errors.is_empty() {
            let _ = writeln!(o, "  errors       none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(o, "  errors       {}", list.join(" "));
        }
        let util = |cpu: f64| {
            if self.elapsed > 0.0 {
                cpu / self.elapsed * 100.0
            } else {
                0.0
            }
        };
        let _ = writeln!(
            o,
            "  client CPU   {:.0}% of a core, {:.2} µs/op",
            util(self.client_cpu),
            self.us_per_op(self.client_cpu).unwrap_or(0.0)
        );
        if let Some(sc) = self.server_cpu {
            let _ = writeln!(
                o,
                "  server CPU   {:.0}% of a core, {:.2} µs/op   (pid {})",
                util(sc),
                self.us_per_op(sc).unwrap_or(0.0),
                self.args.server_pid.unwrap_or(0)
            );
        }
        if let Some(r) = self.rss {
            let _ = writeln!(o, "  server RSS   {:.1} MiB", r as f64 / 1048576.0);
        }
        if let Some(f) = self.fill {
            let _ = writeln!(
                o,
                "  fill         {} items held ({} at first eviction), {} evictions",
                f.items, f.items_at_first_eviction, f.evictions
            );
            if let Some(r) = self.rss.filter(|_| f.items > 0) {
                let _ = writeln!(
                    o,
                    "  memory       {:.1} B RSS per item (payload {} B key+value)",
                    r as f64 / f.items as f64,
                    self.fill_keylen() + (c.vmin + c.vmax) / 2
                );
            }
        }
        o
    }
}
