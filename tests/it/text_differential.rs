//! Differential tests of the text protocol: the same byte scripts go to
//! memcached 1.6.18 (the reference, from PATH; these tests fail without it)
//! and to the server under test, each started fresh (`-t 2`) for every
//! script; the reply streams must be byte-identical after normalising the
//! fields that legitimately differ:
//!
//! * cas unique values (`VALUE k f n <cas>`),
//! * the version string (`VERSION <v>`; `STAT version` is only checked for
//!   presence),
//! * `stats` blocks: only the fields in `GENERAL_COMPARED` are compared by
//!   value, `GENERAL_PRESENT` must merely exist; any other memcached stat
//!   (libevent, rusage_*, pointer_size, slab_*, lru_*, hash_*, read_buf_*,
//!   response_obj_*, reserved_fds, conn_yields, store_too_large,
//!   get_flushed, ...) may be lacking in corecached, and corecached may add
//!   its own fields,
//! * `stats settings`: only `SETTINGS_COMPARED` are compared (tcpport by
//!   presence),
//! * other stats blocks (items, slabs, ...): format checked, content ignored.
//!
//! The binary and meta protocols have their own differential suites
//! (binary_differential, meta_differential). With
//! CORECACHED_TEST_SERVER=memcached both sides are memcached (A/A).

use crate::common::{self, Kind, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The data block of a storage line refused for a bad field: memcached runs
/// it as a command, corecached swallows it (docs/COMPATIBILITY.md). A block
/// that is a silent command gives the same bytes on both, so these scripts
/// still compare the error replies byte for byte. 19 bytes.
const SILENT: &str = "verbosity 0 noreply";
const MIB: usize = 1024 * 1024;

fn k250() -> String {
    "k".repeat(250)
}

fn k251() -> String {
    "k".repeat(251)
}

/// One step of a script: bytes to send, or a pause in seconds.
enum Step {
    Send(Vec<u8>),
    Sleep(f64),
}

impl From<&str> for Step {
    fn from(s: &str) -> Step {
        Step::Send(s.as_bytes().to_vec())
    }
}

impl From<String> for Step {
    fn from(s: String) -> Step {
        Step::Send(s.into_bytes())
    }
}

impl From<Vec<u8>> for Step {
    fn from(b: Vec<u8>) -> Step {
        Step::Send(b)
    }
}

impl From<f64> for Step {
    fn from(secs: f64) -> Step {
        Step::Sleep(secs)
    }
}

/// A storage command line and its data block.
fn st(cmd: &str, key: &str, flags: u64, exp: i64, val: impl AsRef<[u8]>, extra: &str) -> Vec<u8> {
    let val = val.as_ref();
    let mut b = format!("{cmd} {key} {flags} {exp} {}{extra}\r\n", val.len()).into_bytes();
    b.extend_from_slice(val);
    b.extend_from_slice(b"\r\n");
    b
}

/// `set key 0 0 <len>` with `val`.
fn set(key: &str, val: impl AsRef<[u8]>) -> Vec<u8> {
    st("set", key, 0, 0, val, "")
}

/// Send every step on one connection, then `quit` (unless the server closed
/// already), and read to EOF: the complete reply stream, ending with
/// `<TIMEOUT>` if the server neither closed nor answered within 10 s, and
/// always with `<CLOSED>`.
fn run_script(port: u16, steps: &[Step]) -> Vec<u8> {
    let timeout = Duration::from_secs(10);
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let gone =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset);
    let mut closed_early = false;
    for step in steps {
        match step {
            Step::Sleep(secs) => std::thread::sleep(Duration::from_secs_f64(*secs)),
            Step::Send(b) => match s.write_all(b) {
                Ok(()) => {}
                Err(e) if gone(&e) => {
                    closed_early = true;
                    break;
                }
                Err(e) => panic!("write to port {port}: {e}"),
            },
        }
    }
    if !closed_early {
        match s.write_all(b"quit\r\n") {
            Err(e) if !gone(&e) => panic!("write to port {port}: {e}"),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            out.extend_from_slice(b"<TIMEOUT>");
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                out.extend_from_slice(b"<TIMEOUT>");
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read from port {port}: {e}"),
        }
    }
    out.extend_from_slice(b"<CLOSED>");
    out
}

