//! The mutation seam seen from the executor: every client command that
//! changes the cache reaches the shard's commit point exactly once (one
//! `Change` per changed key), and commands that change nothing record
//! nothing. Requests are parsed by the real codecs and run by the real
//! executor against a real store; the journal records on every shard.

use super::env::{ConnState, Env};
use super::exec::execute;
use super::Shared;
use crate::protocol::{ascii, Command, Ctx, Limits, Parsed, Request};
use crate::store::journal_tests::{Rec, Recorder};
use crate::store::{Store, StoreConfig};

fn shared() -> Shared {
    let crate::config::Parsed::Run(config) = crate::config::Config::from_args(["corecached"])
    else {
        panic!("default config")
    };
    let store = Store::new(StoreConfig {
        shards: 2,
        ..StoreConfig::default()
    });
    Shared::new(*config, store, 1, None, None)
}

/// The kinds of change one request recorded, in order.
fn kinds(recs: &[Rec]) -> Vec<&'static str> {
    recs.iter()
        .map(|r| match r {
            Rec::Item { stale: true, .. } => "stale",
            Rec::Item { .. } => "item",
            Rec::Removed { .. } => "removed",
            Rec::Flush { .. } => "flush",
        })
        .collect()
}

#[test]
fn each_client_command_records_one_change_per_changed_key() {
    let shared = shared();
    let rec = Recorder::default();
    for i in 0..shared.store.shard_count() {
        shared
            .store
            .lock_shard(i)
            .set_journal(Some(Box::new(rec.clone())));
    }
    let env = Env {
        shared: &shared,
        stats: &shared.stats.workers[0],
    };
    let limits = Limits {
        max_item_size: shared.config.max_item_size,
    };
    let mut conn = ConnState::default();
    let mut out = Vec::new();
    let mut run = |line: &str| -> Vec<&'static str> {
        let Parsed::Done(req, _) = ascii::parse(line.as_bytes(), &limits) else {
            panic!("{line:?} incomplete")
        };
        out.clear();
        execute(&req, &env, &mut conn, &mut out);
        kinds(&rec.take())
    };
    let cas_of = |k: &[u8]| {
        let mut s = shared.store.lock(k);
        s.get(k, crate::time::now(), None).unwrap().cas
    };
    let big = "x".repeat(2 << 20);
    let item = vec!["item"];
    let none: Vec<&str> = vec![];
    // text storage commands
    assert_eq!(run("set k 0 0 1\r\nv\r\n"), item);
    assert_eq!(run("add k 0 0 1\r\nv\r\n"), none);
    assert_eq!(run("add a 0 0 1\r\nv\r\n"), item);
    assert_eq!(run("replace k 0 0 1\r\nw\r\n"), item);
    assert_eq!(run("replace zz 0 0 1\r\nw\r\n"), none);
    assert_eq!(run("append k 0 0 1\r\nx\r\n"), item);
    assert_eq!(run("prepend k 0 0 1\r\ny\r\n"), item);
    assert_eq!(run("cas k 0 0 1 1\r\nz\r\n"), none);
    let c = cas_of(b"k");
    assert_eq!(run(&format!("cas k 0 0 1 {c}\r\nz\r\n")), item);
    // a set refused as too large drops the old value: one removal
    assert_eq!(
        run(&format!("set k 0 0 {}\r\n{big}\r\n", big.len())),
        ["removed"]
    );
    assert_eq!(run(&format!("set k 0 0 {}\r\n{big}\r\n", big.len())), none);
    // arithmetic, touch, gat, reads
    assert_eq!(run("set n 0 0 2\r\n10\r\n"), item);
    assert_eq!(run("incr n 5\r\n"), item);
    assert_eq!(run("decr n 1\r\n"), item);
    assert_eq!(run("incr missing 1\r\n"), none);
    assert_eq!(run("touch n 100\r\n"), item);
    assert_eq!(run("gat 100 n\r\n"), item);
    assert_eq!(run("gats 100 n a zz\r\n"), ["item", "item"]);
    assert_eq!(run("get n a\r\n"), none);
    assert_eq!(run("gets n\r\n"), none);
    // delete
    assert_eq!(run("delete n\r\n"), ["removed"]);
    assert_eq!(run("delete n\r\n"), none);
    // meta
    assert_eq!(run("ms m 1\r\nv\r\n"), item);
    assert_eq!(run("ms m 1 MA\r\nw\r\n"), item);
    assert_eq!(run("ms m 1 ME\r\nw\r\n"), none);
    assert_eq!(
        run(&format!("ms m {} T0\r\n{big}\r\n", big.len())),
        ["removed"]
    );
    assert_eq!(run("ms m 1 T0\r\nv\r\n"), item);
    assert_eq!(run("md m I T30\r\n"), ["stale"]);
    assert_eq!(run("mg m v\r\n"), none); // takes the recache win only
    assert_eq!(run("ms m 1 I C1\r\nl\r\n"), ["stale"]);
    assert_eq!(run("md m x\r\n"), item);
    assert_eq!(run("md m\r\n"), ["removed"]);
    assert_eq!(run("md m\r\n"), none);
    assert_eq!(run("ma c N0 J5\r\n"), item);
    assert_eq!(run("ma c\r\n"), item);
    assert_eq!(run("ma c MD D2 T40\r\n"), item);
    assert_eq!(run("ma missing\r\n"), none);
    assert_eq!(run("mg c T30\r\n"), item);
    assert_eq!(run("mg q N30 v\r\n"), item);
    assert_eq!(run("mg q v\r\n"), none);
    assert_eq!(run("mg c s v f t\r\n"), none);
    assert_eq!(run("me c\r\n"), none);
    assert_eq!(run("mn\r\n"), none);
    // mcrouter: a lease-get miss creates the lease item; lease-set fills it
    assert_eq!(run("lease-get l\r\n"), item);
    let token = cas_of(b"l");
    assert_eq!(run(&format!("lease-set l {token} 0 0 1\r\nv\r\n")), item);
    assert_eq!(run("lease-set l 1 0 0 1\r\nv\r\n"), none);
    assert_eq!(run("metaget l\r\n"), none);
    // flush_all: one per shard
    assert_eq!(run("flush_all\r\n"), ["flush", "flush"]);
    // binary incr that creates the item (the codec's Command, run as binary)
    let req = Request {
        cmd: Command::Arith {
            key: b"b",
            incr: true,
            delta: 1,
            initial: Some((7, 0)),
            cas: 0,
        },
        ctx: Ctx {
            binary: true,
            opcode: 0x05,
            ..Ctx::default()
        },
    };
    execute(&req, &env, &mut ConnState::default(), &mut Vec::new());
    assert_eq!(kinds(&rec.take()), item);
}
