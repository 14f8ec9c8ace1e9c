//! afl target: see corecached_fuzz::ascii.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::ascii(data));
}
