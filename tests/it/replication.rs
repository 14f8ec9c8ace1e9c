//! Peer replication between two real corecached processes on loopback
//! (docs/REPLICATION.md): full sync with CAS preserved, every mutation kind
//! both ways, LWW convergence, refused peers, garbage on the replication
//! port, partial resync after a link reset (through a relay thread that can
//! cut the link), full sync after the backlog overflowed.

use crate::common;

use common::{free_port, Conn, Server};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) fn rep_stats(s: &Server) -> BTreeMap<String, String> {
    s.conn().stats("replication")
}

pub(crate) fn stat(s: &Server, name: &str) -> u64 {
    let st = rep_stats(s);
    st.get(name)
        .unwrap_or_else(|| panic!("stats replication has no {name}: {st:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Poll `f` until it is true, at most `secs` seconds.
#[track_caller]
pub(crate) fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// Every stream of `s` is streaming.
pub(crate) fn streaming(s: &Server) -> bool {
    let st = rep_stats(s);
    let n: usize = st["streams"].parse().unwrap();
    (0..n).all(|i| st[&format!("stream{i}:state")] == "streaming")
}

/// Nothing left to send from `s`: every stream streaming, every record
/// acknowledged.
pub(crate) fn caught_up(s: &Server) -> bool {
    let st = rep_stats(s);
    let n: usize = st["streams"].parse().unwrap();
    (0..n).all(|i| {
        st[&format!("stream{i}:state")] == "streaming"
            && st[&format!("stream{i}:lag_records")] == "0"
    })
}

fn secret_file(tag: &str, content: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "corecached-repl-secret-{}-{tag}",
        std::process::id()
    ));
    std::fs::write(&p, content).unwrap();
    p
}

/// A host with `--replication-listen` on `listen`, `--partner partner`
/// (if any) and `extra` flags.
pub(crate) fn host(listen: u16, partner: Option<u16>, extra: &[&str]) -> Server {
    let l = format!("127.0.0.1:{listen}");
    let p = partner.map(|p| format!("127.0.0.1:{p}"));
    let mut args = vec!["-t", "2", "--replication-listen", &l];
    if let Some(p) = &p {
        args.extend(["--partner", p.as_str()]);
    }
    args.extend_from_slice(extra);
    let s = Server::corecached(&args);
    wait_listening(listen);
    s
}

/// B (only listening) and A, whose link to B runs through a relay, A
/// started with `a_args` and streaming: (A, the relay, B).
pub(crate) fn pair_through_relay(a_args: &[&str]) -> (Server, Relay, Server) {
    let rb = free_port();
    let b = host(rb, None, &[]);
    let relay = Relay::new(rb);
    let a = host(free_port(), Some(relay.port), a_args);
    wait_for(10, "A streaming", || caught_up(&a));
    (a, relay, b)
}

/// Wait until a socket listens on 127.0.0.1:`port` (the replication
/// listener is bound after the client port answers: a test connecting
/// right away was once refused). Read from /proc/net/tcp, not by
/// connecting: a probe would be an inbound session of its own.
#[track_caller]
pub(crate) fn wait_listening(port: u16) {
    let want = format!("0100007F:{port:04X}");
    wait_for(10, &format!("127.0.0.1:{port} listening"), || {
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == want && f[3] == "0A"
            })
    });
}

/// Two partners replicating both ways, directly.
pub(crate) fn pair(extra: &[&str]) -> (Server, Server) {
    let (ra, rb) = (free_port(), free_port());
    let a = host(ra, Some(rb), extra);
    let b = host(rb, Some(ra), extra);
    wait_for(10, "both links streaming", || {
        streaming(&a) && streaming(&b)
    });
    (a, b)
}

