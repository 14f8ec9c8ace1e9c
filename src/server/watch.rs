//! `watch [fetchers] [mutations] [evictions] [connevents] ...`: memcached's
//! live log stream. With `-W` it is refused as memcached refuses it.

use super::env::{ConnState, Env, Next};

/// `watch ...`.
pub fn command(_args: &[u8], env: &Env<'_>, _conn: &mut ConnState, out: &mut Vec<u8>) -> Next {
    if !env.shared.config.watch_enabled {
        out.extend_from_slice(b"CLIENT_ERROR watch commands not allowed\r\n");
        return Next::Continue;
    }
    // The stream itself is not built yet.
    out.extend_from_slice(b"ERROR\r\n");
    Next::Continue
}
