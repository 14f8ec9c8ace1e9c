//! afl target: see corecached_fuzz::conn_small.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::conn_small(data));
}
