//! Peer replication under faults (issue 11's fault suite, beyond the single
//! resets and blackholes of `replication`): a link flapping every 2 s under
//! write load from several clients.

use crate::common;
use crate::replication::{caught_up, host, rep_stats, stat, streaming, wait_for, wait_same, Relay};

use common::{free_port, Conn};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Several writers on A for ~12 s while the link to B flaps every 2 s:
/// odd flaps reset it (the relay closes both sides, A reconnects at once),
/// even flaps blackhole it for a second (bytes sent meanwhile are held by
/// the relay and then lost with the reset that ends the blackhole, so A
/// must resend from B's last acknowledged position, not from what it
/// sent). The backlog (64 MiB) holds every gap, so every reconnect is a
/// partial sync: `full_syncs` stays at the first connection's, and
/// `partial_syncs` grows by one per stream and flap. Afterwards both hosts
/// hold the same items (full dumps: value, flags, CAS).
#[test]
fn a_link_flapping_every_2s_under_write_load_resumes_with_partial_syncs() {
    let rb = free_port();
    let b = host(rb, None, &[]);
    let relay = Relay::new(rb);
    let a = host(free_port(), Some(relay.port), &[]);
    wait_for(10, "A streaming", || caught_up(&a));
    let streams = stat(&a, "streams");
    let full0 = stat(&a, "full_syncs");
    assert_eq!(full0, streams, "one full sync per stream at first");
    let partial0 = stat(&a, "partial_syncs");
    let disc0 = stat(&a, "disconnects");

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let (stop, writes, addr) = (stop.clone(), writes.clone(), a.addr());
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A batch of 20 requests, every reply checked.
                    let mut batch = Vec::new();
                    let mut want = Vec::new();
                    for _ in 0..20 {
                        let k = format!("flap{t}-{}", i % 4000);
                        match i % 10 {
                            0 => {
                                batch.extend_from_slice(format!("delete {k}\r\n").as_bytes());
                                want.push("DEL");
                            }
                            1 => {
                                batch.extend_from_slice(
                                    format!("set n{t} 0 0 1\r\n0\r\nincr n{t} 1\r\n").as_bytes(),
                                );
                                want.push("STORED");
                                want.push("NUM");
                            }
                            _ => {
                                let v = format!("{t}-{i}-").repeat(1 + (i % 30) as usize);
                                batch.extend_from_slice(
                                    format!("set {k} {t} 0 {}\r\n{v}\r\n", v.len()).as_bytes(),
                                );
                                want.push("STORED");
                            }
                        }
                        i += 1;
                    }
                    c.send(&batch);
                    for w in want {
                        let l = c.line();
                        match w {
                            "DEL" => assert!(l == "DELETED" || l == "NOT_FOUND", "{l}"),
                            "NUM" => assert_eq!(l, "1"),
                            _ => assert_eq!(l, w),
                        }
                    }
                    writes.fetch_add(20, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();

    let flaps = 6u64;
    let start = Instant::now();
    for f in 1..=flaps {
        // Every 2 s from the start.
        let at = start + Duration::from_secs(2 * f);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let w0 = writes.load(Ordering::Relaxed);
        if f % 2 == 1 {
            relay.cut();
        } else {
            relay.pause(true);
            std::thread::sleep(Duration::from_secs(1));
            relay.cut();
            relay.pause(false);
        }
        wait_for(10, "A to see the link drop", || {
            stat(&a, "disconnects") >= disc0 + f
        });
        assert!(
            writes.load(Ordering::Relaxed) > w0 || f % 2 == 1,
            "flap {f}: no writes while the link was blackholed"
        );
        wait_for(10, "A streaming again", || streaming(&a));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let total = writes.load(Ordering::Relaxed);
    wait_for(20, "A caught up", || caught_up(&a));
    let st = rep_stats(&a);
    let partial = stat(&a, "partial_syncs") - partial0;
    println!(
        "flapping: {flaps} flaps in {:.1}s, {total} writes, partial_syncs +{partial}, full_syncs {}, connects {}",
        start.elapsed().as_secs_f64(),
        st["full_syncs"],
        st["connects"]
    );
    assert!(total > 10_000, "too little write load: {total}");
    assert_eq!(
        stat(&a, "full_syncs"),
        full0,
        "a full sync while the backlog held the gap: {st:?}"
    );
    // One partial sync per stream and flap; a reconnect attempt that the
    // relay's reset catches mid-handshake may add one more.
    assert!(
        partial >= flaps * streams && partial <= 2 * flaps * streams,
        "partial_syncs grew by {partial}, expected about {}: {st:?}",
        flaps * streams
    );
    assert!(relay.accepted.load(Ordering::Relaxed) > flaps);
    let d = wait_same(&a, &b, 20);
    assert!(d.len() > 1000, "{} items", d.len());
    for t in 0..4 {
        assert!(d.contains_key(&format!("n{t}")));
    }
}
