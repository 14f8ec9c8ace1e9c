//! CAS values as versions: a hybrid logical clock per shard.
//!
//! Layout (most significant first):
//!
//! | bits | field |
//! |---|---|
//! | 42 | Unix time, milliseconds (good until the year 2109) |
//! | 11 | counter within the millisecond (carries into the ms field) |
//! | 10 | shard id |
//! | 1 | host bit (which partner of a replication pair) |
//!
//! A shard's values strictly increase (even if the wall clock steps back:
//! the clock never goes below its last value), values from different shards
//! and hosts never collide, and values from different hosts order by wall
//! time, so a replica can use an item's CAS as its last-writer-wins version.
//! Clients see an opaque unique 64-bit number, as memcached gives them.

use std::time::{SystemTime, UNIX_EPOCH};

const LOW_BITS: u32 = 11;
const COUNTER_SHIFT: u32 = LOW_BITS;
const MS_SHIFT: u32 = COUNTER_SHIFT + 11;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
/// The largest value `observe` follows.
const OBSERVE_MAX: u64 = u64::MAX - (1 << 40);

pub struct Hlc {
    /// Last value issued, without the low (shard, host) bits.
    last: u64,
    low: u64,
}

/// Wall clock, milliseconds since the Unix epoch.
#[inline]
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hlc {
    pub fn new(shard: usize, host_bit: bool) -> Hlc {
        Hlc {
            last: 0,
            low: ((shard as u64 & 0x3ff) << 1) | host_bit as u64,
        }
    }

    /// Change the host bit of later values (replication found its partner
    /// with the same bit; see `replication::link`).
    pub fn set_host_bit(&mut self, host_bit: bool) {
        self.low = (self.low & !1) | host_bit as u64;
    }

    /// The host bit of this clock's values.
    #[cfg(test)]
    pub fn host_bit(&self) -> bool {
        self.low & 1 == 1
    }

    /// The next value, at wall time `ms`.
    #[inline]
    pub fn next_at(&mut self, ms: u64) -> u64 {
        let phys = ms << MS_SHIFT;
        let cand = self.last.saturating_add(1 << COUNTER_SHIFT);
        self.last = phys.max(cand);
        self.last | self.low
    }

    /// The next value.
    #[inline]
    pub fn next(&mut self) -> u64 {
        self.next_at(wall_ms())
    }

    /// Observe a value made elsewhere (a client-given CAS, a replica's
    /// version): later values of this clock will be above it.
    ///
    /// Values in the top 2^40 of the range (a client's `E` near 2^64; the
    /// clock's own values reach it only after the year 2109) are not
    /// followed: the clock keeps room for 2^29 more values, so one client
    /// cannot make every later CAS of the shard the same.
    pub fn observe(&mut self, v: u64) {
        if v <= OBSERVE_MAX {
            self.last = self.last.max(v & !LOW_MASK);
        }
    }

    /// Milliseconds part of a value.
    #[allow(dead_code)] // for replication's last-writer-wins
    pub fn ms_of(v: u64) -> u64 {
        v >> MS_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_unique_and_time_ordered() {
        let mut a = Hlc::new(0, false);
        let mut b = Hlc::new(1, true);
        let mut prev = 0;
        for _ in 0..10_000 {
            let v = a.next_at(1_000);
            assert!(v > prev);
            prev = v;
        }
        // counter overflow carries into the ms field, still increasing
        assert!(Hlc::ms_of(prev) >= 1_000);
        // the wall clock stepping back does not make values go back
        let v = a.next_at(5);
        assert!(v > prev);
        // other shard/host: distinct, ordered by wall time
        let w = b.next_at(2_000_000);
        assert_ne!(w & LOW_MASK, v & LOW_MASK);
        assert!(w > v);
        assert_eq!(Hlc::ms_of(w), 2_000_000);
        // real clock
        let r = a.next();
        assert!(Hlc::ms_of(r) > 1_600_000_000_000);
        b.observe(r + 1_000_000);
        assert!(b.next_at(0) > r + 1_000_000);
        // a value at the top of the range is not followed
        // a changed host bit shows in later values only, the rest kept
        let v = b.next_at(0);
        b.set_host_bit(false);
        assert!(!b.host_bit());
        let w = b.next_at(0);
        assert!(w > v);
        assert_eq!((v & 1, w & 1), (1, 0));
        assert_eq!(v & LOW_MASK & !1, w & LOW_MASK & !1);
        b.set_host_bit(true);
        let before = b.next_at(0);
        b.observe(u64::MAX);
        assert!(b.next_at(0) < before + (1 << 20));
    }
}
