//! systemd's service protocol (`Type=notify`): `READY=1` once every event
//! loop serves its listeners, `STATUS=` lines, `STOPPING=1` when a shutdown
//! starts, and `WATCHDOG=1` keep-alives while every loop is alive.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd) every
//! call is a no-op. The watchdog pings only when `WATCHDOG_USEC` is set (the
//! unit's `WatchdogSec=`), and only while each loop's ticker has run within
//! the last half interval: a loop stuck in a request stops the pings and
//! systemd restarts the service, as it would a hung memcached.

use super::Shared;
use sd_notify::NotifyState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Send `states` to the service manager, if there is one. Errors (a manager
/// that went away) are not the server's problem: it keeps serving.
fn send(states: &[NotifyState<'_>]) {
    let _ = sd_notify::notify(false, states);
}

/// A loop serves its listeners; the last of them tells systemd we are ready.
pub fn loop_ready(shared: &Shared) {
    let ready = shared.loops_ready.fetch_add(1, Ordering::SeqCst) + 1;
    if ready == shared.config.threads {
        let status = format!(
            "serving on port {} with {} event loop(s)",
            shared.config.port, shared.config.threads
        );
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }
}

/// A shutdown has started (SIGTERM, SIGINT or `shutdown`).
pub fn stopping(why: &str) {
    let status = format!("shutting down: {why}");
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// Milliseconds on a monotonic clock, for the loops' heartbeats.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Start the watchdog thread when the unit asked for one (`WatchdogSec=`).
pub fn start_watchdog(shared: Arc<Shared>) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    // A loop whose ticker has not run for this long is stuck.
    let stale_ms = (usec / 2000).max(1);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if shared.shutdown.load(Ordering::Relaxed) {
                return;
            }
            let now = mono_ms();
            let alive = shared
                .heartbeats
                .iter()
                .all(|b| now.saturating_sub(b.load(Ordering::Relaxed)) <= stale_ms);
            if alive {
                send(&[NotifyState::Watchdog]);
            }
        })
        .expect("spawn watchdog thread");
}
