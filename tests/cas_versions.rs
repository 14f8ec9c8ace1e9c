//! CAS values are versions: a client-given CAS (meta `E`) is observed by the
//! shard's clock, so a later plain write gets a larger CAS (before, a `set`
//! after `ms ... E<big>` got a smaller one, and a replica's last-writer-wins
//! would have kept the older value).

mod common;

use common::Server;

#[test]
fn a_set_after_a_client_given_cas_gets_a_larger_one() {
    let s = Server::corecached(&["-t", "2"]);
    let mut c = s.conn();
    let big: u64 = 10_000_000_000_000_000_000;
    c.req(format!("ms k 1 E{big}\r\n1\r\n"), "HD\r\n");
    c.req("mg k c\r\n", format!("HD c{big}\r\n"));
    c.req("set k 0 0 1\r\n2\r\n", "STORED\r\n");
    let (_, v, cas) = c.gets("k").unwrap();
    assert_eq!(v, b"2");
    assert!(cas > big, "CAS {cas} after E{big}");
    // the same through md I E, ma E, mg N E, each followed by a set of the
    // same key (the clock is the key's shard's)
    for (i, (key, cmd)) in [
        ("k", "md k I E{}\r\n"),
        ("n", "ma n E{} N0 J1\r\n"),
        ("v", "mg v N0 E{}\r\n"),
    ]
    .iter()
    .enumerate()
    {
        let e = big + (i as u64 + 1) * 1_000_000_000;
        c.send(cmd.replace("{}", &e.to_string()));
        let reply = c.line();
        assert!(
            reply.starts_with("HD") || reply.starts_with("EN"),
            "{reply}"
        );
        c.req(format!("set {key} 0 0 1\r\n2\r\n"), "STORED\r\n");
        let (_, _, cas) = c.gets(key).unwrap();
        assert!(cas > e, "{cmd}: CAS {cas} after E{e}");
    }
}
