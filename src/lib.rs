//! corecached: a memcached-compatible cache server, one event loop and one shard per core.
pub fn run() -> i32 {
    0
}