// ---- normalisation ---------------------------------------------------------

const GENERAL_COMPARED: &[&str] = &[
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "curr_items",
    "evictions",
    "limit_maxbytes",
    "threads",
];
/// Present, value not compared (volatile or implementation-defined).
const GENERAL_PRESENT: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "curr_connections",
    "total_connections",
    "get_expired",
    "total_items",
    "bytes",
];
const SETTINGS_COMPARED: &[&str] = &[
    "maxbytes",
    "maxconns",
    "num_threads",
    "item_size_max",
    "cas_enabled",
    "evictions",
    "verbosity",
    "flush_enabled",
];
const SETTINGS_PRESENT: &[&str] = &["tcpport"];

/// `line` (one `\n`-terminated piece of the stream) is `<head>` followed by
/// bytes without CR and then CRLF.
fn is_crlf_line(line: &[u8], head: &[u8]) -> bool {
    line.len() >= head.len() + 2
        && line.starts_with(head)
        && line.ends_with(b"\r\n")
        && !line[head.len()..line.len() - 2].contains(&b'\r')
}

/// `VALUE <key> <flags> <bytes> <cas>\r\n` with the cas masked, else None.
fn mask_value_cas(line: &[u8]) -> Option<Vec<u8>> {
    let body = line.strip_prefix(b"VALUE ")?.strip_suffix(b"\r\n")?;
    let t: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
    let nonspace = |w: &[u8]| !w.is_empty() && !w.iter().any(|b| b" \t\n\r\x0b\x0c".contains(b));
    let digits = |w: &[u8]| !w.is_empty() && w.iter().all(u8::is_ascii_digit);
    if t.len() == 4 && nonspace(t[0]) && digits(t[1]) && digits(t[2]) && digits(t[3]) {
        let mut out = b"VALUE ".to_vec();
        out.extend_from_slice(&body[..body.len() - t[3].len() - 1]);
        out.extend_from_slice(b" <cas>\r\n");
        Some(out)
    } else {
        None
    }
}

/// A `STAT ...` block (the lines, without its `END`) reduced to the
/// compared fields; panics on a badly formed line.
fn norm_stats(lines: &[&[u8]]) -> Vec<u8> {
    let mut d = std::collections::HashMap::new();
    for l in lines {
        let l: String = l[..l.len() - 2].iter().map(|&b| b as char).collect();
        let parts: Vec<&str> = l.splitn(3, ' ').collect();
        assert!(
            parts.len() == 3 && !parts[1].is_empty() && !parts[2].is_empty(),
            "bad stats line {l:?}"
        );
        d.insert(parts[1].to_string(), parts[2].to_string());
    }
    let (compared, present) = if d.contains_key("pid") {
        (GENERAL_COMPARED, GENERAL_PRESENT)
    } else if d.contains_key("maxbytes") {
        (SETTINGS_COMPARED, SETTINGS_PRESENT)
    } else {
        return b"<STATS BLOCK>\r\nEND\r\n".to_vec();
    };
    let mut out = String::new();
    for k in compared {
        let v = d.get(*k).map_or("<MISSING>", String::as_str);
        out.push_str(&format!("STAT {k} {v}\r\n"));
    }
    for k in present {
        let v = if d.contains_key(*k) { "*" } else { "<MISSING>" };
        out.push_str(&format!("STAT {k} {v}\r\n"));
    }
    out.push_str("END\r\n");
    out.chars().map(|c| c as u8).collect()
}

fn normalise(raw: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len() && is_crlf_line(lines[j], b"STAT ") {
            j += 1;
        }
        if j > i {
            if lines.get(j) == Some(&&b"END\r\n"[..]) {
                out.extend(norm_stats(&lines[i..j]));
                i = j + 1;
            } else {
                lines[i..j].iter().for_each(|l| out.extend_from_slice(l));
                i = j;
            }
            continue;
        }
        let l = lines[i];
        if let Some(masked) = mask_value_cas(l) {
            out.extend(masked);
        } else if is_crlf_line(l, b"VERSION ") {
            out.extend_from_slice(b"VERSION <v>\r\n");
        } else {
            out.extend_from_slice(l);
        }
        i += 1;
    }
    out
}

