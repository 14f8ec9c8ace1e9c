//! Regression tests for the differences `scripts/difffuzz.py` (the
//! differential fuzzer, docs/ROBUSTNESS.md) found and corecached fixed: the
//! same bytes go to memcached 1.6.18 (from PATH; these tests fail without it)
//! and to corecached, each started fresh, and the replies must be equal.

use crate::binary_wire::{self as bw, op, Client};
use crate::common::{exchange, show, Server};
use std::time::Duration;

/// `script` on a fresh connection to each server, read up to its final
/// `mn`'s `MN`: memcached's bytes and ours.
fn both(script: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let run = |s: &Server| {
        let (out, closed) = exchange(
            s,
            script,
            |b| b.ends_with(b"MN\r\n"),
            Duration::from_millis(50),
            Duration::from_secs(10),
        );
        assert!(!closed, "connection closed: {}", show(&out));
        out
    };
    (run(&mc), run(&cc))
}

/// A value that parses as the number 1 and makes memcached's item (header,
/// CAS, key "z" + NUL, value + CRLF, 4 bytes for non-zero flags) `total`
/// bytes long.
fn one_of_total(total: usize, flags: u32) -> Vec<u8> {
    let n = total - (48 + 8 + 2 + 2 + if flags != 0 { 4 } else { 0 });
    let mut v = vec![b'0'; n];
    v[n - 1] = b'1';
    v
}

/// memcached stores an item of more than 512 KiB (`slab_chunk_max`) in
/// chunks, and its incr/decr/`ma` call a chunked value non-numeric ("too
/// large to be a number") before comparing a CAS; an item of exactly 512 KiB
/// is still a number. corecached parsed the 512 KiB + 1 value as 1 (`incr`
/// answered 2, `ma ... C1` answered EX). Found by difffuzz (a binary
/// Increment with a CAS on a 1 MiB value: memcached 0x06, us 0x02).
#[test]
fn arithmetic_on_a_value_memcached_chunks_is_non_numeric() {
    for flags in [0u32, 7] {
        for total in [512 * 1024, 512 * 1024 + 1] {
            let v = one_of_total(total, flags);
            let mut script = format!("set z {flags} 0 {}\r\n", v.len()).into_bytes();
            script.extend_from_slice(&v);
            script.extend_from_slice(b"\r\nincr z 1\r\ndecr z 1\r\nma z C1\r\nma z\r\nmn\r\n");
            let (mc, cc) = both(&script);
            assert_eq!(
                show(&cc),
                show(&mc),
                "item of {total} bytes, flags {flags}: memcached vs corecached"
            );
            let chunked = total > 512 * 1024;
            assert_eq!(
                mc.starts_with(b"STORED\r\nCLIENT_ERROR cannot increment"),
                chunked,
                "memcached itself: {}",
                show(&mc)
            );
        }
    }
}

/// The same through the binary protocol, with and without a CAS: the status
/// of Increment on the chunked value is 0x06 (non-numeric) on both.
#[test]
fn binary_increment_on_a_value_memcached_chunks_is_non_numeric() {
    let statuses = |s: &Server| {
        let mut c = Client::connect(s.addr().port());
        let mut seen = Vec::new();
        for total in [512 * 1024, 512 * 1024 + 1] {
            let v = one_of_total(total, 0);
            let set = c.call(&bw::set(op::SET, b"z", &v, 0, 0));
            assert_eq!(set.status, 0, "set of {total} bytes");
            for cas in [0u64, 1] {
                let r = c.call(&bw::arith(op::INCR, b"z", 1, 0, 0).cas(cas));
                seen.push((total, cas, r.status, r.value.clone()));
            }
        }
        seen
    };
    let mc = Server::memcached(&[]);
    let cc = Server::corecached(&["-t", "2"]);
    let want = statuses(&mc);
    assert_eq!(
        want[2].2, 0x06,
        "memcached: chunked value is non-numeric: {want:?}"
    );
    assert_eq!(statuses(&cc), want);
}
