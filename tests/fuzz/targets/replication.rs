//! afl target: see corecached_fuzz::replication.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::replication(data));
}