/// Partners whose addresses give both the same HLC host bit settle on
/// different ones. A listens on the lower port and reaches B directly (A
/// starts with 0); B reaches A through a relay on 127.0.0.2, above its own
/// 127.0.0.1 (B starts with 0). The one with the lower run id changes, once,
/// and the CAS values of their own writes then differ in the bit.
#[test]
fn partners_starting_with_the_same_host_bit_settle_on_different_ones() {
    let (mut ra, mut rb) = (free_port(), free_port());
    if ra > rb {
        std::mem::swap(&mut ra, &mut rb);
    }
    let to_a = Relay::at("127.0.0.2", ra);
    let a = host(ra, Some(rb), &[]);
    let (lb, pb) = (
        format!("127.0.0.1:{rb}"),
        format!("127.0.0.2:{}", to_a.port),
    );
    let b = Server::corecached(&["-t", "2", "--replication-listen", &lb, "--partner", &pb]);
    wait_listening(rb);
    wait_for(10, "both links streaming", || {
        streaming(&a) && streaming(&b)
    });
    let (sa, sb) = (rep_stats(&a), rep_stats(&b));
    let run = |s: &BTreeMap<String, String>| u64::from_str_radix(&s["run_id"], 16).unwrap();
    let changed = |s: &BTreeMap<String, String>| s["host_bit_changes"].parse::<u64>().unwrap();
    assert_ne!(sa["host_bit"], sb["host_bit"], "A {sa:?}\nB {sb:?}");
    let lower_changed = if run(&sa) < run(&sb) { (1, 0) } else { (0, 1) };
    assert_eq!((changed(&sa), changed(&sb)), lower_changed);
    let cas_of = |s: &Server, key: &str| {
        let mut c = s.conn();
        c.send(format!("set {key} 0 0 1\r\nx\r\ngets {key}\r\n"));
        assert_eq!(c.line(), "STORED");
        let l = c.line();
        c.expect(b"x\r\nEND\r\n");
        l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let (ca, cb) = (cas_of(&a, "from_a"), cas_of(&b, "from_b"));
    assert_eq!((ca & 1).to_string(), sa["host_bit"]);
    assert_eq!((cb & 1).to_string(), sb["host_bit"]);
    drop(to_a);
}

/// Every item of a host: key -> (flags, value, cas), read with `gets` of
/// every key listed by `lru_crawler metadump all`.
pub(crate) fn dump(s: &Server) -> BTreeMap<String, (u32, Vec<u8>, u64)> {
    dump_conn(s.conn())
}

/// `dump` over a given connection (e.g. one made inside a network
/// namespace).
pub(crate) fn dump_conn(mut c: Conn) -> BTreeMap<String, (u32, Vec<u8>, u64)> {
    c.send("lru_crawler metadump all\r\n");
    let mut raw = Vec::new();
    let mut tmp = vec![0u8; 1 << 16];
    while !raw.ends_with(b"END\r\n") {
        let k = c.s.read(&mut tmp).expect("metadump");
        assert!(k > 0, "closed during metadump");
        raw.extend_from_slice(&tmp[..k]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let keys: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("key="))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let mut m = BTreeMap::new();
    for chunk in keys.chunks(100) {
        c.send(format!("gets {}\r\n", chunk.join(" ")));
        loop {
            let l = c.line();
            if l == "END" {
                break;
            }
            let p: Vec<&str> = l.split(' ').collect();
            assert!(p.len() == 5 && p[0] == "VALUE", "{l}");
            let n: usize = p[3].parse().unwrap();
            let mut v = c.read_n(n + 2);
            v.truncate(n);
            m.insert(
                p[1].to_string(),
                (p[2].parse().unwrap(), v, p[4].parse().unwrap()),
            );
        }
    }
    m
}

#[track_caller]
pub(crate) fn wait_same(
    a: &Server,
    b: &Server,
    secs: u64,
) -> BTreeMap<String, (u32, Vec<u8>, u64)> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let (da, db) = (dump(a), dump(b));
        if da == db {
            return da;
        }
        if Instant::now() > end {
            let only_a: Vec<_> = da
                .iter()
                .filter(|(k, v)| db.get(*k) != Some(v))
                .take(5)
                .collect();
            let only_b: Vec<_> = db
                .iter()
                .filter(|(k, v)| da.get(*k) != Some(v))
                .take(5)
                .collect();
            panic!(
                "hosts differ after {secs}s ({} vs {} items); A not B: {only_a:?}; B not A: {only_b:?}",
                da.len(),
                db.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP relay between partners: every connection to `port` is forwarded
/// to the target, one reader and one writer thread per direction. The test
/// can, at any time:
/// - `cut`: reset every connection through it (both sides see it closed);
/// - `block`: refuse new connections (accepted, then closed at once);
/// - `pause` (blackhole): stop reading; bytes already read are held, the
///   sender's socket buffers fill and its writes block; nothing is lost;
/// - `delay(ms)`: hold each forwarded chunk `ms` milliseconds from when the
///   relay read it, in both directions (so a request and its
///   acknowledgement take 2 × `ms` more), chunks in order, without
///   limiting throughput (a pipe of that latency, not a sleep per chunk);
/// - `drop_bytes(true)`: read and discard everything in both directions (the
///   sender's writes succeed, nothing arrives: lost segments). TCP cannot
///   lose bytes inside a connection and carry on, so `drop_bytes(false)`
///   then resets every connection that lost bytes, as a TCP connection
///   whose retransmissions gave up ends; counted in `dropped`.
pub(crate) struct Relay {
    pub(crate) port: u16,
    blocked: Arc<AtomicBool>,
    /// Blackhole: connections stay open, nothing is forwarded.
    paused: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    dropping: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    pub(crate) accepted: Arc<AtomicU64>,
    /// Bytes discarded by `drop_bytes`.
    pub(crate) dropped: Arc<AtomicU64>,
}

/// One direction of a relayed connection: a reader thread that stamps each
/// chunk with the time it may leave (now + the delay) and a writer thread
/// that sends it then.
fn relay_direction(
    mut from: TcpStream,
    to: TcpStream,
    paused: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    dropping: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) {
    // Bounded, so a slow receiver pushes back on the sender as through a
    // direct connection (at most 1024 chunks of up to 64 KiB held).
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(1024);
    let (wp, wto, wfrom) = (
        paused.clone(),
        to.try_clone().unwrap(),
        from.try_clone().unwrap(),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        from.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        loop {
            if paused.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let k = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => break,
            };
            if dropping.load(Ordering::Relaxed) {
                dropped.fetch_add(k as u64, Ordering::Relaxed);
                continue;
            }
            let at = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::Relaxed));
            if tx.send((at, buf[..k].to_vec())).is_err() {
                break;
            }
        }
        // The writer sends what it holds, then closes.
    });
    std::thread::spawn(move || {
        let mut to = wto;
        for (at, chunk) in rx {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            // Paused meanwhile: hold what was read.
            while wp.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = wfrom.shutdown(std::net::Shutdown::Both);
    });
}

impl Relay {
    pub(crate) fn new(target: u16) -> Relay {
        Relay::at("127.0.0.1", target)
    }

    /// A relay listening on another loopback address `ip`.
    pub(crate) fn at(ip: &str, target: u16) -> Relay {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let r = Relay {
            port,
            blocked: Arc::default(),
            paused: Arc::default(),
            delay_ms: Arc::default(),
            dropping: Arc::default(),
            conns: Arc::default(),
            stop: Arc::default(),
            accepted: Arc::default(),
            dropped: Arc::default(),
        };
        let (b, c, s, n) = (
            r.blocked.clone(),
            r.conns.clone(),
            r.stop.clone(),
            r.accepted.clone(),
        );
        let (pz, dl, dr, dd) = (
            r.paused.clone(),
            r.delay_ms.clone(),
            r.dropping.clone(),
            r.dropped.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((down, _)) => {
                        if b.load(Ordering::Relaxed) {
                            drop(down);
                            continue;
                        }
                        down.set_nonblocking(false).unwrap();
                        let target: SocketAddr = ([127, 0, 0, 1], target).into();
                        let Ok(up) = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                        else {
                            continue;
                        };
                        n.fetch_add(1, Ordering::Relaxed);
                        let mut g = c.lock().unwrap();
                        g.push(down.try_clone().unwrap());
                        g.push(up.try_clone().unwrap());
                        drop(g);
                        for (from, to) in [
                            (down.try_clone().unwrap(), up.try_clone().unwrap()),
                            (up, down),
                        ] {
                            relay_direction(
                                from,
                                to,
                                pz.clone(),
                                dl.clone(),
                                dr.clone(),
                                dd.clone(),
                            );
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        r
    }

    /// Reset every connection through the relay.
    pub(crate) fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(crate) fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::Relaxed);
    }

    pub(crate) fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::Relaxed);
    }

    /// Hold each chunk read from now on `ms` milliseconds (0: none).
    pub(crate) fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Discard every byte from now on; off: reset the connections that lost
    /// bytes (every connection through the relay) and forward again.
    pub(crate) fn drop_bytes(&self, on: bool) {
        if !on {
            // Reset first, still dropping: no byte after the gap is sent.
            self.cut();
        }
        self.dropping.store(on, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Items a host holds before its partner exists reach the partner by a
/// full sync, with value, flags and CAS: `gets` on A, then `cas` on B with
/// A's CAS works (a client failing over keeps its CAS).
#[test]
fn full_sync_copies_items_with_flags_and_cas() {
    let (ra, rb) = (free_port(), free_port());
    let a = host(ra, Some(rb), &[]);
    let mut ca = a.conn();
    for i in 0..500 {
        ca.set(&format!("k{i}"), i, 0, format!("value-{i}").as_bytes());
    }
    ca.set("ttl", 7, 1000, b"expires");
    let b = host(rb, None, &[]);
    wait_for(10, "A streaming to B", || caught_up(&a));
    let mut cb = b.conn();
    for i in (0..500).step_by(37) {
        let k = format!("k{i}");
        let (fa, va, casa) = ca.gets(&k).unwrap();
        assert_eq!(cb.gets(&k), Some((fa, va, casa)), "{k}");
    }
    let (_, _, cas) = ca.gets("k1").unwrap();
    cb.req(format!("cas k1 9 0 3 {cas}\r\nnew\r\n"), "STORED\r\n");
    // The expiry travelled as absolute time: B reports the same one.
    let exp = |c: &mut Conn| {
        c.send("me ttl\r\n");
        let l = c.line();
        l.split(' ')
            .find_map(|t| t.strip_prefix("exp="))
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let (ea, eb) = (exp(&mut ca), exp(&mut cb));
    assert!(ea > 990 && (ea - eb).abs() <= 1, "exp A {ea}, B {eb}");
    assert_eq!(stat(&a, "full_syncs"), 2, "one full sync per stream");
    assert!(stat(&a, "snapshot_items_sent") >= 501);
    assert_eq!(
        stat(&b, "snapshot_items_applied"),
        stat(&a, "snapshot_items_sent")
    );
    assert_eq!(stat(&b, "auth_failures"), 0);
}

/// A peer with the wrong secret, or none, is refused and counted; nothing
/// it holds is applied. The right secret gets through.
#[test]
fn a_peer_without_the_secret_is_refused_and_counted() {
    let good = secret_file("good", "correct horse\n");
    let bad = secret_file("bad", "battery staple\n");
    let rb = free_port();
    let b = host(rb, None, &["--replication-secret", good.to_str().unwrap()]);
    for (tag, secret) in [("wrong", Some(&bad)), ("none", None)] {
        let mut extra = vec![];
        let s;
        if let Some(p) = secret {
            s = p.to_str().unwrap().to_string();
            extra = vec!["--replication-secret", s.as_str()];
        }
        let a = host(free_port(), Some(rb), &extra);
        a.conn().set(&format!("from-{tag}"), 0, 0, b"x");
        let before = stat(&b, "auth_failures");
        wait_for(10, "B to count an auth failure", || {
            stat(&b, "auth_failures") > before
        });
        assert!(!streaming(&a), "{tag}: A must not be streaming");
        assert_eq!(stat(&b, "snapshot_items_applied"), 0);
        assert_eq!(b.conn().get(&format!("from-{tag}")), None);
        // The sender sees the refusal too.
        wait_for(10, "A to count the refusal", || {
            stat(&a, "auth_failures") > 0
        });
    }
    let ok = host(
        free_port(),
        Some(rb),
        &["--replication-secret", good.to_str().unwrap()],
    );
    ok.conn().set("from-good", 0, 0, b"y");
    wait_for(10, "the good peer streaming", || caught_up(&ok));
    wait_for(10, "the good peer's item on B", || {
        b.conn().get("from-good").is_some()
    });
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}

/// Garbage on the replication port (random bytes, a memcached command, a
/// frame header with a huge length, a valid header then a hang-up) never
/// crashes the host; it keeps serving clients and counts the bad frames.
#[test]
fn an_unauthenticated_peer_cannot_announce_a_large_frame() {
    // -I 64m: a data frame may be that large, a handshake frame may not. A
    // HELLO announcing 1 MiB is refused on its header (a protocol error,
    // at once), not buffered while the host waits for the bytes.
    let rb = free_port();
    let b = host(rb, None, &["-m", "256", "-I", "64m"]);
    let addr: SocketAddr = ([127, 0, 0, 1], rb).into();
    let before = stat(&b, "bad_frames");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0xC7, b'R', 2, 1, 0, 0x10, 0, 0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the host waited for the payload"
    );
    assert_eq!(stat(&b, "bad_frames"), before + 1, "{:?}", rep_stats(&b));
}

/// `count` byte strings of `min..min + span` pseudo-random bytes
/// (xorshift64 from `seed`, so every run sends the same garbage).
pub(crate) fn random_junk(mut seed: u64, count: usize, min: usize, span: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let n = min + (seed % span) as usize;
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        })
        .collect()
}

#[test]
fn garbage_on_the_replication_port_does_not_crash_the_host() {
    let rb = free_port();
    let mut b = host(rb, None, &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], rb).into();
    let mut junk: Vec<Vec<u8>> = vec![
        b"get foo\r\n".to_vec(),
        b"\x80\x01\x00\x03\x00\x00\x00\x00".to_vec(),
        // magic, version, HELLO, 4 GiB payload
        vec![0xC7, b'R', 2, 1, 0xff, 0xff, 0xff, 0xff],
        // a HELLO too short for its fields
        vec![0xC7, b'R', 2, 1, 0, 0, 0, 2, 0, 0],
        // a frame type the peer must not send first
        vec![0xC7, b'R', 2, 5, 0, 0, 0, 0],
    ];
    junk.extend(random_junk(0x9e37_79b9_7f4a_7c15, 40, 0, 300));
    for j in &junk {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(j);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // A half-open handshake (nothing sent) ends within the handshake
    // timeout and does not block the next peer.
    let _idle = TcpStream::connect(addr).unwrap();
    b.assert_alive();
    let mut c = b.conn();
    c.set("still", 0, 0, b"serving");
    assert_eq!(c.get("still"), Some((0, b"serving".to_vec())));
    assert!(stat(&b, "bad_frames") >= 5, "{:?}", rep_stats(&b));
    // And a real partner still gets in.
    let a = host(free_port(), Some(rb), &[]);
    wait_for(10, "a real partner streaming", || caught_up(&a));
    b.assert_alive();
}

/// A host without --partner or --replication-listen reports replication
/// off and starts nothing.
#[test]
fn without_flags_replication_is_off() {
    let s = Server::corecached(&["-t", "2"]);
    let st = rep_stats(&s);
    assert_eq!(st.get("mode").map(String::as_str), Some("off"));
    assert_eq!(st.len(), 1);
}

/// Every kind of client mutation, made on either host, reaches the other
/// with value, flags and CAS: text, meta and binary.
#[test]
fn every_mutation_kind_replicates_both_ways() {
    let (a, b) = pair(&[]);
    for (src, dst, p) in [(&a, &b, "ab"), (&b, &a, "ba")] {
        let mut c = src.conn();
        let k = |s: &str| format!("{p}-{s}");
        c.set(&k("set"), 1, 0, b"v1");
        c.store("add", &k("add"), 2, 0, b"v2", "STORED");
        c.set(&k("rep"), 0, 0, b"old");
        c.store("replace", &k("rep"), 3, 0, b"new", "STORED");
        c.set(&k("app"), 4, 0, b"mid");
        c.store("append", &k("app"), 0, 0, b"-end", "STORED");
        c.store("prepend", &k("app"), 0, 0, b"start-", "STORED");
        c.set(&k("cas"), 5, 0, b"before");
        let (_, _, cas) = c.gets(&k("cas")).unwrap();
        c.req(
            format!("cas {} 6 0 5 {cas}\r\nafter\r\n", k("cas")),
            "STORED\r\n",
        );
        c.set(&k("num"), 0, 0, b"10");
        c.req(format!("incr {} 5\r\n", k("num")), "15\r\n");
        c.req(format!("decr {} 3\r\n", k("num")), "12\r\n");
        c.set(&k("touch"), 0, 0, b"t");
        c.req(format!("touch {} 500\r\n", k("touch")), "TOUCHED\r\n");
        c.set(&k("gat"), 0, 0, b"g");
        c.send(format!("gat 600 {}\r\n", k("gat")));
        c.read_end();
        c.set(&k("del"), 0, 0, b"d");
        c.req(format!("delete {}\r\n", k("del")), "DELETED\r\n");
        // meta
        c.req(format!("ms {} 2 F7\r\nms\r\n", k("ms")), "HD\r\n");
        c.set(&k("md"), 0, 0, b"x");
        c.req(format!("md {}\r\n", k("md")), "HD\r\n");
        c.set(&k("mdi"), 0, 0, b"stale");
        c.req(format!("md {} I\r\n", k("mdi")), "HD\r\n");
        c.set(&k("ma"), 0, 0, b"1");
        c.req(format!("ma {} D9\r\n", k("ma")), "HD\r\n");
        // binary set (opcode 0x01), flags 0x0b, no expiry
        let key = k("bin");
        let val = b"binval";
        let mut pkt = vec![0x80, 0x01];
        pkt.extend_from_slice(&(key.len() as u16).to_be_bytes());
        pkt.extend_from_slice(&[8, 0, 0, 0]);
        pkt.extend_from_slice(&((8 + key.len() + val.len()) as u32).to_be_bytes());
        pkt.extend_from_slice(&[0; 12]);
        pkt.extend_from_slice(&11u32.to_be_bytes());
        pkt.extend_from_slice(&0u32.to_be_bytes());
        pkt.extend_from_slice(key.as_bytes());
        pkt.extend_from_slice(val);
        let mut bc = src.conn();
        bc.send(&pkt);
        let hdr = bc.read_n(24);
        assert_eq!(&hdr[6..8], &[0, 0], "binary set status");
        wait_for(10, "the source caught up", || caught_up(src));
        let mut d = dst.conn();
        let same = |key: &str, c: &mut Conn, d: &mut Conn| {
            let here = c.gets(key);
            assert!(here.is_some(), "{key} missing at the source");
            assert_eq!(d.gets(key), here, "{key}");
        };
        for name in [
            "set", "add", "rep", "app", "cas", "num", "touch", "gat", "ms", "ma", "bin",
        ] {
            same(&k(name), &mut c, &mut d);
        }
        assert_eq!(d.get(&k("app")).unwrap().1, b"start-mid-end");
        assert_eq!(d.get(&k("num")).unwrap().1, b"12");
        assert_eq!(d.get(&k("ma")).unwrap().1, b"10");
        assert_eq!(d.get(&k("bin")), Some((11, b"binval".to_vec())));
        assert_eq!(d.gets(&k("del")), None);
        assert_eq!(d.gets(&k("md")), None);
        // md I: the copy is stale too, with the source's CAS.
        let (_, _, cas_i) = c.gets(&k("mdi")).unwrap();
        d.send(format!("mg {} c\r\n", k("mdi")));
        let l = d.line();
        assert!(l.contains(&format!("c{cas_i}")) && l.contains('X'), "{l}");
        // gets on the source, cas on the copy works (failover).
        let (_, _, cas) = c.gets(&k("set")).unwrap();
        d.req(
            format!("cas {} 0 0 2 {cas}\r\nv2\r\n", k("set")),
            "STORED\r\n",
        );
    }
    // flush_all on A empties B.
    a.conn().req("flush_all\r\n", "OK\r\n");
    wait_for(10, "the flush to reach B", || {
        b.conn().get("ab-set").is_none() && b.conn().get("ba-set").is_none()
    });
    assert_eq!(stat(&a, "full_syncs"), 2);
    assert!(stat(&b, "records_applied") > 20);
}

/// Both hosts write the same keys at once; once quiet, both hold the same
/// items (value, flags and CAS): last writer wins by CAS.
#[test]
fn concurrent_conflicting_writes_converge() {
    let (a, b) = pair(&[]);
    let keys = 200;
    let writers: Vec<_> = [(a.addr(), "A"), (b.addr(), "B")]
        .into_iter()
        .flat_map(|(addr, name)| {
            (0..2).map(move |t| {
                std::thread::spawn(move || {
                    let mut c = Conn::connect(addr);
                    for i in 0..3000u32 {
                        let k = format!("c{}", (i * 7 + t * 13) % keys);
                        match i % 5 {
                            0 => c.send(format!("delete {k}\r\n")),
                            1 => c.send(format!("incr {k} 1\r\n")),
                            _ => c.send(format!(
                                "set {k} {t} 0 3 noreply\r\n{name}{t}{}\r\n",
                                i % 10
                            )),
                        }
                        if i % 5 == 0 {
                            let l = c.line();
                            assert!(l == "DELETED" || l == "NOT_FOUND", "{l}");
                        }
                        if i % 5 == 1 {
                            let l = c.line();
                            assert!(
                                l == "NOT_FOUND"
                                    || l.parse::<u64>().is_ok()
                                    || l.starts_with("CLIENT_ERROR"),
                                "{l}"
                            );
                        }
                    }
                })
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    wait_for(20, "both caught up", || caught_up(&a) && caught_up(&b));
    let d = wait_same(&a, &b, 10);
    assert!(!d.is_empty());
    assert!(
        stat(&a, "conflicts") + stat(&b, "conflicts") > 0,
        "no conflict was seen"
    );
}

/// A link reset: writes made while it is down arrive after it is back,
/// by a partial sync (the backlog holds the gap), no new full sync.
#[test]
fn a_link_reset_resumes_with_a_partial_sync() {
    let (a, relay, b) = pair_through_relay(&[]);
    let mut ca = a.conn();
    for i in 0..100 {
        ca.set(&format!("before{i}"), 0, 0, b"x");
    }
    wait_for(10, "A caught up", || caught_up(&a));
    for round in 0..3 {
        relay.block(true);
        relay.cut();
        wait_for(10, "A to see the link down", || !streaming(&a));
        for i in 0..300 {
            ca.set(
                &format!("gap{round}-{i}"),
                round,
                0,
                format!("v{i}").as_bytes(),
            );
        }
        ca.req(format!("delete before{round}\r\n"), "DELETED\r\n");
        relay.block(false);
        wait_for(15, "A caught up again", || caught_up(&a));
    }
    assert_eq!(stat(&a, "full_syncs"), 2, "only the first connection's");
    assert!(stat(&a, "partial_syncs") >= 6, "{:?}", rep_stats(&a));
    assert!(relay.accepted.load(Ordering::Relaxed) >= 4);
    wait_same(&a, &b, 10);
    assert_eq!(b.conn().get("gap2-299"), Some((2, b"v299".to_vec())));
}

/// The backlog overflows while the link is down: that stream needs, and
/// gets, a full sync; everything still arrives.
#[test]
fn a_backlog_overflow_forces_a_full_sync() {
    let (a, relay, b) = pair_through_relay(&["--replication-backlog", "128k"]);
    let full0 = stat(&a, "full_syncs");
    relay.block(true);
    relay.cut();
    wait_for(10, "A to see the link down", || !streaming(&a));
    let mut ca = a.conn();
    let v = vec![b'o'; 1000];
    for i in 0..1000 {
        ca.set(&format!("over{i}"), 0, 0, &v);
    }
    relay.block(false);
    wait_for(20, "A caught up", || caught_up(&a));
    assert!(stat(&a, "full_syncs") > full0, "{:?}", rep_stats(&a));
    let d = wait_same(&a, &b, 10);
    assert_eq!(d.len(), 1000);
}

/// Warm rejoin: a host started with a reachable partner serves clients
/// only once the partner's full sync has filled it; its very first client
/// request sees every item. The partner loses nothing.
#[test]
fn a_rejoining_host_serves_only_once_filled() {
    let (ra, rb) = (free_port(), free_port());
    let a = host(ra, Some(rb), &["--replication-rejoin-wait", "0"]);
    let mut ca = a.conn();
    let n = 20_000;
    let v = vec![b'r'; 100];
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(format!("set warm{i} 3 0 100 noreply\r\n").as_bytes());
        batch.extend_from_slice(&v);
        batch.extend_from_slice(b"\r\n");
    }
    ca.send(&batch);
    ca.req("mn\r\n", "MN\r\n");
    let before = dump(&a);
    assert_eq!(before.len(), n);
    let b = host(rb, Some(ra), &["--replication-rejoin-wait", "5"]);
    // The first request B answers already sees everything.
    let mut cb = b.conn();
    assert_eq!(cb.get(&format!("warm{}", n - 1)), Some((3, v.clone())));
    assert_eq!(stat(&b, "warm"), 1);
    assert_eq!(stat(&b, "snapshot_items_applied") as usize, n);
    assert_eq!(dump(&b), before);
    assert_eq!(dump(&a), before, "the partner lost or changed nothing");
}

/// Sync mode: a write's reply comes only once the partner applied it, so
/// a read on the partner right after the reply sees it (async mode fails
/// this: its sender polls the backlog every 1-16 ms).
#[test]
fn sync_mode_replies_after_the_partner_applied() {
    let (a, b) = pair(&["--replication-mode", "sync"]);
    let (mut ca, mut cb) = (a.conn(), b.conn());
    for i in 0..300 {
        let k = format!("sync{i}");
        ca.set(&k, i, 0, b"v");
        assert_eq!(
            cb.get(&k),
            Some((i, b"v".to_vec())),
            "{k} not on B at A's reply"
        );
        cb.req(format!("delete {k}\r\n"), "DELETED\r\n");
        assert_eq!(ca.get(&k), None, "{k}: B's delete not on A at B's reply");
    }
    assert!(stat(&a, "sync_waits") >= 300);
    assert_eq!(stat(&a, "sync_timeouts"), 0);
    assert_eq!(stat(&a, "sync_async_now"), 0);
}

/// After one sync wait timed out, A counts it and runs async: 20 writes
/// (keys `async0`..) reply at once.
pub(crate) fn assert_degraded_to_async(a: &Server, ca: &mut Conn) {
    assert_eq!(stat(a, "sync_timeouts"), 1);
    assert_eq!(stat(a, "sync_async_now"), 1);
    let t = Instant::now();
    for i in 0..20 {
        ca.set(&format!("async{i}"), 0, 0, b"y");
    }
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "degraded writes waited: {:?}",
        t.elapsed()
    );
}

/// Sync mode with a blackholed partner: a write waits --replication-timeout,
/// then the host runs async (counted) and replies at once; when the link
/// flows again it returns to sync.
#[test]
fn sync_mode_degrades_to_async_and_back() {
    let (a, relay, b) =
        pair_through_relay(&["--replication-mode", "sync", "--replication-timeout", "300"]);
    let mut ca = a.conn();
    ca.set("fast", 0, 0, b"1");
    relay.pause(true);
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    ca.set("slow", 0, 0, b"2");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "replied after {waited:?}"
    );
    assert_degraded_to_async(&a, &mut ca);
    relay.pause(false);
    wait_for(10, "A caught up", || caught_up(&a));
    ca.set("again", 0, 0, b"4");
    assert_eq!(stat(&a, "sync_async_now"), 0, "back to sync");
    assert_eq!(b.conn().get("async19"), Some((0, b"y".to_vec())));
}

/// Sends SIGCONT to a stopped host when dropped (also when a test fails).
struct Stopped<'a>(&'a Server);

impl<'a> Stopped<'a> {
    fn new(s: &'a Server) -> Stopped<'a> {
        s.signal(libc::SIGSTOP);
        Stopped(s)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// Sync mode waits for the partner's ack only before a write's reply:
/// with the partner stopped (SIGSTOP, its link still open), a set waits
/// the timeout while gets, `mg` and binary gets on other connections, sent
/// during that wait, are answered at once. (Before, every reply waited
/// while any write was unacknowledged, so these reads waited too.)
#[test]
fn sync_mode_reads_do_not_wait_for_the_partner() {
    let (a, b) = pair(&[
        "--replication-mode",
        "sync",
        "--replication-timeout",
        "1500",
    ]);
    let mut ca = a.conn();
    ca.set("r", 4, 0, b"read me");
    assert_eq!(stat(&a, "sync_timeouts"), 0);
    let stopped = Stopped::new(&b);
    std::thread::sleep(Duration::from_millis(50));
    let mut w = a.conn();
    let writer = std::thread::spawn(move || {
        let t = Instant::now();
        w.set("w", 0, 0, b"written");
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut reader = a.conn();
    let t = Instant::now();
    for _ in 0..10 {
        assert_eq!(reader.get("r"), Some((4, b"read me".to_vec())));
        reader.req("mg r v\r\n", "VA 7\r\nread me\r\n");
        assert_eq!(ca.get("r"), Some((4, b"read me".to_vec())));
    }
    // binary get
    let mut bin = a.tcp();
    let mut req = vec![0x80u8, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    req.extend_from_slice(&[0; 8]);
    req.push(b'r');
    bin.write_all(&req).unwrap();
    let mut head = [0u8; 24];
    bin.read_exact(&mut head).unwrap();
    assert_eq!(&head[6..8], &[0, 0], "binary get status");
    let read = t.elapsed();
    assert!(
        read < Duration::from_millis(500),
        "31 reads took {read:?} with the partner stopped"
    );
    let wrote = writer.join().unwrap();
    assert!(
        wrote >= Duration::from_millis(1400),
        "the set replied after {wrote:?}, before the timeout"
    );
    assert!(read + Duration::from_millis(200) < wrote);
    drop(stopped);
    wait_for(10, "A caught up", || caught_up(&a));
    assert_eq!(b.conn().get("w"), Some((0, b"written".to_vec())));
}

/// The remaining TTL of `key` as `mg key t` reports it (-1: none).
fn ttl(c: &mut Conn, key: &str) -> i64 {
    c.send(format!("mg {key} t\r\n"));
    let l = c.line();
    l.split(' ')
        .find_map(|t| t.strip_prefix('t'))
        .unwrap_or_else(|| panic!("{key}: {l}"))
        .parse()
        .unwrap()
}

/// touch, gat, `mg T` and `md x` keep an item's CAS (as memcached does);
/// they travel as a revision of that CAS and move the expiry (and for
/// `md x` the value and flags) on the partner too, the CAS kept on both.
/// (Before revisions the partner dropped them as "not newer" by CAS.)
#[test]
fn touch_and_gat_move_the_expiry_on_the_partner() {
    let (a, b) = pair(&[]);
    let mut c = a.conn();
    for k in ["touch", "gat", "mgt", "mdx"] {
        c.set(k, 5, 0, b"t");
    }
    wait_for(10, "A caught up", || caught_up(&a));
    c.req("touch touch 500\r\n", "TOUCHED\r\n");
    c.send("gat 600 gat\r\n");
    c.read_end();
    c.req("mg mgt T700\r\n", "HD\r\n");
    c.req("md mdx x T800 F9\r\n", "HD\r\n");
    wait_for(10, "A caught up", || caught_up(&a));
    let mut d = b.conn();
    for (name, want) in [("touch", 500), ("gat", 600), ("mgt", 700), ("mdx", 800)] {
        let t = ttl(&mut d, name);
        assert!(t > want - 5 && t <= want, "{name}: ttl {t} on B");
        assert_eq!(
            c.gets(name).unwrap().2,
            d.gets(name).unwrap().2,
            "{name}: CAS differs"
        );
    }
    assert_eq!(d.gets("mdx").map(|g| (g.0, g.1)), Some((9, vec![])));
    assert_eq!(
        d.gets("touch").map(|g| (g.0, g.1)),
        Some((5, b"t".to_vec()))
    );
    assert_eq!(stat(&b, "conflicts"), 0);
    // And back: a touch on B reaches A.
    d.req("touch touch 900\r\n", "TOUCHED\r\n");
    wait_for(10, "B caught up", || caught_up(&b));
    let t = ttl(&mut c, "touch");
    assert!(t > 895 && t <= 900, "ttl {t} on A");
}

/// Two hosts, both streaming, whose links both run through relays (A's
/// records reach B through `to_b`, B's reach A through `to_a`): pausing
/// both makes writes cross on the wire. Returns (A, B, to_a, to_b).
fn relayed_pair() -> (Server, Server, Relay, Relay) {
    let (ra, rb) = (free_port(), free_port());
    let (to_a, to_b) = (Relay::new(ra), Relay::new(rb));
    let a = host(ra, Some(to_b.port), &["--replication-rejoin-wait", "0"]);
    let b = host(rb, Some(to_a.port), &["--replication-rejoin-wait", "0"]);
    wait_for(10, "both streaming", || caught_up(&a) && caught_up(&b));
    (a, b, to_a, to_b)
}

/// Crossing changes of one item: touches of the same CAS on both hosts at
/// once end with the same expiry on both (the newer revision wins on both);
/// a touch on A crossing a set on B ends with B's item on both (a new CAS
/// beats any revision of an older one).
#[test]
fn crossing_touches_and_sets_converge() {
    let (a, b, to_a, to_b) = relayed_pair();
    let (mut ca, mut cb) = (a.conn(), b.conn());
    let pause = |on: bool| {
        to_a.pause(on);
        to_b.pause(on);
        if on {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for round in 0..4 {
        let k = format!("tt{round}");
        ca.set(&k, 0, 0, b"v");
        wait_for(10, "the item on B", || cb.get(&k).is_some());
        pause(true);
        // Alternate which host touches last (the newer revision).
        let (first, second) = if round % 2 == 0 {
            (&mut ca, &mut cb)
        } else {
            (&mut cb, &mut ca)
        };
        first.req(format!("touch {k} 1000\r\n"), "TOUCHED\r\n");
        std::thread::sleep(Duration::from_millis(5));
        second.req(format!("touch {k} 2000\r\n"), "TOUCHED\r\n");
        pause(false);
        wait_for(10, "both caught up", || caught_up(&a) && caught_up(&b));
        let (ta, tb) = (ttl(&mut ca, &k), ttl(&mut cb, &k));
        assert!(
            ta > 1990 && tb > 1990,
            "{k}: the later touch must win on both: A {ta}, B {tb}"
        );
        assert_eq!(ca.gets(&k), cb.gets(&k));
    }
    for round in 0..4 {
        let k = format!("ts{round}");
        ca.set(&k, 0, 0, b"old");
        wait_for(10, "the item on B", || cb.get(&k).is_some());
        pause(true);
        ca.req(format!("touch {k} 1000\r\n"), "TOUCHED\r\n");
        cb.req(format!("set {k} 7 3000 5\r\nB-new\r\n"), "STORED\r\n");
        pause(false);
        wait_for(10, "both caught up", || caught_up(&a) && caught_up(&b));
        let ga = ca.gets(&k);
        assert_eq!(
            ga.as_ref().map(|g| (g.0, g.1.clone())),
            Some((7, b"B-new".to_vec()))
        );
        assert_eq!(ga, cb.gets(&k), "{k}");
        let (ta, tb) = (ttl(&mut ca, &k), ttl(&mut cb, &k));
        assert!(
            ta > 2990 && tb > 2990,
            "{k}: B's set's expiry: A {ta}, B {tb}"
        );
    }
}

/// A set on A and a later delete on B that cross on the wire: both hosts
/// end without the key. (The store keeps no tombstones; without the
/// receiver's record of recent removals B stored A's older item after its
/// own delete, and the hosts diverged.)
#[test]
fn a_set_and_a_newer_delete_crossing_on_the_wire_converge() {
    let (a, b, to_a, to_b) = relayed_pair();
    let (mut ca, mut cb) = (a.conn(), b.conn());
    for round in 0..5 {
        let k = format!("cross{round}");
        ca.set(&k, 0, 0, b"old");
        wait_for(10, "the old value on B", || cb.get(&k).is_some());
        to_a.pause(true);
        to_b.pause(true);
        std::thread::sleep(Duration::from_millis(20));
        ca.set(&k, 0, 0, b"A-new");
        std::thread::sleep(Duration::from_millis(5));
        cb.req(format!("delete {k}\r\n"), "DELETED\r\n");
        to_a.pause(false);
        to_b.pause(false);
        wait_for(10, "both caught up", || caught_up(&a) && caught_up(&b));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ca.gets(&k), None, "{k}: B's newer delete lost on A");
        assert_eq!(cb.gets(&k), None, "{k}: A's older set resurrected on B");
    }
}

/// Both hosts make the same CAS for different items of one key (here a
/// client's meta `E`; two hosts with the same HLC host bit, before it settles,
/// can do it by themselves) and the two writes cross on the wire: both hosts end
/// with the same item, the larger by content (value, then flags). Before,
/// an equal CAS was "not newer" on both sides and each host kept its own
/// item for good.
#[test]
fn equal_cas_writes_crossing_on_the_wire_converge() {
    let (a, b, to_a, to_b) = relayed_pair();
    let (mut ca, mut cb) = (a.conn(), b.conn());
    // (value, flags) on A, on B, and the winner's
    type Side = (&'static str, u32);
    let cases: [(Side, Side, Side); 4] = [
        (("zz", 1), ("aa", 2), ("zz", 1)),
        (("aa", 1), ("zz", 2), ("zz", 2)),
        (("same", 9), ("same", 3), ("same", 9)),
        (("same", 3), ("same", 9), ("same", 9)),
    ];
    for (i, ((va, fa), (vb, fb), (vw, fw))) in cases.into_iter().enumerate() {
        let k = format!("tie{i}");
        let cas = 1_000_000 + i as u64;
        to_a.pause(true);
        to_b.pause(true);
        std::thread::sleep(Duration::from_millis(20));
        ca.req(
            format!("ms {k} {} F{fa} E{cas}\r\n{va}\r\n", va.len()),
            "HD\r\n",
        );
        cb.req(
            format!("ms {k} {} F{fb} E{cas}\r\n{vb}\r\n", vb.len()),
            "HD\r\n",
        );
        to_a.pause(false);
        to_b.pause(false);
        wait_for(10, "both caught up", || caught_up(&a) && caught_up(&b));
        let want = Some((fw, vw.as_bytes().to_vec(), cas));
        assert_eq!(ca.gets(&k), want, "{k} on A");
        assert_eq!(cb.gets(&k), want, "{k} on B");
    }
}

/// Async mode: the partner is killed with SIGKILL in the middle of a write
/// burst on A (and with writes of its own), restarted with the same flags
/// while A keeps writing: within a bounded time both hosts hold the same
/// items, every one of A's writes among them (A's stream full-syncs into
/// the new run of B, B's own empty store never wipes A's newer items).
#[test]
fn a_partner_killed_mid_burst_and_restarted_converges() {
    let (ra, rb) = (free_port(), free_port());
    let a = host(ra, Some(rb), &[]);
    let mut b = host(rb, Some(ra), &[]);
    wait_for(10, "both streaming", || streaming(&a) && streaming(&b));
    let mut cb = b.conn();
    for i in 0..500 {
        cb.set(&format!("fromB{i}"), 1, 0, b"b");
    }
    let n = 40_000usize;
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut ca = a.conn();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let v = [b'x'; 200];
            for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
                let mut batch = Vec::new();
                for i in chunk {
                    batch.extend_from_slice(format!("set burst{i} 0 0 200 noreply\r\n").as_bytes());
                    batch.extend_from_slice(&v);
                    batch.extend_from_slice(b"\r\n");
                }
                ca.send(&batch);
                ca.req("mn\r\n", "MN\r\n");
                progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    wait_for(20, "the burst under way", || {
        progress.load(Ordering::Relaxed) >= 5_000
    });
    b.signal(libc::SIGKILL);
    assert!(b.wait_exit(Duration::from_secs(5)).is_some());
    let at_kill = progress.load(Ordering::Relaxed) as usize;
    assert!(at_kill < n, "the burst ended before the kill");
    std::thread::sleep(Duration::from_millis(300));
    let full0 = stat(&a, "full_syncs");
    b = host(rb, Some(ra), &[]);
    writer.join().unwrap();
    wait_for(30, "A caught up with the new B", || caught_up(&a));
    let d = wait_same(&a, &b, 30);
    for i in (0..n).step_by(97).chain([n - 1]) {
        assert!(d.contains_key(&format!("burst{i}")), "burst{i} lost");
    }
    assert_eq!(d.keys().filter(|k| k.starts_with("burst")).count(), n);
    assert!(
        stat(&a, "full_syncs") > full0,
        "a new run of B gets a full sync"
    );
}

/// General `stats` carries a few replication lines (issue 11: "`stats
/// replication` (and lines in general `stats`)") on a host with
/// `--partner` or `--replication-listen`, after memcached's lines; a plain
/// server has none (its block stays memcached's, which the differential
/// stats tests check line by line).
#[test]
fn general_stats_has_replication_lines_only_when_replicating() {
    let plain = Server::corecached(&["-t", "2"]);
    let st = plain.conn().stats("");
    let extra: Vec<_> = st.keys().filter(|k| k.starts_with("replication")).collect();
    assert!(extra.is_empty(), "a plain server shows {extra:?}");

    let (a, b) = pair(&["--replication-mode", "sync", "--replication-timeout", "300"]);
    wait_for(10, "A caught up", || caught_up(&a));
    let names = [
        "replication_mode",
        "replication_state",
        "replication_lag_records",
        "replication_lag_bytes",
        "replication_partial_syncs",
        "replication_full_syncs",
        "replication_sync_timeouts",
        "replication_sync_async_now",
        "replication_conflicts",
        "replication_inbound_connected",
    ];
    // Raw block: the lines come last, in this order.
    let mut c = a.conn();
    c.send("stats\r\n");
    let raw = String::from_utf8(c.read_end()).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    let tail: Vec<&str> = lines[lines.len() - 1 - names.len()..lines.len() - 1]
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(tail, names, "{raw}");
    let g = a.conn().stats("");
    assert_eq!(g["replication_mode"], "sync");
    assert_eq!(g["replication_state"], "streaming");
    assert_eq!(g["replication_lag_records"], "0");
    assert_eq!(g["replication_full_syncs"], rep_stats(&a)["full_syncs"]);
    assert_eq!(g["replication_inbound_connected"], "1");
    // The partner stopped: writes wait the timeout, then run async; the
    // general block shows the lag, the timeout and the async fallback, as
    // `stats replication` does.
    let stopped = Stopped::new(&b);
    let mut ca = a.conn();
    for i in 0..5 {
        ca.set(&format!("lag{i}"), 0, 0, b"x");
    }
    let g = a.conn().stats("");
    let r = rep_stats(&a);
    let lag: u64 = (0..2)
        .map(|i| r[&format!("stream{i}:lag_records")].parse::<u64>().unwrap())
        .sum();
    assert!(lag >= 5, "{r:?}");
    assert_eq!(g["replication_lag_records"], lag.to_string());
    assert_eq!(g["replication_sync_timeouts"], "1");
    assert_eq!(g["replication_sync_async_now"], "1");
    drop(stopped);
    wait_for(10, "A caught up", || caught_up(&a));
    // A host that only listens: present, nothing to send (`down`).
    let listen_only = host(free_port(), None, &[]);
    let g = listen_only.conn().stats("");
    assert_eq!(g["replication_mode"], "async");
    assert_eq!(g["replication_state"], "down");
    assert_eq!(g["replication_inbound_connected"], "0");
}
