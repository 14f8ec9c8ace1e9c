//! Meta protocol scenarios against a running corecached: lease-style
//! recache (W / Z / stale value), invalidate with `md I` then recache,
//! vivify on miss, `q` + `mn` pipelines, base64 binary keys, opaque echo.

use crate::common;

use common::Server;

fn start() -> Server {
    Server::corecached(&["-t", "2"])
}

struct Conn(common::Conn);

impl Conn {
    fn new(s: &Server) -> Conn {
        Conn(s.conn())
    }

    /// Send `req` and read whole lines through the line `until`.
    fn call_until(&mut self, req: &[u8], until: &[u8]) -> String {
        self.0.send(req);
        String::from_utf8_lossy(&self.0.read_through_line(until)).into_owned()
    }

    /// Send `req` followed by `mn` and return everything before `MN`.
    fn call(&mut self, req: &str) -> String {
        String::from_utf8_lossy(&self.0.call_mn(req)).into_owned()
    }
}

/// Replace the digits after ` c` with `C` so CAS values compare.
fn no_cas(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    let mut prev_space = true;
    while let Some(c) = chars.next() {
        out.push(c);
        if prev_space && c == 'c' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('#');
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
        }
        prev_space = c == ' ';
    }
    out
}

fn cas_of(reply: &str) -> u64 {
    reply
        .split([' ', '\r'])
        .find_map(|t| t.strip_prefix('c').and_then(|n| n.parse().ok()))
        .expect("c flag")
}

#[test]
fn lease_recache_first_wins_others_see_z_and_stale_value() {
    let s = start();
    let mut a = Conn::new(&s);
    let mut b = Conn::new(&s);
    assert_eq!(a.call("ms page 5 T30\r\nhello\r\n"), "HD\r\n");
    // TTL 30 is below the recache threshold 60: the first reader wins...
    assert_eq!(a.call("mg page v R60 t\r\n"), "VA 5 t30 W\r\nhello\r\n");
    // ...every other reader sees Z and keeps serving the current value.
    assert_eq!(b.call("mg page v R60 t\r\n"), "VA 5 t30 Z\r\nhello\r\n");
    assert_eq!(a.call("mg page v R60\r\n"), "VA 5 Z\r\nhello\r\n");
    // a threshold below the TTL does not win
    assert_eq!(
        b.call("ms other 1 T100\r\nx\r\nmg other R10 v\r\n"),
        "HD\r\nVA 1\r\nx\r\n"
    );
    // the winner recaches: a fresh item, no Z, no win on offer for R60 with TTL 300
    assert_eq!(a.call("ms page 5 T300\r\nfresh\r\n"), "HD\r\n");
    assert_eq!(b.call("mg page v R60\r\n"), "VA 5\r\nfresh\r\n");
    // items without a TTL never win through R
    assert_eq!(
        a.call("ms forever 1\r\nx\r\nmg forever R60\r\n"),
        "HD\r\nHD\r\n"
    );
}

#[test]
fn invalidate_with_md_i_then_recache() {
    let s = start();
    let mut a = Conn::new(&s);
    let mut b = Conn::new(&s);
    let r = a.call("ms row 3 T100\r\nold\r\nmg row c\r\n");
    let c0 = cas_of(&r);
    // invalidate: marked stale, CAS bumped, TTL cut to 30
    assert_eq!(a.call("md row I T30\r\n"), "HD\r\n");
    // a debug probe must not take the win from the first real reader
    assert!(b.call("me row\r\n").starts_with("ME row "));
    let r = a.call("mg row v c t\r\n");
    assert!(r.ends_with(" t30 X W\r\nold\r\n"), "{r}");
    let c1 = cas_of(&r);
    assert!(c1 > c0);
    // the stale value is served to others with Z
    assert_eq!(no_cas(&b.call("mg row v c\r\n")), "VA 3 c# Z X\r\nold\r\n");
    // a late writer holding the pre-invalidation CAS may only store stale (I)
    assert_eq!(b.call(&format!("ms row 4 C{c0}\r\nlate\r\n")), "EX\r\n");
    assert_eq!(b.call(&format!("ms row 4 I C{c0}\r\nlate\r\n")), "HD\r\n");
    assert_eq!(b.call("mg row v t\r\n"), "VA 4 t30 Z X\r\nlate\r\n");
    // the winner recaches with a plain set: clean again
    assert_eq!(a.call("ms row 3 T100\r\nnew\r\n"), "HD\r\n");
    assert_eq!(b.call("mg row v\r\n"), "VA 3\r\nnew\r\n");
    // md I honours C, and q hides HD but not NF/EX
    assert_eq!(
        a.call("md row I C1 q\r\nmd nope I q\r\nmd row I q\r\n"),
        "EX\r\nNF\r\n"
    );
    assert_eq!(a.call("mg row\r\n"), "HD X W\r\n");
    // E sets the new CAS explicitly
    assert_eq!(
        a.call("md row I E777\r\nmg row c\r\n"),
        "HD\r\nHD c777 X W\r\n"
    );
}

