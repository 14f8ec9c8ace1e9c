//! The replication wire format: small, versioned, binary frames
//! (docs/REPLICATION.md has the table). Pure: no I/O, no clock, no locks.
//!
//! Every frame is an 8-byte header — magic `0xC7 'R'`, version, frame type,
//! payload length (u32) — then the payload. All integers are big-endian.
//! Decoding never trusts a length before checking it against the bytes at
//! hand and the caller's bound: short input is "need more", anything
//! malformed is an error, nothing panics.

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xC7, b'R'];
/// Protocol version this build speaks. 2: change kind 4 (revisions). A
/// peer of another version is refused with a REFUSED frame (reason
/// `VERSION`) whose header carries the peer's version, so it can read it.
pub const VERSION: u8 = 2;
/// What the handshake's HMAC covers first: the version is part of the
/// proof.
pub const HMAC_LABEL: &[u8] = b"corecached replication v2 ";
/// Frame header bytes.
pub const HDR: usize = 8;
/// Nonce bytes in the handshake.
pub const NONCE: usize = 16;
/// HMAC-SHA256 proof bytes.
pub const PROOF: usize = 32;
/// Most streams a peer may announce (shards are at most 1024).
pub const MAX_STREAMS: usize = 1024;

/// Frame types.
pub mod ty {
    pub const HELLO: u8 = 1;
    pub const CHALLENGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const READY: u8 = 4;
    pub const RECORD: u8 = 5;
    pub const SNAPSHOT: u8 = 6;
    pub const SYNC_BEGIN: u8 = 7;
    pub const SYNC_END: u8 = 8;
    pub const ACK: u8 = 9;
    pub const REFUSED: u8 = 10;
}

/// Change kinds inside RECORD / SNAPSHOT.
const K_ITEM: u8 = 1;
const K_REMOVED: u8 = 2;
const K_FLUSH: u8 = 3;
/// An item that kept its CAS (touch, gat, `mg T`, `md x`): the item fields
/// plus the revision (a fresh version) that orders it among revisions of
/// that CAS.
const K_REVISED: u8 = 4;

/// Longest key on the wire (memcached keys are at most 250 bytes; binary
/// keys at most 65535 by their header).
pub const MAX_KEY: usize = u16::MAX as usize;

/// A mutation's post-image as it travels: expiry and flush times are
/// absolute Unix seconds (0 = never), so both hosts expire alike whatever
/// their process start times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireChange<'a> {
    Item {
        key: &'a [u8],
        value: &'a [u8],
        flags: u32,
        /// Absolute Unix seconds, 0 = never.
        exp: i64,
        cas: u64,
        stale: bool,
        /// 0: the item's CAS is new. Otherwise this post-image kept the CAS
        /// of the item it changed (touch, gat, `mg T`, `md x`), and `rev`, a
        /// fresh version, orders it among the revisions of that CAS.
        rev: u64,
    },
    Removed {
        key: &'a [u8],
        cas: u64,
    },
    Flush {
        /// Absolute Unix seconds.
        at: i64,
        cas: u64,
    },
}

/// One stream's position: has the receiver a complete copy of the stream
/// (`synced`), and through which sequence number has it applied records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub synced: bool,
    pub seq: u64,
}

/// Why a peer was refused (REFUSED frame).
pub mod refuse {
    pub const AUTH: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const STREAMS: u8 = 3;
    pub const BUSY: u8 = 4;
    /// The peer speaks another wire version.
    pub const VERSION: u8 = 5;
}

