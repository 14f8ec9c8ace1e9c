//! afl target: see corecached_fuzz::meta.
fn main() {
    afl::fuzz!(|data: &[u8]| corecached_fuzz::meta(data));
}
