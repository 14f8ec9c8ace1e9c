//! Counters behind `stats`, with memcached's names.
//!
//! Command counters are per worker: each is written only by its own thread
//! (a relaxed load + store, no locked instruction, no shared cache line) and
//! summed when a client asks. Connection counters are global atomics touched
//! once per connection.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// One worker's command counters.
        #[derive(Default)]
        #[repr(align(128))]
        pub struct WorkerStats {
            $(pub $name: AtomicU64,)*
        }

        /// A snapshot of counters (summed over workers).
        #[derive(Default, Debug, Clone, Copy)]
        pub struct Counters {
            $(pub $name: u64,)*
        }

        impl WorkerStats {
            fn add_to(&self, c: &mut Counters) {
                $(c.$name += self.$name.load(Relaxed);)*
            }
            fn reset(&self) {
                $(self.$name.store(0, Relaxed);)*
            }
        }

        impl Counters {
            /// (name, value) pairs in memcached's order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    conn_yields,
);

/// Bump a single-writer counter (only the owning worker writes it).
#[inline]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Process-wide statistics.
pub struct Stats {
    pub workers: Box<[WorkerStats]>,
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// Connections closed by `-o idle_timeout`.
    pub idle_kicks: AtomicU64,
    /// Connection buffers (see `server::conn`): read buffers allocated and
    /// their capacity in bytes, output buffers likewise, and refusals.
    pub read_buf_count: AtomicU64,
    pub read_buf_bytes: AtomicU64,
    pub read_buf_oom: AtomicU64,
    pub response_obj_count: AtomicU64,
    pub response_obj_bytes: AtomicU64,
    pub response_obj_oom: AtomicU64,
    /// Bytes of connection buffers beyond each buffer's allowance: what
    /// `read_buf_mem_limit` bounds (not a memcached stat).
    pub conn_buf_over: AtomicU64,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            curr_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            idle_kicks: AtomicU64::new(0),
            read_buf_count: AtomicU64::new(0),
            read_buf_bytes: AtomicU64::new(0),
            read_buf_oom: AtomicU64::new(0),
            response_obj_count: AtomicU64::new(0),
            response_obj_bytes: AtomicU64::new(0),
            response_obj_oom: AtomicU64::new(0),
            conn_buf_over: AtomicU64::new(0),
        }
    }

    /// Sum of all workers' counters.
    pub fn sum(&self) -> Counters {
        let mut c = Counters::default();
        for w in self.workers.iter() {
            w.add_to(&mut c);
        }
        c
    }

    /// `stats reset`. Counters are single-writer: a reset from another
    /// worker may race with an increment and lose it, as memcached's may.
    pub fn reset(&self) {
        for w in self.workers.iter() {
            w.reset();
        }
        self.total_connections.store(0, Relaxed);
        self.rejected_connections.store(0, Relaxed);
        self.read_buf_oom.store(0, Relaxed);
        self.response_obj_oom.store(0, Relaxed);
    }
}

/// CPU time used by the process (user, system), microseconds.
pub fn rusage() -> (u64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we own; no aliasing.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0, 0);
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_resets() {
        let s = Stats::new(2);
        bump(&s.workers[0].cmd_get, 2);
        bump(&s.workers[1].cmd_get, 3);
        assert_eq!(s.sum().cmd_get, 5);
        assert!(s.sum().fields().any(|(n, v)| n == "cmd_get" && v == 5));
        s.reset();
        assert_eq!(s.sum().cmd_get, 0);
        let (u, _) = rusage();
        let _ = u;
    }
}