/// A decoded frame, borrowing its keys and values from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Sender → receiver, first: who I am, how many streams, my nonce.
    Hello {
        node_id: u64,
        run_id: u64,
        streams: u16,
        host_bit: bool,
        nonce: [u8; NONCE],
    },
    /// Receiver → sender: who I am, my nonce, my proof of the secret.
    Challenge {
        node_id: u64,
        run_id: u64,
        nonce: [u8; NONCE],
        proof: [u8; PROOF],
    },
    /// Sender → receiver: the sender's proof of the secret.
    Auth { proof: [u8; PROOF] },
    /// Receiver → sender, after a good AUTH: the sender run these positions
    /// belong to (0 = none known) and one position per stream.
    Ready {
        known_run: u64,
        positions: Positions<'a>,
    },
    /// A live change of stream `stream`, sequence number `seq` (from 1).
    Record {
        stream: u16,
        seq: u64,
        change: WireChange<'a>,
    },
    /// An item read by a full sync's walk (no sequence number).
    Snapshot { stream: u16, change: WireChange<'a> },
    /// A full sync of `stream` starts; live records follow from `next_seq`.
    SyncBegin { stream: u16, next_seq: u64 },
    /// The walk of `stream` is complete: the receiver holds a full copy.
    SyncEnd { stream: u16 },
    /// Receiver → sender: applied through these positions.
    Ack { entries: Acks<'a> },
    /// Either way: the connection is refused, then closed.
    Refused { reason: u8 },
}

/// READY's positions, decoded lazily from the payload (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions<'a>(&'a [u8]);

impl<'a> Positions<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 9
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, i: usize) -> Option<Position> {
        let b = self.0.get(i * 9..i * 9 + 9)?;
        Some(Position {
            synced: b[0] != 0,
            seq: be64(&b[1..9]),
        })
    }
    pub fn iter(&self) -> impl Iterator<Item = Position> + 'a {
        let s = *self;
        (0..s.len()).filter_map(move |i| s.get(i))
    }
}

/// ACK's entries (stream, seq), decoded lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acks<'a>(&'a [u8]);

impl<'a> Acks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + 'a {
        self.0
            .chunks_exact(10)
            .map(|c| (be16(&c[0..2]), be64(&c[2..10])))
    }
    pub fn len(&self) -> usize {
        self.0.len() / 10
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A decoding failure: the connection is refused and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    BadMagic,
    BadVersion(u8),
    UnknownType(u8),
    /// Payload longer than the receiver allows.
    TooLong(u32),
    /// Payload shorter or longer than its fields say.
    Malformed,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadMagic => write!(f, "bad magic"),
            WireError::BadVersion(v) => write!(f, "unsupported version {v}"),
            WireError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            WireError::TooLong(n) => write!(f, "frame of {n} bytes is too long"),
            WireError::Malformed => write!(f, "malformed frame"),
        }
    }
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
#[inline]
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The 8-byte header of a frame of type `t` with `len` payload bytes.
#[inline]
pub fn header(t: u8, len: u32) -> [u8; HDR] {
    let l = len.to_be_bytes();
    [MAGIC[0], MAGIC[1], VERSION, t, l[0], l[1], l[2], l[3]]
}

/// Bytes of the fixed part of a RECORD/SNAPSHOT frame (header included),
/// before the key and value.
pub const RECORD_FIXED_MAX: usize = HDR + 2 + 8 + 1 + 8 + 8 + 4 + 8 + 1 + 2 + 4;

/// The fixed part of a RECORD (or SNAPSHOT) frame in a stack buffer, and
/// the key and value that follow it: together one frame. Lets the journal
/// write a record straight into its ring without a heap allocation.
pub struct RecordParts<'a> {
    pub fixed: [u8; RECORD_FIXED_MAX],
    pub fixed_len: usize,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl RecordParts<'_> {
    /// Whole frame length.
    pub fn len(&self) -> usize {
        self.fixed_len + self.key.len() + self.value.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Append the frame to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fixed[..self.fixed_len]);
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
    }
}

/// The parts of a RECORD (`snapshot` false) or SNAPSHOT frame. `None` if
/// the key or value cannot be framed (key over 64 KiB, value over 4 GiB).
pub fn record_parts<'a>(
    snapshot: bool,
    stream: u16,
    seq: u64,
    change: &WireChange<'a>,
) -> Option<RecordParts<'a>> {
    let mut f = [0u8; RECORD_FIXED_MAX];
    let mut n = HDR;
    let mut put = |b: &[u8]| {
        f[n..n + b.len()].copy_from_slice(b);
        n += b.len();
    };
    put(&stream.to_be_bytes());
    if !snapshot {
        put(&seq.to_be_bytes());
    }
    let (key, value): (&[u8], &[u8]) = match *change {
        WireChange::Item {
            key,
            value,
            flags,
            exp,
            cas,
            stale,
            rev,
        } => {
            if key.len() > MAX_KEY || value.len() > u32::MAX as usize {
                return None;
            }
            if rev == 0 {
                put(&[K_ITEM]);
                put(&cas.to_be_bytes());
            } else {
                put(&[K_REVISED]);
                put(&cas.to_be_bytes());
                put(&rev.to_be_bytes());
            }
            put(&flags.to_be_bytes());
            put(&exp.to_be_bytes());
            put(&[stale as u8]);
            put(&(key.len() as u16).to_be_bytes());
            put(&(value.len() as u32).to_be_bytes());
            (key, value)
        }
        WireChange::Removed { key, cas } => {
            if key.len() > MAX_KEY {
                return None;
            }
            put(&[K_REMOVED]);
            put(&cas.to_be_bytes());
            put(&(key.len() as u16).to_be_bytes());
            (key, &[])
        }
        WireChange::Flush { at, cas } => {
            put(&[K_FLUSH]);
            put(&cas.to_be_bytes());
            put(&at.to_be_bytes());
            (&[], &[])
        }
    };
    let payload = n - HDR + key.len() + value.len();
    let payload = u32::try_from(payload).ok()?;
    let t = if snapshot { ty::SNAPSHOT } else { ty::RECORD };
    f[..HDR].copy_from_slice(&header(t, payload));
    Some(RecordParts {
        fixed: f,
        fixed_len: n,
        key,
        value,
    })
}

