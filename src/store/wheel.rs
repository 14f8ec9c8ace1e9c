//! Hierarchical timing wheel for item expiry: 6 levels of 64 slots, 1 s
//! granularity, covering the whole `u32` relative-time range (the 30-day
//! relative limit and absolute times beyond it alike).
//!
//! A slot is a `Vec<u32>` of item handles; an item records its position in
//! that vector in its header (`wpos`), so removal (delete, overwrite, touch)
//! is an O(1) swap-remove and an item costs 4 bytes in the wheel only while
//! it has an expiry.
//!
//! Time advances one second per *step*. Step `t` first cascades every
//! higher-level slot whose window starts at `t` into lower levels, then
//! drains level-0 slot `t`: those items expire. Steps are worked through in
//! bounded slices (`poll` does one unit of work), so a million items expiring
//! in the same second never stall the core: between slices, an item is
//! either where the wheel at time `cur` put it, or already where it belongs
//! at `cur + 1` — removal checks both places (and verifies the handle).

use super::slab::{Arena, NONE};

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const BITS: u32 = 6;

/// One unit of wheel work.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Nothing due.
    Idle,
    /// Some work was done (an entry cascaded, an empty slot passed).
    Worked,
    /// This item's time has come (it has left the wheel).
    Expired(u32),
}

pub struct Wheel {
    /// Every step up to and including `cur` is complete.
    cur: u32,
    slots: Vec<Vec<u32>>,
    /// Slots still to drain for step `cur + 1` (a stack; top drains first).
    pending: [u16; LEVELS + 1],
    npending: usize,
    count: usize,
}

/// The slot for expiry `e` when the next step to complete is `t`.
#[inline]
fn place(e: u32, t: u32) -> usize {
    if e <= t {
        return (t as usize) & (SLOTS - 1);
    }
    let diff = ((e ^ t) as u64) | (SLOTS as u64 - 1);
    let level = ((63 - diff.leading_zeros()) / BITS) as usize;
    level * SLOTS + ((e >> (BITS * level as u32)) as usize & (SLOTS - 1))
}

impl Wheel {
    pub fn new(now: u32) -> Wheel {
        Wheel {
            cur: now,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            pending: [0; LEVELS + 1],
            npending: 0,
            count: 0,
        }
    }