#[test]
fn vivify_on_miss() {
    let s = start();
    let mut a = Conn::new(&s);
    let mut b = Conn::new(&s);
    assert_eq!(a.call("mg fresh N30 v t s\r\n"), "VA 0 t30 s0 W\r\n\r\n");
    assert_eq!(b.call("mg fresh N30 v t\r\n"), "VA 0 t30 Z\r\n\r\n");
    assert_eq!(b.call("mg fresh N30 q k\r\n"), "HD kfresh Z\r\n");
    assert_eq!(a.call("ms fresh 4 T60\r\ndata\r\n"), "HD\r\n");
    assert_eq!(b.call("mg fresh N30 v\r\n"), "VA 4\r\ndata\r\n");
    // E picks the vivified item's CAS
    assert_eq!(a.call("mg other N30 E42 c\r\n"), "HD c42 W\r\n");
    // ma N creates with J, ms N in append mode creates with the data
    assert_eq!(
        a.call("ma ctr N0 J10 v\r\nma ctr v\r\n"),
        "VA 2\r\n10\r\nVA 2\r\n11\r\n"
    );
    assert_eq!(
        a.call("ms log 3 MA N60\r\nabc\r\nms log 3 MA\r\ndef\r\nmg log v t\r\n"),
        "HD\r\nHD\r\nVA 6 t60\r\nabcdef\r\n"
    );
    assert_eq!(a.call("ms log2 3 MA\r\nabc\r\n"), "NS\r\n");
}

#[test]
fn quiet_pipelines_and_mn() {
    let s = start();
    let mut a = Conn::new(&s);
    let mut pipe = String::new();
    for i in 0..50 {
        pipe.push_str(&format!("ms k{i} 2 q\r\nv{}\r\n", i % 10));
    }
    // every store succeeds silently
    assert_eq!(a.call(&pipe), "");
    let mut gets = String::new();
    for i in 0..60 {
        gets.push_str(&format!("mg k{i} v q k\r\n"));
    }
    let r = a.call(&gets);
    // 50 hits, the 10 misses are silent
    assert_eq!(r.matches("VA 2").count(), 50, "{r}");
    assert!(!r.contains("EN"));
    assert!(r.starts_with("VA 2 kk0\r\nv0\r\nVA 2 kk1\r\nv1\r\n"));
    // quiet deletes/arith: only failures are reported
    assert_eq!(
        a.call("md k1 q\r\nmd k1 q\r\nma n q\r\nms n 1 q\r\n5\r\nma n q\r\nma n v\r\n"),
        "NF\r\nNF\r\nVA 1\r\n7\r\n"
    );
    // errors are never hidden
    assert_eq!(a.call("mg k1 q Z\r\n"), "CLIENT_ERROR invalid flag\r\n");
    // mn alone
    assert_eq!(a.call(""), "");
}

