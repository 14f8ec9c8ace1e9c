//! The black-box integration tests, as one test crate: each module is one
//! suite (its file name says which), all sharing one build of the harness
//! in `common` (servers on free loopback ports, raw-TCP clients) and of the
//! binary-protocol helpers in `binary_wire`.
//!
//! Run one suite with `cargo test --release --test it <module>::`, e.g.
//! `cargo test --release --test it meta_differential::`.
//! `tests/no_alloc.rs` stays a crate of its own: it installs a counting
//! global allocator, which would otherwise apply to every suite here.

mod binary_wire;
mod common;
// Certificates made with openssl, shared by the TLS suites.
mod pki;
// The bench's key streams (bench/loadgen/keys.rs); the store suites use a few.
#[path = "../../bench/loadgen/keys.rs"]
#[allow(dead_code)]
mod keys;

mod admin;
mod ascii_expiry;
mod ascii_limits;
mod ascii_load;
mod ascii_noreply;
mod ascii_stats;
mod ascii_storage;
mod bench_smoke;
mod binary;
mod binary_differential;
mod cas_versions;
mod cli;
mod cli_flags;
mod conn_limits;
mod fuzz_differential;
mod mcrouter;
mod memory_fill_mixed;
mod meta;
mod meta_differential;
mod noreply_differential;
mod observability;
mod ops_conns;
mod ops_detail;
mod ops_flags;
mod ops_memlimit;
mod ops_watch;
mod replication;
mod replication_examples;
mod replication_faults;
mod replication_tls;
mod security_parse;
mod shard_count;
mod stats_counters;
mod storage_memory;
mod store_differential;
mod store_hit_ratio;
mod store_pages;
mod store_stats;
mod systemd;
mod text_differential;
mod tls;
