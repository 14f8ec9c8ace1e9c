//! Binary-protocol test helpers shared by the `binary`, `binary_differential`,
//! `security_parse` and `cli` suites: a packet builder and a blocking client.
//! The opcode constants here are written out from the protocol spec on
//! purpose, independently of the server's own table in src/protocol.
//!
//! Servers come from the shared harness (`tests/it/common.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const REQ: u8 = 0x80;
pub const RES: u8 = 0x81;

pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCR: u8 = 0x05;
    pub const DECR: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCRQ: u8 = 0x15;
    pub const DECRQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// One request packet.
#[derive(Clone, Debug, Default)]
pub struct Pkt {
    pub opcode: u8,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub opaque: u32,
    pub cas: u64,
    /// Lie about the body length.
    pub bodylen: Option<u32>,
    pub magic: Option<u8>,
}

impl Pkt {
    pub fn new(opcode: u8) -> Pkt {
        Pkt {
            opcode,
            ..Pkt::default()
        }
    }
    pub fn key(mut self, k: &[u8]) -> Pkt {
        self.key = k.to_vec();
        self
    }
    pub fn value(mut self, v: &[u8]) -> Pkt {
        self.value = v.to_vec();
        self
    }
    pub fn extras(mut self, e: &[u8]) -> Pkt {
        self.extras = e.to_vec();
        self
    }
    pub fn opaque(mut self, o: u32) -> Pkt {
        self.opaque = o;
        self
    }
    pub fn cas(mut self, c: u64) -> Pkt {
        self.cas = c;
        self
    }
    pub fn bodylen(mut self, b: u32) -> Pkt {
        self.bodylen = Some(b);
        self
    }
    pub fn magic(mut self, m: u8) -> Pkt {
        self.magic = Some(m);
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + self.extras.len() + self.key.len() + self.value.len());
        let body = (self.extras.len() + self.key.len() + self.value.len()) as u32;
        v.push(self.magic.unwrap_or(REQ));
        v.push(self.opcode);
        v.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        v.push(self.extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&self.bodylen.unwrap_or(body).to_be_bytes());
        v.extend_from_slice(&self.opaque.to_be_bytes());
        v.extend_from_slice(&self.cas.to_be_bytes());
        v.extend_from_slice(&self.extras);
        v.extend_from_slice(&self.key);
        v.extend_from_slice(&self.value);
        v
    }
}

/// Set-family packet: flags, exptime.
pub fn set(opcode: u8, key: &[u8], value: &[u8], flags: u32, exp: u32) -> Pkt {
    let mut e = flags.to_be_bytes().to_vec();
    e.extend_from_slice(&exp.to_be_bytes());
    Pkt::new(opcode).extras(&e).key(key).value(value)
}

/// Incr/decr packet.
pub fn arith(opcode: u8, key: &[u8], delta: u64, initial: u64, exp: u32) -> Pkt {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exp.to_be_bytes());
    Pkt::new(opcode).extras(&e).key(key)
}

/// Touch/GAT packet.
pub fn touch(opcode: u8, key: &[u8], exp: u32) -> Pkt {
    Pkt::new(opcode).extras(&exp.to_be_bytes()).key(key)
}

pub fn get(opcode: u8, key: &[u8]) -> Pkt {
    Pkt::new(opcode).key(key)
}

/// One response packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub magic: u8,
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Reply {
    pub fn flags(&self) -> u32 {
        u32::from_be_bytes(self.extras[..4].try_into().unwrap())
    }
    pub fn counter(&self) -> u64 {
        u64::from_be_bytes(self.value[..8].try_into().unwrap())
    }
}

pub struct Client {
    pub s: TcpStream,
}

pub const NOOP_OPAQUE: u32 = 0xfeed_f00d;

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = crate::common::tcp(([127, 0, 0, 1], port).into());
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s }
    }

    pub fn send(&mut self, p: &Pkt) {
        self.s.write_all(&p.bytes()).unwrap();
    }

    pub fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// Next reply; None on EOF (connection closed).
    pub fn read(&mut self) -> Option<Reply> {
        let mut h = [0u8; 24];
        let mut got = 0;
        while got < 24 {
            match self.s.read(&mut h[got..]) {
                Ok(0) => {
                    assert_eq!(got, 0, "connection closed mid-header");
                    return None;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read (no reply within the timeout?): {e}"),
            }
        }
        let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
        let extlen = h[4] as usize;
        let bodylen = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0u8; bodylen];
        self.s.read_exact(&mut body).unwrap();
        Some(Reply {
            magic: h[0],
            opcode: h[1],
            status: u16::from_be_bytes([h[6], h[7]]),
            opaque: u32::from_be_bytes(h[12..16].try_into().unwrap()),
            cas: u64::from_be_bytes(h[16..24].try_into().unwrap()),
            extras: body[..extlen].to_vec(),
            key: body[extlen..extlen + keylen].to_vec(),
            value: body[extlen + keylen..].to_vec(),
        })
    }

    /// Send one request, read one reply.
    pub fn call(&mut self, p: &Pkt) -> Reply {
        self.send(p);
        self.read().expect("connection closed")
    }

    /// Send requests followed by a Noop; every reply up to the Noop's.
    pub fn batch(&mut self, ps: &[Pkt]) -> Vec<Reply> {
        let mut buf = Vec::new();
        for p in ps {
            buf.extend(p.bytes());
        }
        buf.extend(Pkt::new(op::NOOP).opaque(NOOP_OPAQUE).bytes());
        self.s.write_all(&buf).unwrap();
        let mut out = Vec::new();
        loop {
            let r = self.read().expect("closed before the noop reply");
            if r.opcode == op::NOOP && r.opaque == NOOP_OPAQUE {
                return out;
            }
            out.push(r);
        }
    }

    /// Every reply until the server closes the connection.
    pub fn until_closed(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some(r) = self.read() {
            out.push(r);
            assert!(out.len() < 10_000, "server did not close");
        }
        out
    }

    /// Stat packets up to (not including) the terminator; or the error reply.
    pub fn stats(&mut self, group: &str) -> Result<Vec<(String, String)>, Reply> {
        self.send(&Pkt::new(op::STAT).key(group.as_bytes()));
        let mut out = Vec::new();
        loop {
            let r = self.read().expect("closed during stats");
            if r.status != 0 {
                return Err(r);
            }
            assert_eq!(r.opcode, op::STAT);
            if r.key.is_empty() {
                assert!(r.value.is_empty());
                return Ok(out);
            }
            out.push((
                String::from_utf8(r.key).unwrap(),
                String::from_utf8(r.value).unwrap(),
            ));
        }
    }

    pub fn stat(&mut self, group: &str, name: &str) -> String {
        self.stats(group)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no stat {name}"))
            .1
    }
}