    /// Items in the wheel.
    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.count
    }

    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Memory of the slot vectors.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.capacity() * 4).sum::<usize>()
            + self.slots.capacity() * std::mem::size_of::<Vec<u32>>()
    }

    /// Schedule item `h` to expire at `e` (non-zero).
    pub fn insert(&mut self, a: &mut Arena, h: u32, e: u32) {
        let s = place(e, self.cur.wrapping_add(1));
        self.push(a, s, h);
        self.count += 1;
    }

    #[inline]
    fn push(&mut self, a: &mut Arena, s: usize, h: u32) {
        a.set_wpos(h, self.slots[s].len() as u32);
        self.slots[s].push(h);
    }

    /// Unschedule item `h`, which was scheduled for `e`. False if it was not
    /// in the wheel.
    pub fn remove(&mut self, a: &mut Arena, h: u32, e: u32) -> bool {
        let pos = a.wpos(h);
        if pos == NONE || e == 0 {
            return false;
        }
        let t = self.cur.wrapping_add(1);
        let mut found = None;
        for s in [place(e, t), place(e, self.cur)] {
            if e <= self.cur && s != place(e, t) {
                continue;
            }
            if self.slots[s].get(pos as usize) == Some(&h) {
                found = Some(s);
                break;
            }
        }
        let Some(s) = found else {
            debug_assert!(false, "wheel: item {h:#x} (exp {e}) not found");
            return false;
        };
        let v = &mut self.slots[s];
        v.swap_remove(pos as usize);
        if let Some(&moved) = v.get(pos as usize) {
            a.set_wpos(moved, pos);
        }
        a.set_wpos(h, NONE);
        self.count -= 1;
        true
    }

    /// Is a step due or under way?
    pub fn busy(&self, now: u32) -> bool {
        self.npending > 0 || self.cur < now
    }

    /// Do one unit of work towards time `now`.
    pub fn poll(&mut self, a: &mut Arena, now: u32) -> Poll {
        if self.npending == 0 {
            if self.cur >= now {
                return Poll::Idle;
            }
            if self.count == 0 {
                // Nothing scheduled: no step has work to do.
                self.cur = now;
                return Poll::Worked;
            }
            // Start step t: level-0 slot t drains last, so push it first.
            let t = self.cur.wrapping_add(1);
            self.pending[0] = (t as usize & (SLOTS - 1)) as u16;
            self.npending = 1;
            for level in 1..LEVELS {
                let span_bits = BITS * level as u32;
                if span_bits >= 32 || t & ((1u32 << span_bits) - 1) != 0 {
                    break;
                }
                let s = level * SLOTS + ((t >> span_bits) as usize & (SLOTS - 1));
                self.pending[self.npending] = s as u16;
                self.npending += 1;
            }
            return Poll::Worked;
        }
        let t = self.cur.wrapping_add(1);
        let s = self.pending[self.npending - 1] as usize;
        match self.slots[s].pop() {
            None => {
                // Slot drained; give back memory a burst left behind.
                if self.slots[s].capacity() > 4096 {
                    self.slots[s] = Vec::new();
                }
                self.npending -= 1;
                if self.npending == 0 {
                    self.cur = t;
                }
                Poll::Worked
            }
            Some(h) => {
                if s < SLOTS {
                    a.set_wpos(h, NONE);
                    self.count -= 1;
                    Poll::Expired(h)
                } else {
                    let e = a.exptime(h);
                    let ns = place(e, t);
                    debug_assert!(ns < s, "cascade goes down");
                    self.push(a, ns, h);
                    Poll::Worked
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::slab::item_size;

    fn arena() -> Arena {
        Arena::new(64 << 20, 48, 1.25)
    }

    fn item(a: &mut Arena, e: u32) -> u32 {
        let c = a.class_for(item_size(1, 0, 0));
        let h = match a.alloc_fast(c) {
            Some(h) => h,
            None => {
                assert!(a.try_claim(c));
                a.alloc_fast(c).unwrap()
            }
        };
        a.init_item(h, b"k", 0, 0, e, 0);
        h
    }

    /// Run the wheel to `now`; returns (handle, second it expired at).
    fn run(w: &mut Wheel, a: &mut Arena, from: u32, to: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for now in from..=to {
            loop {
                match w.poll(a, now) {
                    Poll::Idle => break,
                    Poll::Worked => {}
                    Poll::Expired(h) => out.push((h, now)),
                }
            }
        }
        out
    }

    #[test]
    fn expires_each_item_at_its_second() {
        let mut a = arena();
        let start = 100;
        let mut w = Wheel::new(start);
        let exps = [
            101, 102, 163, 164, 165, 200, 4096, 4200, 5000, 70_000, 300_000,
        ];
        let hs: Vec<u32> = exps
            .iter()
            .map(|&e| {
                let h = item(&mut a, e);
                w.insert(&mut a, h, e);
                h
            })
            .collect();
        assert_eq!(w.len(), exps.len());
        let got = run(&mut w, &mut a, start, 300_001);
        assert_eq!(got.len(), exps.len());
        for (h, at) in got {
            let i = hs.iter().position(|&x| x == h).unwrap();
            assert_eq!(at, exps[i], "item {i} expired at its time");
        }
        assert!(w.is_empty());
    }

    #[test]
    fn touch_reschedules_and_delete_unschedules() {
        let mut a = arena();
        let mut w = Wheel::new(10);
        let h1 = item(&mut a, 20);
        let h2 = item(&mut a, 20);
        let h3 = item(&mut a, 20);
        for h in [h1, h2, h3] {
            w.insert(&mut a, h, 20);
        }
        // touch h1 to 5000 (far), delete h2
        assert!(w.remove(&mut a, h1, 20));
        a.set_exptime(h1, 5000);
        w.insert(&mut a, h1, 5000);
        assert!(w.remove(&mut a, h2, 20));
        assert!(!w.remove(&mut a, h2, 20));
        let got = run(&mut w, &mut a, 10, 4999);
        assert_eq!(got, vec![(h3, 20)]);
        let got = run(&mut w, &mut a, 5000, 5000);
        assert_eq!(got, vec![(h1, 5000)]);
    }

    #[test]
    fn far_future_and_past_items() {
        let mut a = arena();
        let now = 1_000;
        let mut w = Wheel::new(now);
        // an absolute time years ahead, and one already past
        let far = u32::MAX - 5;
        let hf = item(&mut a, far);
        w.insert(&mut a, hf, far);
        let hp = item(&mut a, 3);
        w.insert(&mut a, hp, 3);
        let got = run(&mut w, &mut a, now, now + 2);
        assert_eq!(got, vec![(hp, now + 1)]);
        assert_eq!(w.len(), 1);
        // the far item can be found and removed
        assert!(w.remove(&mut a, hf, far));
    }

    #[test]
    fn removal_mid_step_and_bounded_slices() {
        let mut a = arena();
        let mut w = Wheel::new(0);
        // 3000 items in one level-1 slot, cascading at t=128
        let hs: Vec<u32> = (0..3000u32)
            .map(|i| {
                let e = 128 + (i % 60);
                let h = item(&mut a, e);
                w.insert(&mut a, h, e);
                h
            })
            .collect();
        // advance to 127 fully
        assert!(run(&mut w, &mut a, 0, 127).is_empty());
        // start step 128 and do only part of the cascade
        for _ in 0..1500 {
            assert_ne!(w.poll(&mut a, 128), Poll::Idle);
        }
        // every item can be removed wherever it is now
        for (i, &h) in hs.iter().enumerate().step_by(3) {
            assert!(w.remove(&mut a, h, 128 + (i as u32 % 60)), "item {i}");
        }
        let got = run(&mut w, &mut a, 128, 200);
        assert_eq!(got.len(), 2000);
        for (h, at) in got {
            assert_eq!(at, a.exptime(h));
        }
        assert!(w.is_empty());
    }
}
