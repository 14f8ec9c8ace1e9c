//! How should a request reach a shard owned by another core?
//!
//! Two threads, pinned to two cores, each own one shard (a hash map). Every
//! thread runs a closed loop of get/set requests on keys that hash to either
//! shard (so about half are foreign), and we measure ns per request for:
//!
//! * `lock`: the requesting thread locks the owning shard's mutex and does
//!   the table operation itself (corecached's design);
//! * `hop`: a foreign request is sent over a channel to the owning thread,
//!   which executes it and sends the answer back; the requester waits. The
//!   owner only looks at its channel between its own requests or when idle
//!   (blocked in recv, as an idle event loop is parked), so a hop costs a
//!   wake-up whenever the owner was idle;
//! * `hop-batch`: as `hop`, but foreign requests are sent in batches of 32
//!   (the best case for hand-off: the wake-up is shared by the batch).
//!
//! Run: `cargo run --release --bin shard-access-bench -- [seconds]`

use crossbeam::channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

type Map = HashMap<u64, [u8; 32], ahash::RandomState>;

fn pin(cpu: usize) {
    // SAFETY: sched_setaffinity on the calling thread with a zeroed, then
    // filled, cpu_set_t of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// xorshift: cheap key stream.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

const KEYS: u64 = 100_000;

fn op(map: &mut Map, key: u64) -> u8 {
    if key.is_multiple_of(10) {
        map.insert(key, [key as u8; 32]);
        1
    } else {
        map.get(&key).map_or(0, |v| v[0])
    }
}

fn run_lock(secs: f64) -> f64 {
    let shards: Arc<[Mutex<Map>; 2]> =
        Arc::new([Mutex::new(Map::default()), Mutex::new(Map::default())]);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|t| {
            let (shards, stop, barrier) = (shards.clone(), stop.clone(), barrier.clone());
            std::thread::spawn(move || {
                pin(t % cpus());
                let mut x = 88172645463325252u64 ^ (t as u64 + 1);
                let mut n = 0u64;
                let mut sink = 0u8;
                barrier.wait();
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let k = next(&mut x) % KEYS;
                        let mut s = shards[(k & 1) as usize].lock();
                        sink = sink.wrapping_add(op(&mut s, k));
                    }
                    n += 256;
                }
                std::hint::black_box(sink);
                (n, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    report(hs)
}

enum Msg {
    One(u64, Sender<u8>),
    Batch(Vec<u64>, Sender<u8>),
}

fn run_hop(secs: f64, batch: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let (tx0, rx0) = bounded::<Msg>(1024);
    let (tx1, rx1) = bounded::<Msg>(1024);
    let chans = [(tx0, rx0), (tx1, rx1)];
    let hs: Vec<_> = (0..2)
        .map(|t| {
            let (stop, barrier) = (stop.clone(), barrier.clone());
            let inbox: Receiver<Msg> = chans[t].1.clone();
            let peer: Sender<Msg> = chans[1 - t].0.clone();
            std::thread::spawn(move || {
                pin(t % cpus());
                let mut map = Map::default();
                let mut x = 88172645463325252u64 ^ (t as u64 + 1);
                let (rtx, rrx) = bounded::<u8>(1);
                let mut n = 0u64;
                let mut sink = 0u8;
                let serve = |map: &mut Map, m: Msg, sink: &mut u8| match m {
                    Msg::One(k, r) => {
                        let _ = r.send(op(map, k));
                    }
                    Msg::Batch(ks, r) => {
                        for k in ks {
                            *sink = sink.wrapping_add(op(map, k));
                        }
                        let _ = r.send(0);
                    }
                };
                barrier.wait();
                let start = Instant::now();
                let mut pending: Vec<u64> = Vec::with_capacity(batch);
                while !stop.load(Ordering::Relaxed) {
                    // Serve what the peer sent us.
                    while let Ok(m) = inbox.try_recv() {
                        serve(&mut map, m, &mut sink);
                    }
                    let k = next(&mut x) % KEYS;
                    if (k & 1) as usize == t {
                        sink = sink.wrapping_add(op(&mut map, k));
                        n += 1;
                        continue;
                    }
                    pending.push(k);
                    if pending.len() < batch {
                        continue;
                    }
                    let m = if batch == 1 {
                        Msg::One(pending[0], rtx.clone())
                    } else {
                        Msg::Batch(std::mem::replace(&mut pending, Vec::with_capacity(batch)), rtx.clone())
                    };
                    pending.clear();
                    if peer.send(m).is_err() {
                        break;
                    }
                    // Wait for the answer; serve the peer meanwhile, parking
                    // when there is nothing to do (an idle event loop).
                    loop {
                        crossbeam::select! {
                            recv(rrx) -> r => { sink = sink.wrapping_add(r.unwrap_or(0)); break; }
                            recv(inbox) -> m => match m { Ok(m) => serve(&mut map, m, &mut sink), Err(_) => break },
                            default(Duration::from_millis(50)) => if stop.load(Ordering::Relaxed) { break },
                        }
                    }
                    n += batch as u64;
                }
                // Drain so the peer is not left waiting.
                let deadline = Instant::now() + Duration::from_millis(200);
                while Instant::now() < deadline {
                    while let Ok(m) = inbox.try_recv() {
                        serve(&mut map, m, &mut sink);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::hint::black_box(sink);
                (n, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    report(hs)
}

fn report(hs: Vec<std::thread::JoinHandle<(u64, Duration)>>) -> f64 {
    let mut ops = 0u64;
    let mut busy = 0f64;
    for h in hs {
        let (n, d) = h.join().expect("thread");
        ops += n;
        busy += d.as_secs_f64();
    }
    // thread-seconds per op, in ns
    busy * 1e9 / ops.max(1) as f64
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    println!("cpus available: {}", cpus());
    println!("| mechanism | thread-ns per request (lower is better) |");
    println!("|---|---|");
    println!("| lock (per-shard mutex) | {:.0} |", run_lock(secs));
    println!(
        "| hop (one request per hand-off) | {:.0} |",
        run_hop(secs, 1)
    );
    println!("| hop-batch (32 per hand-off) | {:.0} |", run_hop(secs, 32));
}