/// Append a whole frame of type `t` with `payload` to `out`.
fn frame(out: &mut Vec<u8>, t: u8, payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&header(t, len as u32));
    for p in payload {
        out.extend_from_slice(p);
    }
}

pub fn put_hello(
    out: &mut Vec<u8>,
    node_id: u64,
    run_id: u64,
    streams: u16,
    host_bit: bool,
    nonce: &[u8; NONCE],
) {
    frame(
        out,
        ty::HELLO,
        &[
            &node_id.to_be_bytes(),
            &run_id.to_be_bytes(),
            &streams.to_be_bytes(),
            &[host_bit as u8],
            nonce,
        ],
    );
}

pub fn put_challenge(
    out: &mut Vec<u8>,
    node_id: u64,
    run_id: u64,
    nonce: &[u8; NONCE],
    proof: &[u8; PROOF],
) {
    frame(
        out,
        ty::CHALLENGE,
        &[&node_id.to_be_bytes(), &run_id.to_be_bytes(), nonce, proof],
    );
}

pub fn put_auth(out: &mut Vec<u8>, proof: &[u8; PROOF]) {
    frame(out, ty::AUTH, &[proof]);
}

pub fn put_ready(out: &mut Vec<u8>, known_run: u64, positions: &[Position]) {
    let n = positions.len().min(MAX_STREAMS);
    out.extend_from_slice(&header(ty::READY, (8 + 2 + 9 * n) as u32));
    out.extend_from_slice(&known_run.to_be_bytes());
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for p in &positions[..n] {
        out.push(p.synced as u8);
        out.extend_from_slice(&p.seq.to_be_bytes());
    }
}

pub fn put_sync_begin(out: &mut Vec<u8>, stream: u16, next_seq: u64) {
    frame(
        out,
        ty::SYNC_BEGIN,
        &[&stream.to_be_bytes(), &next_seq.to_be_bytes()],
    );
}

pub fn put_sync_end(out: &mut Vec<u8>, stream: u16) {
    frame(out, ty::SYNC_END, &[&stream.to_be_bytes()]);
}

/// An ACK of `entries` (stream, seq); at most `MAX_STREAMS` are written.
pub fn put_ack(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (u16, u64)>) {
    let n = entries.len().min(MAX_STREAMS);
    out.extend_from_slice(&header(ty::ACK, (2 + 10 * n) as u32));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for (s, q) in entries.take(n) {
        out.extend_from_slice(&s.to_be_bytes());
        out.extend_from_slice(&q.to_be_bytes());
    }
}

pub fn put_refused(out: &mut Vec<u8>, reason: u8) {
    frame(out, ty::REFUSED, &[&[reason]]);
}

/// A REFUSED frame with `version` in its header: its layout (header, one
/// reason byte) is the same in every version, so a peer of another version
/// can read why it is refused.
pub fn put_refused_as(out: &mut Vec<u8>, version: u8, reason: u8) {
    let at = out.len();
    put_refused(out, reason);
    out[at + 2] = version;
}

/// A cursor over a payload; every read checks the bytes left.
struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Malformed);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(be16(self.take(2)?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(be32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(be64(self.take(8)?))
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed)
        }
    }
}

