//! `-m` bounds the server's memory: fill far past capacity over the network
//! and check the resident set (VmRSS) of the real binary stays within `-m`
//! plus a small fixed overhead (index, connection buffers, runtime).

use crate::common::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn stat(c: &mut TcpStream, name: &str) -> u64 {
    c.write_all(b"stats\r\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut v = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.starts_with("END") {
            return v;
        }
        let mut it = line.split_whitespace();
        if it.nth(1) == Some(name) {
            v = it.next().unwrap().parse().unwrap();
        }
    }
}

#[test]
fn memory_limit_bounds_rss_when_filled_past_capacity() {
    let mem_mib = 64u64;
    let server = Server::corecached(&["-t", "2", "-m", &mem_mib.to_string()]);
    let pid = server.pid();
    let mut c = server.tcp();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let base = rss_kib(pid);
    // 1.5M items of 100-byte values: ~3x what 64 MiB holds.
    let val = [b'v'; 100];
    let total = 1_500_000;
    let batch = 5_000;
    let mut buf = Vec::with_capacity(batch * 140);
    let mut sync = [0u8; 64];
    let start = Instant::now();
    for b in 0..total / batch {
        buf.clear();
        for i in 0..batch {
            write!(buf, "set key:{:09} 0 0 100 noreply\r\n", b * batch + i).unwrap();
            buf.extend_from_slice(&val);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"version\r\n");
        c.write_all(&buf).unwrap();
        // wait for the version line: the batch has been applied
        let mut got = 0;
        while !sync[..got].ends_with(b"\r\n") {
            got += c.read(&mut sync[got..]).unwrap();
        }
        assert!(sync.starts_with(b"VERSION"), "{:?}", &sync[..got]);
        assert!(start.elapsed() < Duration::from_secs(240), "fill too slow");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_kib(pid);
    let items = stat(&mut c, "curr_items");
    let evictions = stat(&mut c, "evictions");
    let hash = stat(&mut c, "hash_bytes");
    eprintln!(
        "-m {mem_mib}: base RSS {base} KiB, after fill {rss} KiB, {items} items held, \
         {evictions} evictions, index {hash} bytes, {:.1} bytes/item (RSS)",
        rss as f64 * 1024.0 / items as f64
    );
    assert!(evictions > 0, "filled past capacity");
    assert!(items > 400_000, "items held: {items}");
    // -m plus a small fixed overhead (runtime, index, buffers).
    assert!(
        rss <= (mem_mib + 24) * 1024,
        "RSS {rss} KiB over -m {mem_mib} MiB + 24 MiB"
    );
}