#[test]
fn base64_binary_keys() {
    let s = start();
    let mut a = Conn::new(&s);
    // "\x00 \r\n" cannot travel in the ASCII protocol: base64 "ACANCg=="
    assert_eq!(
        a.call("ms ACANCg== 3 b k T0\r\nbin\r\n"),
        "HD kACANCg== b\r\n"
    );
    assert_eq!(
        a.call("mg ACANCg== b k v\r\n"),
        "VA 3 kACANCg== b\r\nbin\r\n"
    );
    assert_eq!(
        a.call("mg ACANCg== b k v q\r\nmg AA== b k O1\r\n"),
        "VA 3 kACANCg== b\r\nbin\r\nEN kAA== b O1\r\n"
    );
    let r = a.call("me ACANCg== b\r\n");
    assert!(r.starts_with("ME ACANCg== exp=-1 la="), "{r}");
    assert!(r.ends_with(" fetch=yes cls=1 size=66\r\n"), "{r}");
    assert_eq!(a.call("ma AQ== b N0 J1 v k\r\n"), "VA 1 kAQ== b\r\n1\r\n");
    assert_eq!(a.call("md ACANCg== b q\r\nmg ACANCg== b v\r\n"), "EN\r\n");
    // a 250-byte base64 key decodes to 187 bytes
    let raw: Vec<u8> = (0..187u32).map(|i| (i * 7) as u8).collect();
    let b64 = b64(&raw);
    assert_eq!(b64.len(), 252);
    let short = &b64[..248];
    assert_eq!(
        a.call(&format!("ms {short} 1 b\r\nx\r\nmg {short} b s\r\n")),
        "HD\r\nHD s1\r\n"
    );
    assert_eq!(
        a.call(&format!("mg {b64} b\r\n")),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        a.call("mg !!!! b\r\n"),
        "CLIENT_ERROR error decoding key\r\n"
    );
    // the ASCII get cannot see the binary key, but a plain key is shared
    assert_eq!(a.call("ms plain 2\r\nhi\r\n"), "HD\r\n");
    assert_eq!(
        a.call_until(b"get plain\r\n", b"END\r\n"),
        "VALUE plain 0 2\r\nhi\r\nEND\r\n"
    );
    assert_eq!(
        a.call("mg cGxhaW4= b v k\r\n"),
        "VA 2 kcGxhaW4= b\r\nhi\r\n"
    );
}