fn show_diff(a: &[u8], b: &[u8]) -> String {
    let al: Vec<&[u8]> = split_crlf(a);
    let bl: Vec<&[u8]> = split_crlf(b);
    for (i, (x, y)) in al.iter().zip(&bl).enumerate() {
        if x != y {
            return format!(
                "first difference at line {i}:\n  memcached: {}\n  tested:    {}",
                common::show(&x[..x.len().min(200)]),
                common::show(&y[..y.len().min(200)])
            );
        }
    }
    format!("lengths differ: {} vs {} lines", al.len(), bl.len())
}

fn split_crlf(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(p) = common::memfind(rest, b"\r\n") {
        out.push(&rest[..p]);
        rest = &rest[p + 2..];
    }
    out.push(rest);
    out
}

/// Run `steps` on a fresh memcached and a fresh server under test at the
/// same time (scripts with sleeps take seconds) and compare.
fn differential(name: &str, steps: &[Step]) {
    let reference = Server::start_kind(Kind::Memcached, &["-t", "2"]);
    let mut tested = Server::start();
    let (ref_out, out) = std::thread::scope(|sc| {
        let r = sc.spawn(|| run_script(reference.port, steps));
        let t = sc.spawn(|| run_script(tested.port, steps));
        (r.join().unwrap(), t.join().unwrap())
    });
    tested.assert_alive();
    assert!(
        common::memfind(&ref_out, b"<TIMEOUT>").is_none(),
        "script {name} times out on memcached: {}",
        common::show(&ref_out[ref_out.len().saturating_sub(300)..])
    );
    let (a, c) = (normalise(&ref_out), normalise(&out));
    assert!(a == c, "{name}: {}", show_diff(&a, &c));
}

