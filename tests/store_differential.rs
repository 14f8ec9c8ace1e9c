//! Differential tests of two store rules against memcached 1.6.18.
//!
//! The "too large" rule at its exact boundary: the same
//! text `set`/`append`, binary Set/Append and meta `ms` requests to
//! memcached 1.6.18 and to corecached, with `-I 1k` (memcached's smallest;
//! it also wants `-o slab_chunk_max=1024` at that size, which only moves
//! where its large items are chunked, not the size rule). Values run from
//! two bytes under to two bytes over the largest that fits, with client
//! flags 0 and non-zero and two key lengths: memcached counts the key, its
//! NUL, the value's CRLF, a 48-byte header, the 8-byte CAS and 4 bytes of
//! flags when they are non-zero (`corecached::item::item_fits`). Each
//! request is followed by a read of the key, so the unlink of the old value
//! on a refused set is compared too, and the `store_too_large` counters are
//! compared at the end.
//!
//! How incr/decr read an item's value (memcached's `safe_strtoull`, one
//! implementation in `corecached::digits` for arguments and values).
//!
//! memcached must be on PATH (the project's test script installs it): this
//! test fails, never skips, without it.

mod binary_wire;
mod common;

use binary_wire::{op, set as bin_set, Client, Pkt};
use common::Server;
use std::time::Duration;

const MAX: usize = 1024;

/// The largest value that fits `-I 1k` by memcached's rule.
fn largest(key: &str, flags: u32) -> usize {
    MAX - 48 - 8 - key.len() - 1 - 2 - if flags != 0 { 4 } else { 0 }
}

fn servers() -> (Server, Server) {
    let mc = Server::memcached(&["-I", "1k", "-o", "slab_chunk_max=1024"]);
    let cc = Server::corecached(&["-t", "2", "-I", "1k"]);
    (mc, cc)
}

