//! Counters behind `stats`, with memcached's names, and the one place that
//! decides which counters a command's result moves (`count_*`, called by the
//! text, binary and meta executors alike).
//!
//! Command counters are per worker: each is written only by its own thread
//! (a relaxed load + store, no locked instruction, no shared cache line) and
//! summed when a client asks. Connection counters are global atomics touched
//! once per connection. Item counters (`get_expired`, `get_flushed`,
//! evictions, ...) are the store's (`store::ShardStats`), counted where the
//! store finds them.

use crate::store::StoreMode;
use crate::store::{ArithResult, DeleteResult, StoreResult};
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
            /// (name, value) pairs, in declaration order.
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

/// A get (text `get`/`gets`, binary Get*, meta `mg`, mcrouter `lease-get`),
/// or, when `touched`, a get-and-touch (`gat`/`gats`, binary GAT*, a hit of
/// `mg` with `T`: memcached counts an `mg ... T` miss as a get miss).
#[inline]
pub fn count_get(st: &WorkerStats, touched: bool, hit: bool) {
    if touched {
        count_touch(st, hit);
    } else {
        bump(&st.cmd_get, 1);
        bump(if hit { &st.get_hits } else { &st.get_misses }, 1);
    }
}

/// A touch (text `touch`, binary Touch).
#[inline]
pub fn count_touch(st: &WorkerStats, hit: bool) {
    bump(&st.cmd_touch, 1);
    bump(
        if hit {
            &st.touch_hits
        } else {
            &st.touch_misses
        },
        1,
    );
}

/// A store the store answered (set/add/replace/append/prepend/cas in every
/// protocol). `compare`: the request carried a CAS to compare (text `cas`,
/// a binary CAS, meta `C`). memcached's rules: every store counts `cmd_set`;
/// a compare on set/replace is a CAS store, whose outcome counts `cas_hits`,
/// `cas_badval` or `cas_misses` (append/prepend compare without counting);
/// an item over `-I` counts `store_too_large` (an append/prepend whose
/// combined value is too large is not: memcached answers it NOT_STORED);
/// no memory counts `store_no_memory`.
#[inline]
pub fn count_store(st: &WorkerStats, mode: StoreMode, compare: bool, r: &StoreResult) {
    bump(&st.cmd_set, 1);
    let cas_store =
        mode == StoreMode::Cas || (compare && matches!(mode, StoreMode::Set | StoreMode::Replace));
    let appending = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    let c = match r {
        StoreResult::Stored { .. } if cas_store => &st.cas_hits,
        StoreResult::Exists if cas_store => &st.cas_badval,
        StoreResult::NotFound if cas_store => &st.cas_misses,
        StoreResult::TooLarge if !appending => &st.store_too_large,
        StoreResult::OutOfMemory => &st.store_no_memory,
        _ => return,
    };
    bump(c, 1);
}

/// A store refused for size before it reached the store (its data block
/// swallowed): `store_too_large` only, no `cmd_set`.
#[inline]
pub fn count_too_large(st: &WorkerStats) {
    bump(&st.store_too_large, 1);
}

/// incr/decr (text, binary `Increment`/`Decrement`, meta `ma`). `created`:
/// the request created the item (meta `N`), which memcached counts as
/// neither hit nor miss.
#[inline]
pub fn count_arith(st: &WorkerStats, incr: bool, r: &ArithResult, created: bool) {
    let (hits, misses) = if incr {
        (&st.incr_hits, &st.incr_misses)
    } else {
        (&st.decr_hits, &st.decr_misses)
    };
    match r {
        ArithResult::Value { .. } if !created => bump(hits, 1),
        ArithResult::NotFound => bump(misses, 1),
        _ => {}
    }
}

/// A delete (text, binary, meta `md`). memcached's meta delete counts a
/// CAS mismatch as a miss (`mismatch_is_miss`) and a mark-stale (`I`,
/// `invalidate`) as nothing; the text and binary deletes count neither.
#[inline]
pub fn count_delete(st: &WorkerStats, r: &DeleteResult, invalidate: bool, mismatch_is_miss: bool) {
    match r {
        DeleteResult::Deleted if !invalidate => bump(&st.delete_hits, 1),
        DeleteResult::NotFound => bump(&st.delete_misses, 1),
        DeleteResult::Exists if mismatch_is_miss => bump(&st.delete_misses, 1),
        _ => {}
    }
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
    /// Connection tasks that panicked and were closed alone
    /// (`server::conn::Isolated`; not a memcached stat).
    pub conn_panics: AtomicU64,
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
            conn_panics: AtomicU64::new(0),
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
