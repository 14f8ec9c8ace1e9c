//! afl target: see corecached_fuzz::tls.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::tls(data));
}
