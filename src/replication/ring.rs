//! One stream's backlog: a bounded ring of encoded RECORD frames with
//! their sequence numbers, so a partner that reconnects resumes from its
//! last acknowledged position while the ring still holds it.
//!
//! The ring's memory is allocated once, when replication starts; a push
//! writes the frame's fixed part (built on the stack, `wire::record_parts`),
//! key and value straight into it, evicting the oldest records to make
//! room. No heap allocation and nothing that waits: the journal pushes
//! under the shard lock (and this ring's own mutex, which the sender holds
//! only to copy at most `READ_CHUNK` bytes out).
//!
//! Each entry: `[u32 entry length][u32 append time, ms, wrapping][frame]`.
//! Offsets are absolute byte counts since the ring was made (u64 never
//! wraps), so a reader's cursor is still valid exactly while its offset is
//! at or past the tail.

use super::wire::{self, WireChange};

/// Entry prefix bytes (length, append time).
pub const PREFIX: usize = 8;

/// Where a reader is: the next sequence number to read and its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub off: u64,
}

/// What [`Ring::read`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Records copied.
    pub records: u64,
    /// Append time (ms, wrapping) of the last record copied.
    pub last_ms: u32,
}

pub struct Ring {
    buf: Box<[u8]>,
    /// Absolute offset of the next write.
    head: u64,
    /// Absolute offset of the oldest entry held.
    tail: u64,
    /// Sequence number of the entry at `tail` (= `next_seq` when empty).
    first_seq: u64,
    /// Sequence number the next record gets (from 1).
    next_seq: u64,
    /// Records that did not fit the ring at all (each one also drops
    /// everything before it).
    pub too_large: u64,
    /// Records evicted to make room.
    pub evicted: u64,
}