fn change<'a>(r: &mut Rd<'a>) -> Result<WireChange<'a>, WireError> {
    match r.u8()? {
        k @ (K_ITEM | K_REVISED) => {
            let cas = r.u64()?;
            let rev = if k == K_REVISED {
                match r.u64()? {
                    0 => return Err(WireError::Malformed),
                    v => v,
                }
            } else {
                0
            };
            let flags = r.u32()?;
            let exp = r.u64()? as i64;
            let stale = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed),
            };
            let klen = r.u16()? as usize;
            let vlen = r.u32()? as usize;
            let key = r.take(klen)?;
            let value = r.take(vlen)?;
            Ok(WireChange::Item {
                key,
                value,
                flags,
                exp,
                cas,
                stale,
                rev,
            })
        }
        K_REMOVED => {
            let cas = r.u64()?;
            let klen = r.u16()? as usize;
            let key = r.take(klen)?;
            Ok(WireChange::Removed { key, cas })
        }
        K_FLUSH => {
            let cas = r.u64()?;
            let at = r.u64()? as i64;
            Ok(WireChange::Flush { at, cas })
        }
        _ => Err(WireError::Malformed),
    }
}

/// Check a frame header: `Ok(None)` if fewer than 8 bytes are there, else
/// the frame type and the payload length (checked against `max_payload`).
pub fn peek(buf: &[u8], max_payload: usize) -> Result<Option<(u8, usize)>, WireError> {
    // Check what is there of the header as soon as it arrives, so garbage
    // is refused on its first bytes.
    if !buf.is_empty() && buf[0] != MAGIC[0] || buf.len() > 1 && buf[1] != MAGIC[1] {
        return Err(WireError::BadMagic);
    }
    if buf.len() > 2 && buf[2] != VERSION {
        return Err(WireError::BadVersion(buf[2]));
    }
    if buf.len() > 3 && !(ty::HELLO..=ty::REFUSED).contains(&buf[3]) {
        return Err(WireError::UnknownType(buf[3]));
    }
    if buf.len() < HDR {
        return Ok(None);
    }
    let len = be32(&buf[4..8]);
    if len as usize > max_payload {
        return Err(WireError::TooLong(len));
    }
    Ok(Some((buf[3], len as usize)))
}