fn b64(src: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in src.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn opaque_echo() {
    let s = start();
    let mut a = Conn::new(&s);
    let r = a.call(
        "ms o 1 O1\r\nx\r\nmg o O2 v\r\nmg nope O3\r\nmd nope O4\r\nma nope O5\r\nms o 1 ME O6\r\ny\r\nmd o O7 q\r\nmd o O8\r\n",
    );
    assert_eq!(
        r,
        "HD O1\r\nVA 1 O2\r\nx\r\nEN O3\r\nNF O4\r\nNF O5\r\nNS O6\r\nNF O8\r\n"
    );
    let o32 = format!("O{}", "a".repeat(31));
    assert_eq!(a.call(&format!("mg o {o32}\r\n")), format!("EN {o32}\r\n"));
    let o33 = format!("O{}", "a".repeat(32));
    assert_eq!(
        a.call(&format!("mg o {o33}\r\n")),
        "CLIENT_ERROR opaque token too long\r\n"
    );
    // ma applies the update before reporting the long opaque, as memcached
    assert_eq!(
        a.call(&format!("ma c N0 J5\r\nma c {o33}\r\nma c v\r\n")),
        "HD\r\nCLIENT_ERROR opaque token too long\r\nVA 1\r\n7\r\n"
    );
}

#[test]
fn flags_ttl_cas_and_modes() {
    let s = start();
    let mut a = Conn::new(&s);
    assert!(a.call("ms f 3 F99 T100 c\r\nabc\r\n").starts_with("HD c"));
    let r = a.call("mg f f t s v h l u\r\n");
    // The TTL counts down with the server's 1 s clock: a second boundary (or
    // a loaded machine) between the set and the get shows t99 or t98.
    let ttl_ok = ["t100", "t99", "t98"]
        .iter()
        .any(|t| r == format!("VA 3 f99 {t} s3 h0 l0\r\nabc\r\n"));
    assert!(ttl_ok, "{r:?}");
    // u did not mark it fetched
    assert_eq!(a.call("mg f h\r\nmg f h\r\n"), "HD h0\r\nHD h1\r\n");
    // T touches (t shows the new TTL after T), C skips the value when the CAS matches
    let c = cas_of(&a.call("mg f c\r\n"));
    let r = a.call(&format!("mg f v C{c} t T5\r\n"));
    assert!(
        ["HD t100\r\n", "HD t99\r\n", "HD t98\r\n"].contains(&r.as_str()),
        "{r:?}"
    );
    assert_eq!(a.call("mg f T7 t\r\n"), "HD t7\r\n");
    assert_eq!(a.call("mg f v C999999\r\n"), "VA 3\r\nabc\r\n");
    // E: explicit CAS on store; C compares it
    assert_eq!(a.call("ms f 1 E500 c\r\nz\r\n"), "HD c500\r\n");
    assert_eq!(
        a.call("ms f 1 C499\r\ny\r\nms f 1 C500 c E501\r\ny\r\n"),
        "EX\r\nHD c501\r\n"
    );
    // modes
    assert_eq!(
        a.call("ms f 1 ME\r\nq\r\nms g 1 ME\r\nq\r\n"),
        "NS\r\nHD\r\n"
    );
    assert_eq!(
        a.call("ms g 2 MA s\r\nrs\r\nms g 2 MP s\r\npq\r\nmg g v\r\n"),
        "HD s3\r\nHD s5\r\nVA 5\r\npqqrs\r\n"
    );
    assert_eq!(
        a.call("ms h 1 MR\r\nx\r\nms h 1 C5\r\nx\r\nms g 1 MR\r\nR\r\nmg g v\r\n"),
        "NS\r\nNF\r\nHD\r\nVA 1\r\nR\r\n"
    );
    // md x keeps an empty item; ma modes, deltas and t
    assert_eq!(
        a.call("md g x\r\nmg g v s f\r\n"),
        "HD\r\nVA 0 s0 f0\r\n\r\n"
    );
    assert_eq!(
        a.call("ma n N0 J100 MD D30 v\r\nma n MD D30 v\r\nma n M- D500 v t\r\nma n M+ D2 v\r\n"),
        "VA 3\r\n100\r\nVA 2\r\n70\r\nVA 1 t-1\r\n0\r\nVA 1\r\n2\r\n"
    );
    assert_eq!(a.call("ma n T50 t v\r\n"), "VA 1 t50\r\n3\r\n");
    assert_eq!(a.call("ma n t T80\r\n"), "HD t50\r\n");
    assert_eq!(
        a.call("ms s 2\r\nhi\r\nma s\r\n"),
        "HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    // expired with T-1
    assert_eq!(a.call("ms e 1 T-1\r\nx\r\nmg e\r\n"), "HD\r\nEN\r\n");
}

#[test]
fn too_large_and_bad_chunk_keep_the_stream_in_sync() {
    let s = start();
    let mut a = Conn::new(&s);
    assert_eq!(a.call("ms big 1\r\nx\r\n"), "HD\r\n");
    let n = 2_000_000;
    let mut req = format!("ms big {n} T0\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'x', n));
    req.extend_from_slice(b"\r\nmg big v\r\nmn\r\n");
    let r = a.call_until(&req, b"MN\r\n");
    // memcached drops the old value when a store fails for size
    assert_eq!(r, "SERVER_ERROR object too large for cache\r\nEN\r\nMN\r\n");
    assert_eq!(
        a.call("ms k 2\r\nhiXX\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
}

#[test]
fn stats_counters() {
    let s = start();
    let mut a = Conn::new(&s);
    a.call("ms a 1\r\n1\r\nmg a v\r\nmg b v\r\nmg a T10\r\nmd a\r\nmd a\r\nma n\r\nme a\r\n");
    let st = a.call_until(b"stats\r\n", b"END\r\n");
    let get = |name: &str| -> u64 {
        st.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("{name}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        (
            get("cmd_set"),
            get("cmd_get"),
            get("get_hits"),
            get("get_misses")
        ),
        (1, 2, 1, 1)
    );
    assert_eq!((get("cmd_touch"), get("touch_hits")), (1, 1));
    assert_eq!(
        (get("delete_hits"), get("delete_misses"), get("incr_misses")),
        (1, 1, 1)
    );
    assert_eq!(get("cmd_meta"), 1);
}
