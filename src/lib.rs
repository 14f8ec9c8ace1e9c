//! corecached: a memcached-compatible cache server, one event loop and one
//! shard per core.
//!
//! Reading order for a request: `server::conn` (bytes in) →
//! `protocol::{ascii,binary,meta}` (bytes → `Request`) → `server::exec`
//! (`Request` → store → `Response`) → `protocol` encoders (bytes out).

pub mod config;
pub mod digits;
pub mod item;
pub mod protocol;
pub mod replication;
pub mod sasl;
pub mod server;
pub mod stats;
pub mod store;
pub mod time;

/// Entry point of the `corecached` binary; returns the exit code.
pub fn run() -> i32 {
    match config::Config::from_args(std::env::args_os()) {
        config::Parsed::Run(cfg) => server::run(cfg),
        config::Parsed::Exit(msg, code) => {
            if code == 0 {
                print!("{msg}");
            } else {
                eprint!("{msg}");
            }
            code
        }
    }
}
