//! afl target: see corecached_fuzz::conn.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::conn(data));
}
