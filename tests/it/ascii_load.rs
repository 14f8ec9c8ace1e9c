//! Pipelining, back-pressure and multi-core routing.
use crate::common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn pipelined_mixed_commands_answered_in_order() {
    let s = Server::start();
    let mut c = s.conn();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..1000 {
        let v = format!("value-{i}");
        req.extend_from_slice(format!("set p{i} {i} 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        want.extend_from_slice(b"STORED\r\n");
        req.extend_from_slice(format!("get p{i} nokey\r\n").as_bytes());
        want.extend_from_slice(format!("VALUE p{i} {i} {}\r\n{v}\r\nEND\r\n", v.len()).as_bytes());
        match i % 4 {
            0 => {
                req.extend_from_slice(format!("delete p{i}\r\n").as_bytes());
                want.extend_from_slice(b"DELETED\r\n");
            }
            1 => {
                req.extend_from_slice(format!("touch p{i} 0\r\n").as_bytes());
                want.extend_from_slice(b"TOUCHED\r\n");
            }
            2 => {
                req.extend_from_slice(b"bogus\r\n");
                want.extend_from_slice(b"ERROR\r\n");
            }
            _ => {
                req.extend_from_slice(format!("add p{i} 0 0 1\r\nx\r\n").as_bytes());
                want.extend_from_slice(b"NOT_STORED\r\n");
            }
        }
    }
    c.send(&req);
    c.expect(&want);
}

#[test]
fn pipelined_commands_split_at_every_byte_boundary() {
    let s = Server::start();
    let mut c = s.conn();
    let req = b"set a 1 0 3\r\nabc\r\nget a\r\nincr n 1\r\nappend a 0 0 2\r\nde\r\ngets nokey\r\ndelete a\r\n";
    let want = b"STORED\r\nVALUE a 1 3\r\nabc\r\nEND\r\nNOT_FOUND\r\nSTORED\r\nEND\r\nDELETED\r\n";
    for chunk in req.chunks(1) {
        c.send(chunk);
    }
    c.expect(want);
    for chunk in req.chunks(7) {
        c.send(chunk);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.expect(want);
}

#[test]
fn megabyte_burst_of_gets_read_late() {
    let s = Server::start();
    let mut c = s.conn();
    let val = vec![b'v'; 100];
    for i in 0..100 {
        c.set(&format!("b{i}"), i, 0, &val);
    }
    // ~1 MiB of pipelined gets; replies are ~13x larger than requests, so the
    // server must cope with a client that is not reading.
    let mut req = Vec::new();
    let mut n = 0usize;
    while req.len() < 1 << 20 {
        req.extend_from_slice(format!("get b{}\r\n", n % 100).as_bytes());
        n += 1;
    }
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&req).unwrap();
    });
    std::thread::sleep(Duration::from_millis(700));
    let mut want = Vec::new();
    for i in 0..n {
        let f = i % 100;
        want.extend_from_slice(format!("VALUE b{f} {f} 100\r\n").as_bytes());
        want.extend_from_slice(&val);
        want.extend_from_slice(b"\r\nEND\r\n");
    }
    let got = c.read_n(want.len());
    writer.join().unwrap();
    assert!(got == want, "burst replies differ");
    c.req("version\r\n", "VERSION ");
}

#[test]
fn client_that_never_reads_does_not_blow_up_the_server() {
    let mut s = Server::start();
    let mut c = s.conn();
    c.set("big", 0, 0, &vec![b'x'; 500_000]);
    let rss_before = rss_kib(s.pid());
    // A connection that sends gets for a 500 kB value forever and never reads.
    let mut hog = std::net::TcpStream::connect(s.addr()).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = b"get big\r\n".repeat(1000);
    let start = Instant::now();
    let mut sent = 0usize;
    let mut blocked = false;
    while start.elapsed() < Duration::from_secs(3) {
        match hog.write(&req) {
            Ok(k) => sent += k,
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(
        blocked,
        "the server kept reading {sent} bytes of requests without anyone reading replies"
    );
    // Requests accepted imply at most sent/9 * 500 kB of replies; the server
    // must have stopped reading long before that became memory.
    std::thread::sleep(Duration::from_millis(300));
    s.assert_alive();
    let rss_after = rss_kib(s.pid());
    assert!(
        rss_after < rss_before + 256 * 1024,
        "server RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Others are still served, including big values.
    let mut d = s.conn();
    d.req("get nokey\r\n", "END\r\n");
    assert_eq!(d.get("big").unwrap().1.len(), 500_000);
    drop(hog);
    let mut e = s.conn();
    e.req("get nokey\r\n", "END\r\n");
    s.assert_alive();
}

#[test]
fn keys_set_on_one_connection_are_seen_on_all_others() {
    // With SO_REUSEPORT the kernel spreads connections over the cores; use
    // many connections so that several cores are involved.
    let s = Server::with_args(&["-t", "2"]);
    let mut a = s.conn();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..2000 {
        let v = format!("v{i}-{}", "x".repeat(i % 50));
        req.extend_from_slice(format!("set route:{i} {i} 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        want.extend_from_slice(b"STORED\r\n");
    }
    a.send(&req);
    a.expect(&want);
    let mut readers: Vec<Conn> = (0..8).map(|_| s.conn()).collect();
    for (r, c) in readers.iter_mut().enumerate() {
        for batch in 0..20 {
            let mut line = String::from("get");
            let mut want = Vec::new();
            for i in batch * 100..batch * 100 + 100 {
                line.push_str(&format!(" route:{i}"));
                let v = format!("v{i}-{}", "x".repeat(i % 50));
                want.extend_from_slice(
                    format!("VALUE route:{i} {i} {}\r\n{v}\r\n", v.len()).as_bytes(),
                );
            }
            want.extend_from_slice(b"END\r\n");
            line.push_str("\r\n");
            c.send(line);
            c.expect(want);
        }
        // each reader also mutates a key that the next reader checks
        c.req(format!("incr ctr{r} 1\r\n"), "NOT_FOUND\r\n");
        c.req(format!("set shared{r} 0 0 1\r\n{}\r\n", r), "STORED\r\n");
    }
    for (r, c) in readers.iter_mut().enumerate() {
        let other = (r + 1) % 8;
        c.req(
            format!("get shared{other}\r\n"),
            format!("VALUE shared{other} 0 1\r\n{other}\r\nEND\r\n"),
        );
    }
    // concurrent writers from several threads, then cross-reads
    a.req("set counter 0 0 1\r\n0\r\n", "STORED\r\n");
    let addr = s.addr();
    let hs: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..250 {
                    c.set(&format!("t{t}:{i}"), t, 0, format!("{t}:{i}").as_bytes());
                    c.send("incr counter 1\r\n");
                    let n: u64 = c.line().parse().expect("incr reply is a number");
                    assert!((1..=1000).contains(&n));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let mut z = s.conn();
    for t in 0..4u32 {
        for i in (0..250).step_by(17) {
            assert_eq!(
                z.get(&format!("t{t}:{i}")).unwrap(),
                (t, format!("{t}:{i}").into_bytes())
            );
        }
    }
    // increments from four connections (several cores) are atomic
    z.req("get counter\r\n", "VALUE counter 0 4\r\n1000\r\nEND\r\n");
    let mut buf = [0u8; 1];
    z.s.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(z.s.read(&mut buf).is_err(), "no stray bytes");
}