/// Decode the frame at the front of `buf`: `Ok(None)` = need more bytes;
/// `Ok(Some((frame, used)))`; or an error for anything malformed or a
/// payload over `max_payload` bytes.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let Some((t, len)) = peek(buf, max_payload)? else {
        return Ok(None);
    };
    if buf.len() - HDR < len {
        return Ok(None);
    }
    let mut r = Rd {
        b: &buf[HDR..HDR + len],
    };
    let f = match t {
        ty::HELLO => Frame::Hello {
            node_id: r.u64()?,
            run_id: r.u64()?,
            streams: r.u16()?,
            host_bit: r.u8()? != 0,
            nonce: r.arr()?,
        },
        ty::CHALLENGE => Frame::Challenge {
            node_id: r.u64()?,
            run_id: r.u64()?,
            nonce: r.arr()?,
            proof: r.arr()?,
        },
        ty::AUTH => Frame::Auth { proof: r.arr()? },
        ty::READY => {
            let known_run = r.u64()?;
            let n = r.u16()? as usize;
            if n > MAX_STREAMS {
                return Err(WireError::Malformed);
            }
            let b = r.take(n * 9)?;
            if b.chunks_exact(9).any(|c| c[0] > 1) {
                return Err(WireError::Malformed);
            }
            Frame::Ready {
                known_run,
                positions: Positions(b),
            }
        }
        ty::RECORD => Frame::Record {
            stream: r.u16()?,
            seq: r.u64()?,
            change: change(&mut r)?,
        },
        ty::SNAPSHOT => {
            let stream = r.u16()?;
            let change = change(&mut r)?;
            if !matches!(change, WireChange::Item { .. }) {
                return Err(WireError::Malformed);
            }
            Frame::Snapshot { stream, change }
        }
        ty::SYNC_BEGIN => Frame::SyncBegin {
            stream: r.u16()?,
            next_seq: r.u64()?,
        },
        ty::SYNC_END => Frame::SyncEnd { stream: r.u16()? },
        ty::ACK => {
            let n = r.u16()? as usize;
            if n > MAX_STREAMS {
                return Err(WireError::Malformed);
            }
            Frame::Ack {
                entries: Acks(r.take(n * 10)?),
            }
        }
        ty::REFUSED => Frame::Refused { reason: r.u8()? },
        t => return Err(WireError::UnknownType(t)),
    };
    r.end()?;
    Ok(Some((f, HDR + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 2 << 20;

    fn one(buf: &[u8]) -> Frame<'_> {
        let (f, used) = decode(buf, MAX).unwrap().unwrap();
        assert_eq!(used, buf.len());
        // Every proper prefix is "need more", never an error or a frame.
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], MAX), Ok(None), "cut at {cut}");
        }
        f
    }

    fn rec(snapshot: bool, stream: u16, seq: u64, c: &WireChange<'_>) -> Vec<u8> {
        let p = record_parts(snapshot, stream, seq, c).unwrap();
        let mut v = Vec::new();
        p.write_to(&mut v);
        assert_eq!(v.len(), p.len());
        v
    }

    #[test]
    fn records_round_trip() {
        let changes = [
            WireChange::Item {
                key: b"k",
                value: b"hello",
                flags: 0xdead_beef,
                exp: 1_900_000_000,
                cas: u64::MAX - 1,
                stale: true,
                rev: 0,
            },
            WireChange::Item {
                key: b"touched",
                value: b"v",
                flags: 3,
                exp: 1_900_000_100,
                cas: 77,
                stale: false,
                rev: u64::MAX,
            },
            WireChange::Item {
                key: &[b'x'; 250],
                value: &[],
                flags: 0,
                exp: 0,
                cas: 1,
                stale: false,
                rev: 0,
            },
            WireChange::Removed {
                key: b"gone",
                cas: 7,
            },
            WireChange::Flush {
                at: 1_800_000_000,
                cas: 99,
            },
        ];
        for c in &changes {
            let b = rec(false, 3, 42, c);
            assert_eq!(
                one(&b),
                Frame::Record {
                    stream: 3,
                    seq: 42,
                    change: *c
                }
            );
        }
        let b = rec(true, 9, 0, &changes[0]);
        assert_eq!(
            one(&b),
            Frame::Snapshot {
                stream: 9,
                change: changes[0]
            }
        );
        // A snapshot is only ever an item.
        assert_eq!(
            decode(&rec(true, 1, 0, &changes[3]), MAX),
            Err(WireError::Malformed)
        );
        // A revised item says so with its own kind and a nonzero revision.
        let b = rec(false, 0, 1, &changes[1]);
        assert_eq!(b[HDR + 2 + 8], K_REVISED);
        let mut zero = b.clone();
        zero[HDR + 2 + 8 + 1 + 8..HDR + 2 + 8 + 1 + 16].fill(0);
        assert_eq!(decode(&zero, MAX), Err(WireError::Malformed));
        assert_eq!(rec(false, 0, 1, &changes[0])[HDR + 2 + 8], K_ITEM);
    }

    #[test]
    fn control_frames_round_trip() {
        let mut b = Vec::new();
        put_hello(&mut b, 1, 2, 3, true, &[5; NONCE]);
        assert_eq!(
            one(&b),
            Frame::Hello {
                node_id: 1,
                run_id: 2,
                streams: 3,
                host_bit: true,
                nonce: [5; NONCE]
            }
        );
        b.clear();
        put_challenge(&mut b, 8, 9, &[1; NONCE], &[2; PROOF]);
        assert_eq!(
            one(&b),
            Frame::Challenge {
                node_id: 8,
                run_id: 9,
                nonce: [1; NONCE],
                proof: [2; PROOF]
            }
        );
        b.clear();
        put_auth(&mut b, &[3; PROOF]);
        assert_eq!(one(&b), Frame::Auth { proof: [3; PROOF] });
        b.clear();
        let pos = [
            Position {
                synced: true,
                seq: 10,
            },
            Position {
                synced: false,
                seq: 0,
            },
        ];
        put_ready(&mut b, 77, &pos);
        match one(&b) {
            Frame::Ready {
                known_run,
                positions,
            } => {
                assert_eq!(known_run, 77);
                assert_eq!(positions.iter().collect::<Vec<_>>(), pos.to_vec());
            }
            f => panic!("{f:?}"),
        }
        b.clear();
        put_ack(&mut b, [(0u16, 5u64), (1, 6)].into_iter());
        match one(&b) {
            Frame::Ack { entries } => {
                assert_eq!(entries.iter().collect::<Vec<_>>(), vec![(0, 5), (1, 6)])
            }
            f => panic!("{f:?}"),
        }
        b.clear();
        put_sync_begin(&mut b, 4, 100);
        assert_eq!(
            one(&b),
            Frame::SyncBegin {
                stream: 4,
                next_seq: 100
            }
        );
        b.clear();
        put_sync_end(&mut b, 4);
        assert_eq!(one(&b), Frame::SyncEnd { stream: 4 });
        b.clear();
        put_refused(&mut b, refuse::AUTH);
        assert_eq!(
            one(&b),
            Frame::Refused {
                reason: refuse::AUTH
            }
        );
    }

    #[test]
    fn frames_back_to_back_decode_one_at_a_time() {
        let mut b = Vec::new();
        put_sync_end(&mut b, 1);
        put_sync_end(&mut b, 2);
        let (f, used) = decode(&b, MAX).unwrap().unwrap();
        assert_eq!(f, Frame::SyncEnd { stream: 1 });
        let (f, _) = decode(&b[used..], MAX).unwrap().unwrap();
        assert_eq!(f, Frame::SyncEnd { stream: 2 });
    }

    #[test]
    fn garbage_and_oversized_lengths_are_errors() {
        // A memcached command on the replication port: refused at once.
        assert_eq!(decode(b"g", MAX), Err(WireError::BadMagic));
        assert_eq!(decode(b"get foo\r\n", MAX), Err(WireError::BadMagic));
        assert_eq!(decode(&[0xC7, b'x'], MAX), Err(WireError::BadMagic));
        // Version 1 (before change kind 4) and a future 3 are refused.
        assert_eq!(decode(&[0xC7, b'R', 1], MAX), Err(WireError::BadVersion(1)));
        assert_eq!(decode(&[0xC7, b'R', 3], MAX), Err(WireError::BadVersion(3)));
        assert_eq!(
            decode(&[0xC7, b'R', VERSION, 0], MAX),
            Err(WireError::UnknownType(0))
        );
        // The refusal in the peer's version: same layout, its version byte.
        let mut r = Vec::new();
        put_refused_as(&mut r, 1, refuse::VERSION);
        assert_eq!(r, [0xC7, b'R', 1, ty::REFUSED, 0, 0, 0, 1, refuse::VERSION]);
        assert_eq!(
            decode(&header(ty::RECORD, u32::MAX), MAX),
            Err(WireError::TooLong(u32::MAX))
        );
        // Declared lengths inside the payload that overrun it.
        let mut b = rec(
            false,
            0,
            1,
            &WireChange::Removed {
                key: b"abc",
                cas: 1,
            },
        );
        let n = b.len();
        b[n - 4] = 0xff; // key length high byte
        assert_eq!(decode(&b, MAX), Err(WireError::Malformed));
        // Trailing bytes inside a payload.
        let mut b = Vec::new();
        frame(&mut b, ty::SYNC_END, &[&[0, 1, 2]]);
        assert_eq!(decode(&b, MAX), Err(WireError::Malformed));
        // A READY claiming more streams than allowed.
        let mut b = Vec::new();
        frame(&mut b, ty::READY, &[&[0; 8], &[0xff, 0xff]]);
        assert_eq!(decode(&b, MAX), Err(WireError::Malformed));
    }

    #[test]
    fn oversize_keys_are_not_framed() {
        let key = vec![b'k'; MAX_KEY + 1];
        assert!(record_parts(false, 0, 1, &WireChange::Removed { key: &key, cas: 1 }).is_none());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b, 1024);
        }

        #[test]
        fn random_payloads_behind_a_good_header_never_panic(
            t in 1u8..=10,
            p in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut b = header(t, p.len() as u32).to_vec();
            b.extend_from_slice(&p);
            match decode(&b, 1024) {
                Ok(Some((_, used))) => prop_assert_eq!(used, b.len()),
                Ok(None) => prop_assert!(false, "a whole frame is never need-more"),
                Err(_) => {}
            }
        }

        #[test]
        fn items_round_trip(
            key in proptest::collection::vec(any::<u8>(), 0..300),
            value in proptest::collection::vec(any::<u8>(), 0..300),
            flags: u32, exp: i64, cas: u64, stale: bool, stream: u16, seq: u64, rev: u64,
        ) {
            let c = WireChange::Item { key: &key, value: &value, flags, exp, cas, stale, rev };
            let b = rec(false, stream, seq, &c);
            let (f, used) = decode(&b, MAX).unwrap().unwrap();
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(f, Frame::Record { stream, seq, change: c });
        }
    }
}
