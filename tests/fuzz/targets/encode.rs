//! afl target: see corecached_fuzz::encode.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::encode(data));
}
