//! afl target: see corecached_fuzz::binary.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::binary(data));
}