/// Text and meta: every request with the reply it got (up to the `mn`).
fn text_session(s: &Server) -> Vec<(String, String)> {
    let mut c = s.conn();
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut call = |req: Vec<u8>, what: String| {
        let got = c.call_mn(&req);
        seen.push((what, String::from_utf8_lossy(&got).into_owned()));
    };
    for key in ["k", &"K".repeat(200)] {
        for flags in [0u32, 5] {
            let top = largest(key, flags);
            for n in top - 2..=top + 2 {
                // text set over an old value, then read it back
                let mut r =
                    format!("set {key} 0 0 3\r\nold\r\nset {key} {flags} 0 {n}\r\n").into_bytes();
                r.extend(vec![b'x'; n]);
                r.extend_from_slice(format!("\r\nmg {key} s f\r\n").as_bytes());
                call(r, format!("set {key} flags {flags} len {n}"));
                // meta ms (mode set), same
                let mut r =
                    format!("set {key} 0 0 3\r\nold\r\nms {key} {n} F{flags}\r\n").into_bytes();
                r.extend(vec![b'y'; n]);
                r.extend_from_slice(format!("\r\nmg {key} s f\r\n").as_bytes());
                call(r, format!("ms {key} F{flags} len {n}"));
                // append: the combined item counts the old item's flags
                let base = 900usize.min(n);
                let extra = n - base;
                let mut r = format!("set {key} {flags} 0 {base}\r\n").into_bytes();
                r.extend(vec![b'a'; base]);
                r.extend_from_slice(format!("\r\nappend {key} 0 0 {extra}\r\n").as_bytes());
                r.extend(vec![b'b'; extra]);
                r.extend_from_slice(format!("\r\nmg {key} s f\r\n").as_bytes());
                call(r, format!("append {key} flags {flags} to {n}"));
                // meta append (MA), same
                let mut r = format!("set {key} {flags} 0 {base}\r\n").into_bytes();
                r.extend(vec![b'a'; base]);
                r.extend_from_slice(format!("\r\nms {key} {extra} MA\r\n").as_bytes());
                r.extend(vec![b'b'; extra]);
                r.extend_from_slice(format!("\r\nmg {key} s f\r\n").as_bytes());
                call(r, format!("ms MA {key} flags {flags} to {n}"));
            }
        }
    }
    let stats = c.stats("");
    seen.push((
        "stats".into(),
        ["store_too_large", "store_no_memory", "cmd_set"]
            .iter()
            .map(|k| format!("{k}={}", stats[*k]))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    seen
}

#[test]
fn text_and_meta_too_large_boundary_matches_memcached() {
    let (mc, cc) = servers();
    let want = text_session(&mc);
    let got = text_session(&cc);
    // The boundary really is where the rule says (memcached's own answer).
    let top = largest("k", 5);
    let at = |n: usize| {
        want.iter()
            .find(|(w, _)| *w == format!("set k flags 5 len {n}"))
            .unwrap()
            .1
            .clone()
    };
    assert!(!at(top).contains("SERVER_ERROR"), "{}", at(top));
    assert!(at(top + 1).contains("SERVER_ERROR object too large"));
    assert_eq!(got.len(), want.len());
    for ((what, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g, w, "{what} (left corecached, right memcached)");
    }
}

/// Binary: status of each Set/Append and the Get after it.
fn binary_session(s: &Server) -> Vec<(String, u16, u16, usize)> {
    let mut c = Client::connect(s.port);
    let mut seen = Vec::new();
    for key in ["k", &"K".repeat(200)] {
        let k = key.as_bytes();
        for flags in [0u32, 5] {
            let top = largest(key, flags);
            for n in top - 2..=top + 2 {
                let v = vec![b'x'; n];
                let r = c.batch(&[
                    bin_set(op::SET, k, b"old", 0, 0),
                    bin_set(op::SET, k, &v, flags, 0),
                    Pkt::new(op::GET).key(k),
                ]);
                seen.push((
                    format!("set {} flags {flags} len {n}", key.len()),
                    r[1].status,
                    r[2].status,
                    r[2].value.len(),
                ));
                let base = 900usize.min(n);
                let r = c.batch(&[
                    bin_set(op::SET, k, &v[..base], flags, 0),
                    Pkt::new(op::APPEND).key(k).value(&v[base..]),
                    Pkt::new(op::GET).key(k),
                ]);
                seen.push((
                    format!("append {} flags {flags} to {n}", key.len()),
                    r[1].status,
                    r[2].status,
                    r[2].value.len(),
                ));
                // an append whose own value is over the limit
                let r = c.batch(&[
                    bin_set(op::SET, k, b"old", flags, 0),
                    Pkt::new(op::APPEND).key(k).value(&v),
                    Pkt::new(op::GET).key(k),
                ]);
                seen.push((
                    format!("append {} flags {flags} of {n}", key.len()),
                    r[1].status,
                    r[2].status,
                    r[2].value.len(),
                ));
            }
        }
    }
    seen
}

#[test]
fn binary_too_large_boundary_matches_memcached() {
    let (mc, cc) = servers();
    let want = binary_session(&mc);
    let got = binary_session(&cc);
    // memcached: E2BIG (0x03) one byte past the rule's largest value.
    let top = largest("k", 5);
    let st = |n: usize| {
        want.iter()
            .find(|(w, ..)| *w == format!("set 1 flags 5 len {n}"))
            .unwrap()
            .1
    };
    assert_eq!((st(top), st(top + 1)), (0, 3));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "left corecached, right memcached");
    }
}

#[test]
fn incr_reads_item_values_as_memcached() {
    let script = |s: &Server| {
        let mut c = s.conn();
        c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        for v in [
            "10 abc", "+5", "\t7x", " 12", "-5", "-0", "7\t", "99 ", "x1", " ",
        ] {
            let r = format!(
                "set n 0 0 {}\r\n{v}\r\nincr n 1\r\ndecr n 3\r\nget n\r\n",
                v.len()
            );
            out.push((v, String::from_utf8_lossy(&c.call_mn(r)).into_owned()));
        }
        out
    };
    let (mc, cc) = servers();
    let want = script(&mc);
    assert!(want[0].1.contains("\r\n11\r\n"), "{:?}", want[0]);
    assert_eq!(script(&cc), want, "left corecached, right memcached");
}
