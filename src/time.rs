//! Server time, as memcached keeps it: whole seconds since the process started
//! ("relative time"), plus the conversion of client exptimes into it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Relative times at or above this are absolute Unix times in requests
/// (30 days, memcached's REALTIME_MAXDELTA).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

struct Epoch {
    mono: Instant,
    /// Unix time of the process start, minus 2 as memcached does so that
    /// relative time 0 is never "now" (0 means "never expires" in items).
    unix: i64,
}

fn epoch() -> &'static Epoch {
    static E: OnceLock<Epoch> = OnceLock::new();
    E.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Epoch {
            mono: Instant::now(),
            unix: unix - 2,
        }
    })
}

/// Start the clock (call once at start-up so uptime counts from there).
pub fn init() {
    let _ = epoch();
}

/// Seconds since the process started, read from the clock.
fn read() -> u32 {
    let e = epoch();
    (e.mono.elapsed().as_secs() + 2) as u32
}

thread_local! {
    /// An event loop's copy of `read()` (0: this thread keeps none), set by
    /// `refresh`: requests read the time from here instead of the clock
    /// (a `clock_gettime` per request otherwise), as memcached's requests
    /// read `current_time`, which its timer sets.
    static CACHED: Cell<u32> = const { Cell::new(0) };
}

/// Seconds since the process started (memcached's `current_time`), >= 2:
/// on an event loop thread the value its ticker last set with `refresh`
/// (at most one tick, 100 ms, old), elsewhere read from the clock.
#[inline]
pub fn now() -> u32 {
    match CACHED.with(Cell::get) {
        0 => read(),
        t => t,
    }
}

/// Read the clock and keep the value for this thread's `now()` (an event
/// loop calls this on every tick); returns it.
pub fn refresh() -> u32 {
    let t = read();
    CACHED.with(|c| c.set(t));
    t
}

/// Whole seconds since the process started (`stats` `uptime`).
pub fn uptime() -> u32 {
    now() - 2
}

/// The Unix time of relative time `rel`.
pub fn to_unix(rel: u32) -> i64 {
    epoch().unix + rel as i64
}

/// Unix time now.
pub fn unix_now() -> i64 {
    to_unix(now())
}

/// An item's expiry in relative time: 0 never; otherwise the item is dead
/// once `now() >= exptime`.
///
/// memcached's rules: 0 → never; negative → already expired; up to 30 days
/// relative to now; above that an absolute Unix time (in the past → expired).
pub fn exptime_to_rel(exptime: i64, now: u32) -> u32 {
    if exptime == 0 {
        return 0;
    }
    if exptime < 0 {
        return 1;
    }
    if exptime > REALTIME_MAXDELTA {
        let base = epoch().unix;
        if exptime <= base {
            return 1;
        }
        return u32::try_from(exptime - base).unwrap_or(u32::MAX);
    }
    now.saturating_add(exptime as u32)
}

/// Is an item with relative expiry `exp` dead at `now`?
#[inline]
pub fn is_expired(exp: u32, now: u32) -> bool {
    exp != 0 && exp <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let n = now();
        assert_eq!(exptime_to_rel(0, n), 0);
        assert!(is_expired(exptime_to_rel(-1, n), n));
        assert_eq!(exptime_to_rel(10, n), n + 10);
        assert_eq!(
            exptime_to_rel(REALTIME_MAXDELTA, n),
            n + REALTIME_MAXDELTA as u32
        );
        // absolute time in the past
        assert!(is_expired(exptime_to_rel(REALTIME_MAXDELTA + 1, n), n));
        // absolute time 100 s in the future
        let abs = unix_now() + 100;
        let rel = exptime_to_rel(abs, n);
        assert!(!is_expired(rel, n));
        assert!((rel as i64 - (n as i64 + 100)).abs() <= 1);
        assert!(!is_expired(0, n));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn a_loop_thread_reads_its_ticked_time_other_threads_the_clock() {
        std::thread::spawn(|| {
            // No loop here: the clock.
            assert_eq!(now(), read());
            assert_eq!(refresh(), now());
            // The tick's value stands until the next refresh, whatever
            // the clock says meanwhile.
            CACHED.with(|c| c.set(1_000_000));
            assert_eq!(now(), 1_000_000);
            assert_eq!(uptime(), 1_000_000 - 2);
            std::thread::spawn(|| assert!(now() < 1_000_000))
                .join()
                .unwrap();
            assert!(refresh() < 1_000_000);
            assert!(now() < 1_000_000);
        })
        .join()
        .unwrap();
    }
}