/// One test per script: `name: [step, ...];` where a step is anything that
/// converts into `Step` (str, String, Vec<u8>: sent; f64: seconds of sleep).
macro_rules! scripts {
    ($($name:ident: [$($step:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                differential(stringify!($name), &[$(Step::from($step)),*]);
            }
        )*
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

scripts! {
    get_miss: ["get nokey\r\n", "get a b c\r\n"];
    set_get: [st("set", "a", 5, 0, "hello", ""), "get a\r\n", "get a a nokey a\r\n"];
    set_empty_value: [set("e", ""), "get e\r\n"];
    gets_multi: [set("a", "1"), st("set", "b", 3, 0, "22", ""), "gets a b nokey\r\n"];
    add_outcomes: [st("add", "a", 0, 0, "1", ""), st("add", "a", 0, 0, "2", ""), "get a\r\n"];
    replace_outcomes: [
        st("replace", "a", 0, 0, "1", ""),
        set("a", "1"),
        st("replace", "a", 9, 0, "2", ""),
        "get a\r\n",
    ];
    append_prepend: [
        st("append", "a", 0, 0, "x", ""),
        st("prepend", "a", 0, 0, "x", ""),
        st("set", "a", 4, 0, "mid", ""),
        st("append", "a", 7, 0, "_end", ""),
        st("prepend", "a", 8, 0, "start_", ""),
        "get a\r\n",
    ];
    cas_outcomes: [
        st("cas", "nokey", 0, 0, "x", " 1"),
        set("a", "v"),
        "gets a\r\n",
        st("cas", "a", 0, 0, "w", " 999999"),
        "get a\r\n",
    ];
    cas_missing_unique: [
        format!("cas a 0 0 19\r\n{SILENT}\r\n"),
        format!("cas a 0 0 19 abc\r\n{SILENT}\r\n"),
    ];
    delete_forms: [
        "delete a\r\n",
        set("a", "1"),
        "delete a 0\r\n",
        set("a", "1"),
        "delete a 5\r\n",
        "delete a x\r\n",
        "delete a noreply extra\r\n",
        "delete a 0 noreply extra\r\n",
        "delete\r\n",
        "get a\r\n",
        "delete a\r\n",
    ];
    incr_decr: [
        st("set", "n", 3, 0, "10", ""),
        "incr n 5\r\n",
        "decr n 3\r\n",
        "decr n 100\r\n",
        "get n\r\n",
        "incr nokey 1\r\n",
        "decr nokey 1\r\n",
    ];
    incr_errors: [
        set("s", "abc"),
        "incr s 1\r\n",
        "decr s 1\r\n",
        "incr s abc\r\n",
        "incr s -1\r\n",
        "incr s 18446744073709551616\r\n",
        "incr s\r\n",
        "incr\r\n",
    ];
    incr_wrap: [
        set("n", "18446744073709551615"),
        "incr n 1\r\n",
        "get n\r\n",
        "incr n 5\r\n",
        "get n\r\n",
    ];
    incr_length_change: [
        st("set", "n", 2, 0, "99", ""),
        "incr n 1\r\n",
        "get n\r\n",
        "decr n 91\r\n",
        "get n\r\n",
        "incr n 999990\r\n",
        "get n\r\n",
    ];
    incr_spaces: [set("n", " 7"), "incr n 1\r\n", set("m", "7 "), "incr m 1\r\n", "get n m\r\n"];
    touch: [
        "touch a 10\r\n",
        set("a", "1"),
        "touch a 10\r\n",
        "touch a abc\r\n",
        "touch a\r\n",
        "get a\r\n",
    ];
    gat_gats: [
        st("set", "a", 1, 0, "1", ""),
        "gat 100 a nokey\r\n",
        "gats 100 a\r\n",
        "gat abc a\r\n",
        "gat\r\n",
        "gat 10\r\n",
    ];
    flush_all: [
        set("a", "1"),
        set("b", "2"),
        "flush_all\r\n",
        "get a b\r\n",
        set("a", "3"),
        "get a\r\n",
        "flush_all 0\r\n",
        "get a\r\n",
        "flush_all abc\r\n",
        "flush_all noreply\r\n",
    ];
    flush_all_delay: [
        set("a", "1"),
        "flush_all 2\r\n",
        "get a\r\n",
        3.1,
        "get a\r\n",
        set("b", "2"),
        "get b\r\n",
    ];
    flush_all_negative: [
        set("a", "1"),
        "flush_all -1\r\n",
        "get a\r\n",
        set("b", "2"),
        "get b\r\n",
        "flush_all noreply extra\r\n",
    ];
    version: ["version\r\n", "version extra\r\n"];
    verbosity: [
        "verbosity 1\r\n",
        "verbosity\r\n",
        "verbosity abc\r\n",
        "verbosity 1 2\r\n",
        "verbosity 0 noreply\r\n",
        "verbosity 0\r\n",
    ];
    quit_stops_processing: [set("a", "1"), "quit\r\nget a\r\n"];
    unknown_commands: [
        "foo\r\n",
        "\r\n",
        "GET a\r\n",
        "SET a 0 0 1\r\nx\r\n",
        "get\r\n",
        "gets\r\n",
        "bogus noreply\r\n",
        "set a 0 0\r\n",
    ];
    noreply_storage: [
        st("set", "a", 0, 0, "1", " noreply"),
        st("add", "a", 0, 0, "2", " noreply"),
        st("replace", "z", 0, 0, "2", " noreply"),
        st("append", "a", 0, 0, "3", " noreply"),
        st("prepend", "a", 0, 0, "0", " noreply"),
        st("cas", "a", 0, 0, "9", " 1 noreply"),
        st("cas", "z", 0, 0, "9", " 1 noreply"),
        "get a z\r\n",
    ];
    noreply_other: [
        set("n", "5"),
        "incr n 3 noreply\r\n",
        "decr n 1 noreply\r\n",
        "incr z 1 noreply\r\n",
        "touch n 10 noreply\r\n",
        "touch z 10 noreply\r\n",
        "get n\r\n",
        "delete n noreply\r\n",
        "delete n noreply\r\n",
        "delete n 0 noreply\r\n",
        "get n\r\n",
        "flush_all noreply\r\n",
        "flush_all 0 noreply\r\n",
        "version\r\n",
    ];
    noreply_errors: [
        set("s", "abc"),
        "incr s 1 noreply\r\n",
        "incr s abc noreply\r\n",
        "touch s abc noreply\r\n",
        "delete s 5 noreply\r\n",
        "flush_all abc noreply\r\n",
        format!("set {} 0 0 1 noreply\r\n", k251()),
        "set k 0 0 3 noreply\r\nabcd\r\n",
        "set k 0 abc 1 noreply\r\nx\r\n",
        "get s noreply\r\n",
    ];
    key_250: [set(&k250(), "ok"), format!("get {}\r\n", k250()), format!("delete {}\r\n", k250())];
    key_251_get: [
        set("a", "1"),
        0.05,
        format!("get {}\r\n", k251()),
        0.05,
        format!("get a {}\r\n", k251()),
        0.05,
        format!("gets {} a\r\n", k251()),
    ];
    // The sleeps keep memcached from batching these: a too-long key in a
    // get/gat makes memcached 1.6.18 drop every reply it had queued from the
    // same read (a bug corecached need not copy).
    key_251_others: [
        format!("incr {} 1\r\n", k251()),
        0.05,
        format!("delete {}\r\n", k251()),
        0.05,
        format!("touch {} 1\r\n", k251()),
        0.05,
        format!("gat 1 {}\r\n", k251()),
    ];
    key_251_set: [
        set(&k251(), SILENT),
        st("add", &k251(), 0, 0, SILENT, ""),
        format!("set {} 0 0 -1\r\n", k251()),
        "get k\r\n",
    ];
    control_chars_in_key: [
        set("a\x01b", "1"),
        "get a\x01b\r\n",
        set("t\tab", "2"),
        "get t\tab\r\nget t\r\n",
        set("d\x7fe", "3"),
        "get d\x7fe\r\n",
    ];
    nul_in_key: ["set n\x00x 0 0 1\r\nx\r\n", "get n\x00x\r\n"];
    flags_range: [
        st("set", "f", 4294967295, 0, "x", ""),
        "get f\r\n",
        format!("set f -1 0 19\r\n{SILENT}\r\n"),
        format!("set f abc 0 19\r\n{SILENT}\r\n"),
        format!("set f 18446744073709551616 0 19\r\n{SILENT}\r\n"),
        "get f\r\n",
    ];
    bad_length: [
        "set k 0 0 -1\r\n",
        "set k 0 0 abc\r\n",
        format!("set k 0 abc 19\r\n{SILENT}\r\n"),
        "get k\r\n",
    ];
    too_many_tokens: [
        format!("set k 0 0 19 noreply extra\r\n{SILENT}\r\n"),
        "set k 0 0 1 bogus\r\nx\r\n",
        "get k\r\n",
    ];
    bad_data_chunk: [
        set("k", "v1"),
        "set k 0 0 3\r\nabcXY\r\n",
        "set k 0 0 3\r\nabcd\r\n",
        "set k 0 0 3\r\nabc\rX",
        "set k 0 0 3\r\nab\r\nX",
        "set k 0 0 1\nx\n",
        "get k\r\n",
    ];
    too_large: [
        set("big", "old"),
        set("big", vec![b'x'; MIB + 1]),
        "get big\r\n",
        set("k", "v"),
        st("append", "k", 0, 0, vec![b'y'; MIB + 1], ""),
        "get k\r\n",
    ];
    too_large_noreply: [st("set", "big", 0, 0, vec![b'z'; 2 * MIB], " noreply"), "get big\r\n"];
    near_limit_value: [set("big", vec![b'n'; MIB - 1024]), "get nokey\r\n"];
    expiry_relative: [
        st("set", "t1", 0, 2, "a", ""),
        set("t0", "b"),
        st("set", "neg", 0, -1, "c", ""),
        "get t1 t0 neg\r\n",
        3.2,
        "get t1 t0 neg\r\n",
        "touch t1 1\r\n",
        "add t1 0 0 1\r\nx\r\n",
    ];
    expiry_touch_gat: [
        set("a", "1"),
        set("b", "2"),
        st("set", "c", 0, 2, "3", ""),
        "touch a 2\r\n",
        "gat 2 b\r\n",
        "touch c 100\r\n",
        "gat -1 c\r\n",
        "get c\r\n",
        3.2,
        "get a b\r\n",
    ];
    expiry_30_days_boundary: [
        st("set", "rel", 0, 2592000, "r", ""),
        st("set", "abs", 0, 2592001, "a", ""),
        "get rel abs\r\n",
    ];
    stats_general: [
        set("a", "1"),
        "get a b\r\n",
        "incr a 1\r\nincr z 1\r\ndecr a 1\r\ndecr z 1\r\n",
        "touch a 0\r\ntouch z 0\r\ngat 0 a z\r\n",
        "delete a\r\ndelete a\r\n",
        set("c", "1"),
        st("cas", "c", 0, 0, "2", " 1"),
        st("cas", "z", 0, 0, "2", " 1"),
        st("add", "c", 0, 0, "1", ""),
        "stats\r\n",
    ];
    // no items around the flush: memcached counts flushed items in curr_items
    // until something reclaims them, which is timing-dependent
    stats_cmd_flush: ["flush_all\r\n", "flush_all 0\r\n", "get a\r\n", "stats\r\n"];
    stats_reset: [set("a", "1"), "get a\r\n", "stats reset\r\n", "stats\r\n"];
    stats_settings: ["stats settings\r\n", "verbosity 1\r\n", "stats settings\r\n"];
    stats_bogus: ["stats bogus\r\n"];
    stats_items_slabs: [set("a", "1"), "stats items\r\n", "stats slabs\r\n"];
    pipelined_burst: [pipelined_burst_script()];
    long_get_line: [format!(
        "get {}\r\n",
        (0..3000).map(|i| format!("miss{i}")).collect::<Vec<_>>().join(" ")
    )];
    partial_line_then_newline: ["x".repeat(1000), 0.2, "\r\n", "get ", 0.1, "a\r\n"];
    line_too_long_closes: ["x".repeat(5000), 0.5];
    line_too_long_set_closes: [format!("set k 0 0 1 {}", "y".repeat(5000)), 0.5];
}

/// 300 pipelined `set pN N 0 <len>` + `get pN` pairs, then one get of all.
fn pipelined_burst_script() -> String {
    let mut s = String::new();
    for i in 0..300 {
        let v = i.to_string();
        s.push_str(&format!(
            "set p{i} {i} 0 {}\r\n{v}\r\nget p{i}\r\n",
            v.len()
        ));
    }
    let keys: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    s.push_str(&format!("get {}\r\n", keys.join(" ")));
    s
}

#[test]
fn enough_scripts() {
    assert!(SCRIPTS.len() >= 40, "{} scripts", SCRIPTS.len());
    let unique: std::collections::HashSet<_> = SCRIPTS.iter().collect();
    assert_eq!(unique.len(), SCRIPTS.len());
}

/// The normaliser masks exactly what it should, and no more.
#[test]
fn normalise_masks_only_the_named_fields() {
    let raw = b"VALUE a 5 3 123\r\nabc\r\nVALUE b 0 1\r\nx\r\nVERSION 1.6.18\r\n\
STAT pid 1\r\nSTAT cmd_get 7\r\nSTAT uptime 3\r\nEND\r\n\
STAT maxbytes 64\r\nSTAT tcpport 1\r\nEND\r\nSTAT items:1:number 1\r\nEND\r\n\
STAT lonely 1\r\nVERSIONx\r\n<CLOSED>";
    let n = String::from_utf8(normalise(raw)).unwrap();
    let want = [
        "VALUE a 5 3 <cas>\r\nabc\r\nVALUE b 0 1\r\nx\r\nVERSION <v>\r\n",
        "STAT cmd_get 7\r\n",
        "STAT get_hits <MISSING>\r\n",
        "STAT pid *\r\nSTAT uptime *\r\nSTAT time <MISSING>\r\n",
        "STAT maxbytes 64\r\nSTAT maxconns <MISSING>\r\n",
        "STAT tcpport *\r\nEND\r\n<STATS BLOCK>\r\nEND\r\nSTAT lonely 1\r\nVERSIONx\r\n<CLOSED>",
    ];
    for w in want {
        assert!(n.contains(w), "{w:?} not in {n:?}");
    }
    assert!(!n.contains("123") && !n.contains("1.6.18"), "{n:?}");
}