impl Ring {
    /// A ring of `capacity` bytes (at least 64).
    pub fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![0u8; capacity.max(64)].into_boxed_slice(),
            head: 0,
            tail: 0,
            first_seq: 1,
            next_seq: 1,
            too_large: 0,
            evicted: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.head - self.tail
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Oldest sequence number held (`next_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// A cursor at the head: reads from here see only future records.
    pub fn head(&self) -> Cursor {
        Cursor {
            seq: self.next_seq,
            off: self.head,
        }
    }

    fn copy_in(&mut self, at: u64, b: &[u8]) {
        let cap = self.buf.len();
        let p = (at % cap as u64) as usize;
        let first = b.len().min(cap - p);
        self.buf[p..p + first].copy_from_slice(&b[..first]);
        self.buf[..b.len() - first].copy_from_slice(&b[first..]);
    }

    fn copy_out(&self, at: u64, len: usize, out: &mut Vec<u8>) {
        let cap = self.buf.len();
        let p = (at % cap as u64) as usize;
        let first = len.min(cap - p);
        out.extend_from_slice(&self.buf[p..p + first]);
        out.extend_from_slice(&self.buf[..len - first]);
    }

    fn prefix_at(&self, at: u64) -> (usize, u32) {
        let cap = self.buf.len();
        let mut b = [0u8; PREFIX];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self.buf[((at + i as u64) % cap as u64) as usize];
        }
        (
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }

    fn evict_one(&mut self) {
        let (len, _) = self.prefix_at(self.tail);
        self.tail += len as u64;
        self.first_seq += 1;
        self.evicted += 1;
    }

    /// Append `change` as the next record of `stream`, stamped `now_ms`.
    /// Returns its sequence number. A record larger than the whole ring
    /// (or unframeable) is not held: the ring empties, and a reader before
    /// it must do a full sync.
    pub fn push(&mut self, stream: u16, change: &WireChange<'_>, now_ms: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let parts = wire::record_parts(false, stream, seq, change);
        let len = parts.as_ref().map_or(usize::MAX, |p| PREFIX + p.len());
        if len > self.buf.len() || len > u32::MAX as usize {
            self.too_large += 1;
            self.evicted += self.next_seq - 1 - self.first_seq;
            self.tail = self.head;
            self.first_seq = self.next_seq;
            return seq;
        }
        let parts = parts.expect("framed above");
        while self.head + len as u64 - self.tail > self.buf.len() as u64 {
            self.evict_one();
        }
        let mut pre = [0u8; PREFIX];
        pre[..4].copy_from_slice(&(len as u32).to_le_bytes());
        pre[4..].copy_from_slice(&now_ms.to_le_bytes());
        let mut at = self.head;
        for b in [
            &pre[..],
            &parts.fixed[..parts.fixed_len],
            parts.key,
            parts.value,
        ] {
            self.copy_in(at, b);
            at += b.len() as u64;
        }
        self.head = at;
        seq
    }

    /// Where to resume a reader that has applied through `acked`: the
    /// cursor of record `acked + 1` if the ring still holds it (or it is
    /// the next one to come) and it was appended within `max_age_ms` of
    /// `now_ms`; `None` if a full sync is needed.
    pub fn locate(&self, acked: u64, now_ms: u32, max_age_ms: u32) -> Option<Cursor> {
        let want = acked.checked_add(1)?;
        if want < self.first_seq || want > self.next_seq {
            return None;
        }
        let mut c = Cursor {
            seq: self.first_seq,
            off: self.tail,
        };
        while c.seq < want {
            let (len, _) = self.prefix_at(c.off);
            c.off += len as u64;
            c.seq += 1;
        }
        if c.seq < self.next_seq {
            let (_, ms) = self.prefix_at(c.off);
            if now_ms.wrapping_sub(ms) > max_age_ms {
                return None;
            }
        }
        Some(c)
    }

    /// Is the cursor still inside the ring (its records not overwritten)?
    pub fn holds(&self, c: &Cursor) -> bool {
        c.off >= self.tail && c.seq >= self.first_seq && c.off <= self.head
    }

    /// Copy whole frames from `c` onwards into `out` until about
    /// `max_bytes` were copied or the head is reached; advances `c`.
    /// `None` if `c` was overwritten (the reader needs a full sync).
    pub fn read(&self, c: &mut Cursor, out: &mut Vec<u8>, max_bytes: usize) -> Option<Read> {
        if !self.holds(c) {
            return None;
        }
        let mut r = Read {
            records: 0,
            last_ms: 0,
        };
        let mut copied = 0;
        while c.off < self.head && copied < max_bytes {
            let (len, ms) = self.prefix_at(c.off);
            self.copy_out(c.off + PREFIX as u64, len - PREFIX, out);
            copied += len;
            c.off += len as u64;
            c.seq += 1;
            r.records += 1;
            r.last_ms = ms;
        }
        Some(r)
    }

    /// Append time (ms, wrapping) of the record at `c`, if one is there.
    pub fn time_at(&self, c: &Cursor) -> Option<u32> {
        (self.holds(c) && c.off < self.head).then(|| self.prefix_at(c.off).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::wire::{decode, Frame};

    fn item(key: &[u8], value: &[u8], cas: u64) -> WireChange<'static> {
        // Leak is fine in a test: the change must outlive the ring.
        let key: &'static [u8] = Box::leak(key.to_vec().into_boxed_slice());
        let value: &'static [u8] = Box::leak(value.to_vec().into_boxed_slice());
        WireChange::Item {
            key,
            value,
            flags: 1,
            exp: 0,
            cas,
            stale: false,
            rev: 0,
        }
    }

    fn frames(b: &[u8]) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let (f, used) = decode(&b[at..], 1 << 20).unwrap().unwrap();
            match f {
                Frame::Record {
                    seq,
                    change: WireChange::Item { cas, .. },
                    ..
                } => v.push((seq, cas)),
                f => panic!("{f:?}"),
            }
            at += used;
        }
        v
    }

    #[test]
    fn wraps_around_and_evicts_the_oldest_whole_records() {
        let mut r = Ring::new(1000);
        let v = [b'v'; 50];
        for i in 1..=100u64 {
            assert_eq!(
                r.push(0, &item(format!("k{i}").as_bytes(), &v, i), i as u32),
                i
            );
            assert!(r.used() <= 1000);
        }
        // Each entry is ~110 bytes: about 9 fit; the newest are there.
        let first = r.first_seq();
        assert!((90..=93).contains(&first), "{first}");
        assert_eq!(r.next_seq(), 101);
        let mut c = r.locate(first - 1, 100, u32::MAX).unwrap();
        let mut out = Vec::new();
        let got = r.read(&mut c, &mut out, usize::MAX).unwrap();
        assert_eq!(got.records, 101 - first);
        assert_eq!(got.last_ms, 100);
        let f = frames(&out);
        assert_eq!(f.first(), Some(&(first, first)));
        assert_eq!(f.last(), Some(&(100, 100)));
        assert_eq!(c, r.head());
    }

    #[test]
    fn resume_inside_and_outside_the_window() {
        let mut r = Ring::new(1000);
        for i in 1..=30u64 {
            r.push(0, &item(b"key", &[b'x'; 40], i), 1000 + i as u32);
        }
        let first = r.first_seq();
        // Inside: the next record after the ack.
        let c = r.locate(first + 2, 1030, u32::MAX).unwrap();
        assert_eq!(c.seq, first + 3);
        let mut out = Vec::new();
        let mut c2 = c;
        r.read(&mut c2, &mut out, usize::MAX).unwrap();
        assert_eq!(frames(&out)[0].0, first + 3);
        // Acked everything: resume at the head.
        assert_eq!(r.locate(30, 1030, u32::MAX), Some(r.head()));
        // Outside: overwritten, or from the future (another run's numbers).
        assert_eq!(r.locate(first - 2, 1030, u32::MAX), None);
        assert_eq!(r.locate(31, 1030, u32::MAX), None);
        assert_eq!(r.locate(u64::MAX, 1030, u32::MAX), None);
        // Too old by age.
        assert_eq!(r.locate(first, 1030 + 10_000, 5_000), None);
        assert!(r.locate(first, 1030 + 10_000, 20_000).is_some());
    }

    #[test]
    fn a_reader_overtaken_by_the_writer_is_told_so() {
        let mut r = Ring::new(600);
        let mut c = r.head();
        for i in 1..=3u64 {
            r.push(1, &item(b"a", &[b'y'; 100], i), 0);
        }
        let mut out = Vec::new();
        // Read one chunk of about one record.
        let got = r.read(&mut c, &mut out, 1).unwrap();
        assert_eq!(got.records, 1);
        for i in 4..=20u64 {
            r.push(1, &item(b"a", &[b'y'; 100], i), 0);
        }
        assert!(!r.holds(&c));
        assert_eq!(r.read(&mut c, &mut out, usize::MAX), None);
    }

    #[test]
    fn a_record_larger_than_the_ring_empties_it() {
        let mut r = Ring::new(500);
        r.push(0, &item(b"a", b"small", 1), 0);
        let seq = r.push(0, &item(b"b", &[0u8; 1000], 2), 0);
        assert_eq!(seq, 2);
        assert_eq!(r.used(), 0);
        assert_eq!(r.too_large, 1);
        // The reader that acked 1 lost record 2: full sync.
        assert_eq!(r.locate(1, 0, u32::MAX), None);
        // One that acked 2 resumes at the head.
        assert_eq!(r.locate(2, 0, u32::MAX), Some(r.head()));
        r.push(0, &item(b"c", b"ok", 3), 0);
        assert_eq!(r.locate(2, 0, u32::MAX).unwrap().seq, 3);
    }

    #[test]
    fn entries_split_across_the_end_read_back_whole() {
        // Sizes that do not divide the capacity put prefixes and frames
        // across the end of the buffer at every offset over time.
        let mut r = Ring::new(257);
        let mut c = r.head();
        for i in 1..=500u64 {
            let vlen = (i % 37) as usize;
            r.push(
                2,
                &item(format!("k{i}").as_bytes(), &vec![b'z'; vlen], i),
                0,
            );
            let mut out = Vec::new();
            r.read(&mut c, &mut out, usize::MAX).unwrap();
            assert_eq!(frames(&out), vec![(i, i)]);
        }
    }
}
