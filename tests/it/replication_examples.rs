//! The replicated pair in docs/examples/ (replication-a.conf,
//! replication-b.conf, repl.secret.example) starts as shipped: both hosts
//! from those files through `--config`, with only their addresses moved to
//! free loopback ports and the secret path to a copy of the placeholder;
//! a write on A is readable on B, and one on B on A.

use crate::common::{free_port, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/examples")
        .join(name)
}

/// `text` with every `(from, to)` replaced; each `from` must occur (the
/// test breaks loudly if the example changes shape). `-p` lines go: the
/// harness gives the client port.
fn rewrite(text: &str, subst: &[(&str, &str)]) -> String {
    let mut t = text.to_string();
    for (from, to) in subst {
        assert!(t.contains(from), "{from} not in the example:\n{text}");
        t = t.replace(from, to);
    }
    let t: Vec<&str> = t.lines().filter(|l| !l.starts_with("-p ")).collect();
    t.join("\n") + "\n"
}

#[test]
fn the_example_pair_replicates() {
    let dir = std::env::temp_dir().join(format!("corecached-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("repl.secret");
    std::fs::copy(example("repl.secret.example"), &secret).unwrap();
    let (ra, rb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{ra}"), format!("127.0.0.1:{rb}"));
    let secret_s = secret.to_str().unwrap();
    let mut confs = Vec::new();
    for (name, me, other) in [
        ("replication-a.conf", &la, &lb),
        ("replication-b.conf", &lb, &la),
    ] {
        let text = std::fs::read_to_string(example(name)).unwrap();
        let (me_ip, other_ip) = if name.ends_with("a.conf") {
            ("10.0.0.1", "10.0.0.2")
        } else {
            ("10.0.0.2", "10.0.0.1")
        };
        let listen = format!("--replication-listen {me_ip}:11311");
        let partner = format!("--partner {other_ip}:11311");
        let l = format!("-l {me_ip}");
        let out = rewrite(
            &text,
            &[
                (&listen, &format!("--replication-listen {me}")),
                (&partner, &format!("--partner {other}")),
                (&l, "-l 127.0.0.1"),
                (
                    "--replication-secret /etc/corecached/repl.secret",
                    &format!("--replication-secret {secret_s}"),
                ),
                // 64 MiB of backlog per host is the example's; a test
                // machine runs many servers at once.
                ("--replication-backlog 64m", "--replication-backlog 4m"),
            ],
        );
        let p = dir.join(name);
        std::fs::write(&p, out).unwrap();
        confs.push(p);
    }
    let a = Server::corecached(&["--config", confs[0].to_str().unwrap()]);
    let b = Server::corecached(&["--config", confs[1].to_str().unwrap()]);
    let (mut ca, mut cb) = (a.conn(), b.conn());
    for (s, want) in [(&a, &la), (&b, &lb)] {
        let st = s.conn().stats("replication");
        assert_eq!(st["mode"], "async");
        assert_eq!(&st["listen"], want);
    }
    ca.set("written-on-a", 5, 0, b"hello from A");
    cb.set("written-on-b", 6, 0, b"hello from B");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let on_b = cb.get("written-on-a");
        let on_a = ca.get("written-on-b");
        if on_b.is_some() && on_a.is_some() {
            assert_eq!(on_b, Some((5, b"hello from A".to_vec())));
            assert_eq!(on_a, Some((6, b"hello from B".to_vec())));
            break;
        }
        assert!(
            Instant::now() < end,
            "A's write on B: {on_b:?}, B's on A: {on_a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.conn().stats("replication")["auth_failures"], "0");
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/examples/mcrouter.json routes its pair pools to the client address of
/// each example host (`-l` and `-p` of replication-a.conf / replication-b.conf),
/// writes to A and fails over to B: mcrouter itself does not run here, so
/// this keeps the three files in step.
#[test]
fn the_mcrouter_example_routes_to_the_example_pair() {
    let json = std::fs::read_to_string(example("mcrouter.json")).unwrap();
    for (conf, pool) in [
        ("replication-a.conf", "pair-a"),
        ("replication-b.conf", "pair-b"),
    ] {
        let text = std::fs::read_to_string(example(conf)).unwrap();
        let flag = |f: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(f))
                .unwrap_or_else(|| panic!("{f} not in {conf}"))
                .trim()
                .to_string()
        };
        let addr = format!("\"{}:{}\"", flag("-l "), flag("-p "));
        let at = json.find(&format!("\"{pool}\"")).expect(pool);
        let servers = &json[at..json[at..].find(']').map(|e| at + e).unwrap()];
        assert!(
            servers.contains(&addr),
            "{pool} in mcrouter.json is not {addr}"
        );
    }
    assert!(
        json.contains("\"children\": [\"PoolRoute|pair-a\", \"PoolRoute|pair-b\"]"),
        "the pair route fails over from A to B"
    );
}
