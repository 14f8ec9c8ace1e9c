#!/usr/bin/env python3
"""Write the starting seeds of the fuzz targets (tests/fuzz/src/lib.rs):
valid requests of every kind in all three protocols, and the malformed ones
the integration tests send (tests/it/security_parse.rs, ascii_limits.rs,
meta.rs, binary_wire.rs). scripts/fuzz started from these; the committed
corpus (tests/fuzz/corpus/) is what `cargo afl cmin` kept of them plus what
the fuzzer found (docs/ROBUSTNESS.md).

    tests/fuzz/seeds.py OUT_DIR      # writes OUT_DIR/<target>/<n>
"""
import os
import random
import struct
import sys

# ---------------------------------------------------------------- text --
BIG = 1 << 20
TEXT = [
    # storage
    b"set k 0 0 1\r\nv\r\n",
    b"set k 5 100 3 noreply\r\nabc\r\n",
    b"add k 0 0 1\r\nv\r\n",
    b"replace k 0 0 1\r\nv\r\n",
    b"append k 0 0 2\r\nxy\r\n",
    b"prepend k 0 0 2\r\nxy\r\n",
    b"cas k 0 0 1 12345\r\nv\r\n",
    b"cas k 0 0 1 0 noreply\r\nv\r\n",
    b"set k 4294967295 -1 0\r\n\r\n",
    b"set k 0 2592001 1\r\nv\r\n",
    # retrieval
    b"get k\r\n",
    b"get a b c d\r\n",
    b"gets k\r\n",
    b"bget k\r\n",
    b"gat 100 k\r\n",
    b"gats 0 a b\r\n",
    # arithmetic, touch, delete
    b"incr n 1\r\n",
    b"decr n 18446744073709551615\r\n",
    b"incr n 5 noreply\r\n",
    b"touch k 10\r\n",
    b"delete k\r\n",
    b"delete k noreply\r\n",
    b"delete k 0\r\n",
    # admin
    b"flush_all\r\n",
    b"flush_all 10\r\n",
    b"flush_all 0 noreply\r\n",
    b"stats\r\n",
    b"stats settings\r\n",
    b"stats items\r\n",
    b"stats slabs\r\n",
    b"stats sizes\r\n",
    b"stats conns\r\n",
    b"stats reset\r\n",
    b"stats detail on\r\n",
    b"stats detail dump\r\n",
    b"stats detail off\r\n",
    b"stats cachedump 1 10\r\n",
    b"stats extstore\r\n",
    b"stats replication\r\n",
    b"stats nonsense\r\n",
    b"verbosity 1\r\n",
    b"verbosity 0 noreply\r\n",
    b"version\r\n",
    b"quit\r\n",
    b"slabs automove 1\r\n",
    b"slabs reassign 1 2\r\n",
    b"lru_crawler metadump all\r\n",
    b"lru_crawler crawl all\r\n",
    b"lru_crawler disable\r\n",
    b"lru_crawler enable\r\n",
    b"lru_crawler sleep 100\r\n",
    b"lru_crawler tocrawl 10\r\n",
    b"refresh_certs\r\n",
    b"shutdown\r\n",
    b"watch fetchers\r\n",
    b"lease-get k\r\n",
    b"lease-set k 1 0 0 1\r\nv\r\n",
    b"metaget k\r\n",
    b"mn\r\n",
    # malformed (tests/it/security_parse.rs, ascii_limits.rs)
    b"\r\n",
    b"\x00 \r\n",
    b"set k 0 0 -1\r\n",
    b"set k 0 0 4294967296\r\nv\r\n",
    b"set k 0 0 2\r\nabc\r\n",
    b"set k 0 0 1\r\nvX\r\n",
    b"set k 0 0 %d\r\n" % BIG,
    b"set k 0 0 2147483647\r\n",
    b"set " + b"k" * 251 + b" 0 0 1\r\nv\r\n",
    b"add k 0 0 -2147483649\r\nversion\r\n",
    b"append k 0 99999999999 1\r\ny\r\nget k\r\n",
    b"cas k 0 0 1 +0\r\nx\r\n",
    b"cas k 0 0 1\r\nx\r\n",
    b"incr n -1\r\n",
    b"incr n abc\r\n",
    b"decr\r\n",
    b"touch k\r\n",
    b"flush_all 4294967296\r\nflush_all -0\r\n",
    b"gat 9999999999999999999999 k\r\ntouch k -9223372036854775809\r\n",
    b"get " + b"x" * 251 + b"\r\n",
    b"get a\x01b\r\n",
    b"get\r\n",
    b"verbosity\r\n",
    b"verbosity a b c\r\n",
    b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    b"POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\nset pwned 0 0 1\r\nx\r\n",
    b"foo bar HTTP/9\r\nversion\r\n",
    b"x" * 2100,
    b"get " + b"k " * 1200 + b"\r\n",
    b"nonsense\r\n",
    b"set k 0 0 1 \r\nv\r\n",
    b"set k 0 0 1\nv\n",
]

# ---------------------------------------------------------------- meta --
META = [
    b"mg k v\r\n",
    b"mg k s v f t c k O123 q\r\n",
    b"mg k h l u\r\n",
    b"mg k T30 N30 R10 v\r\n",
    b"mg k E99 v\r\n",
    b"mg AAAA b v k\r\n",
    b"mg !!!! b\r\n",
    b"mg k C5 v\r\n",
    b"ms k 1\r\nv\r\n",
    b"ms k 3 T100 F5 c q\r\nabc\r\n",
    b"ms k 1 MA\r\nv\r\n",
    b"ms k 1 MP\r\nv\r\n",
    b"ms k 1 ME\r\nv\r\n",
    b"ms k 1 MR\r\nv\r\n",
    b"ms k 1 MS I C1 E2\r\nv\r\n",
    b"ms k 1 MX\r\nv\r\n",
    b"ms k -1\r\n",
    b"ms k %d T0\r\n" % BIG,
    b"ms k 2 b\r\nvv\r\n",
    b"ms k 1 N30 s k O9\r\nv\r\n",
    b"md k\r\n",
    b"md k q I T30\r\n",
    b"md k x C1 E2 k O1\r\n",
    b"ma k\r\n",
    b"ma k N0 J5 D3 MI v t c k\r\n",
    b"ma k MD D2 q\r\n",
    b"ma k M+ D18446744073709551615\r\n",
    b"ma k MX\r\n",
    b"ma k J-1\r\n",
    b"me k\r\n",
    b"me AAAA b\r\n",
    b"mg k " + b"O" + b"x" * 40 + b"\r\n",
    b"mg k a b c d e f g h i j k l m n o p q r s t u v\r\n",
    b"mg k v v\r\n",
    b"mg\r\n",
    b"me\r\n",
    b"mg " + b"k" * 251 + b" v\r\n",
]

# -------------------------------------------------------------- binary --
REQ = 0x80


def pkt(op, key=b"", extras=b"", value=b"", opaque=0, cas=0, magic=REQ,
        bodylen=None, vbucket=0, datatype=0):
    body = extras + key + value
    if bodylen is None:
        bodylen = len(body)
    return struct.pack(">BBHBBHIIQ", magic, op, len(key), len(extras),
                       datatype, vbucket, bodylen, opaque, cas) + body


SET_EX = struct.pack(">II", 5, 100)
ARITH_EX = struct.pack(">QQI", 3, 7, 0)
BIN = []
for op in (0x00, 0x09, 0x0c, 0x0d):  # get getq getk getkq
    BIN.append(pkt(op, b"k", opaque=op))
for op in (0x01, 0x02, 0x03, 0x11, 0x12, 0x13):  # set add replace (q)
    BIN.append(pkt(op, b"k", SET_EX, b"value", opaque=op))
    BIN.append(pkt(op, b"k", SET_EX, b"v", cas=77))
for op in (0x0e, 0x0f, 0x19, 0x1a):  # append prepend (q)
    BIN.append(pkt(op, b"k", b"", b"tail"))
for op in (0x04, 0x14):  # delete (q)
    BIN.append(pkt(op, b"k"))
    BIN.append(pkt(op, b"k", cas=9))
for op in (0x05, 0x06, 0x15, 0x16):  # incr decr (q)
    BIN.append(pkt(op, b"n", ARITH_EX))
    BIN.append(pkt(op, b"n", struct.pack(">QQI", 1, 0, 0xffffffff)))
for op in (0x07, 0x17, 0x0a, 0x0b):  # quit quitq noop version
    BIN.append(pkt(op))
for op in (0x08, 0x18):  # flush (q)
    BIN.append(pkt(op))
    BIN.append(pkt(op, extras=struct.pack(">I", 10)))
BIN.append(pkt(0x10))  # stat
for group in (b"settings", b"items", b"slabs", b"sizes", b"conns", b"reset",
              b"detail dump", b"detail on", b"nonsense"):
    BIN.append(pkt(0x10, group))
BIN.append(pkt(0x1b, extras=struct.pack(">I", 1)))  # verbosity
BIN.append(pkt(0x1c, b"k", struct.pack(">I", 10)))  # touch
for op in (0x1d, 0x1e, 0x23, 0x24):  # gat gatq gatk gatkq
    BIN.append(pkt(op, b"k", struct.pack(">I", 10)))
BIN.append(pkt(0x20))  # sasl list mechs
BIN.append(pkt(0x21, b"PLAIN", value=b"\x00user\x00pass"))
BIN.append(pkt(0x21, b"PLAIN"))
BIN.append(pkt(0x22, b"PLAIN", value=b"\x00user\x00pass"))
# SASL (served with -S; without it every SASL opcode is "unknown command"):
# list mechs, auth and step with good and malformed bodies
SASL = [
    pkt(0x20, opaque=0x20),
    pkt(0x20, b"k"),  # list mechs with a key
    pkt(0x21, b"plain", value=b"\x00user\x00pass"),  # lower-case mechanism
    pkt(0x21, b"PLAIN", value=b"authz\x00user\x00pass"),
    pkt(0x21, b"PLAIN", value=b"\x00user\x00"),  # empty password
    pkt(0x21, b"PLAIN", value=b"userpass"),  # no NULs
    pkt(0x21, b"SCRAM-SHA-256", value=b"n,,n=user,r=abc"),
    pkt(0x21, b"M" * 40, value=b"\x00u\x00p"),  # mechanism over 32 bytes
    pkt(0x21, b"", value=b"\x00u\x00p"),  # no mechanism
    pkt(0x21, b"PLAIN", b"xxxx", b"\x00u\x00p"),  # extras
    pkt(0x21, b"PLAIN", value=b"\x00u\x00p", bodylen=(1 << 20) + 100),
    pkt(0x22, b"PLAIN"),  # step, empty
    pkt(0x22, b"PLAIN", value=b"\x00u\x00p"),  # step without an auth
]
BIN += SASL
# malformed (tests/it/binary_wire.rs)
BIN += [
    pkt(0x01, b"k", SET_EX, b"v", magic=0x81),  # response magic
    pkt(0x00, b"k", bodylen=0),  # key longer than body
    pkt(0x01, b"k", b"", b"v"),  # set without extras
    pkt(0x00, b"k", b"xxxx"),  # get with extras
    pkt(0x05, b"n", b"\x00"),  # short arith extras
    pkt(0x01, b"k", SET_EX, b"v", bodylen=0x7fffffff),
    pkt(0x01, b"k", SET_EX, b"v", bodylen=0xffffffff),
    pkt(0x01, b"k", SET_EX, b"x" * 10, bodylen=(1 << 20) + 100),
    pkt(0x01, b"k" * 251, SET_EX, b"v"),
    pkt(0x00, b""),  # empty key
    pkt(0x55),  # unknown opcode
    pkt(0x0a, datatype=1),
    pkt(0x0a)[:20],  # short header
]

# --------------------------------------------------------- replication --
# src/replication/wire.rs: an 8-byte header (magic 0xC7 'R', version, type,
# payload length u32), then the payload, big-endian. The version byte here
# is 1; the target's mode byte 0x40 sets every header's version to the
# build's wire::VERSION, so these stay valid when it changes.
def frame(t, payload, length=None, ver=1):
    return (b"\xc7R" + bytes([ver, t]) +
            struct.pack(">I", len(payload) if length is None else length) + payload)


def item(key, value, cas, flags=0, exp=0, stale=0, rev=0):
    if rev:
        head = struct.pack(">BQQ", 4, cas, rev)
    else:
        head = struct.pack(">BQ", 1, cas)
    return (head + struct.pack(">IqBHI", flags, exp, stale, len(key), len(value))
            + key + value)


def removed(key, cas):
    return struct.pack(">BQH", 2, cas, len(key)) + key


def flushed(at, cas):
    return struct.pack(">BQq", 3, cas, at)


def record(stream, seq, change):
    return frame(5, struct.pack(">HQ", stream, seq) + change)


def snapshot(stream, change):
    return frame(6, struct.pack(">H", stream) + change)


def sync_begin(stream, next_seq):
    return frame(7, struct.pack(">HQ", stream, next_seq))


def sync_end(stream):
    return frame(8, struct.pack(">H", stream))


FUTURE = 2000000000  # 2033: absolute Unix seconds
REPL_FRAMES = [
    # the control frames (a receiver refuses them after the handshake)
    frame(1, struct.pack(">QQHB", 1, 2, 4, 1) + b"n" * 16),
    frame(2, struct.pack(">QQ", 1, 2) + b"n" * 16 + b"p" * 32),
    frame(3, b"p" * 32),
    frame(4, struct.pack(">QH", 9, 2) + struct.pack(">BQ", 1, 5) + struct.pack(">BQ", 0, 0)),
    frame(9, struct.pack(">H", 2) + struct.pack(">HQ", 0, 5) + struct.pack(">HQ", 1, 7)),
    frame(10, b"\x01"),
]
REPL_STREAMS = [
    # a full sync of stream 0, then live records
    sync_begin(0, 1) + snapshot(0, item(b"a", b"1", 10)) +
    snapshot(0, item(b"b", b"22", 11, flags=7, exp=FUTURE)) + sync_end(0) +
    record(0, 1, item(b"c", b"333", 12)) +
    record(0, 2, item(b"a", b"1", 10, exp=FUTURE, rev=13)) +
    record(0, 3, removed(b"b", 14)) + record(0, 4, flushed(0, 15)) +
    record(0, 5, item(b"d", b"x" * 5000, 16)),
    # resends, a gap (an error: the stream is marked unsynced)
    record(1, 1, item(b"k", b"v", 1)) + record(1, 1, item(b"k", b"v", 1)) +
    record(1, 3, item(b"k", b"w", 2)),
    # older versions: a removal newer than the item, a stale item, a
    # revision not newer than the one applied
    record(0, 1, removed(b"k", 50)) + record(0, 2, item(b"k", b"old", 40)) +
    record(0, 3, item(b"s", b"v", 5, stale=1)) +
    record(0, 4, item(b"s", b"v", 5, rev=9)) + record(0, 5, item(b"s", b"v", 5, rev=8)),
    # expired, flush in the future, longest memcached key, empty value
    record(2, 1, item(b"e", b"v", 3, exp=1)) + record(2, 2, flushed(FUTURE, 4)) +
    record(2, 3, item(b"k" * 250, b"", 5)) + record(2, 4, item(b"", b"v", 6)),
    # stream out of range; an unexpected frame after the handshake
    record(7, 1, item(b"k", b"v", 1)),
    REPL_FRAMES[0] + record(0, 1, item(b"k", b"v", 1)),
    sync_begin(3, 0) + sync_begin(3, 1 << 63) + sync_end(3) + sync_end(9),
    # malformed: bad magic, bad version, unknown type, a length past any
    # limit, a key length past the payload, a trailing byte, a snapshot
    # that is not an item, a zero revision, a bad stale byte
    b"get k\r\n",
    frame(8, struct.pack(">H", 0), ver=0) + sync_end(0),
    frame(11, b""),
    frame(5, b"", length=0xffffffff),
    frame(5, struct.pack(">HQ", 0, 1) + struct.pack(">BQH", 2, 1, 60000) + b"k"),
    frame(8, struct.pack(">HB", 0, 0)),
    snapshot(0, removed(b"k", 1)),
    frame(5, struct.pack(">HQBQQ", 0, 1, 4, 1, 0) + struct.pack(">IqBHI", 0, 0, 0, 1, 1) + b"kv"),
    record(0, 1, item(b"k", b"v", 1, stale=2)),
    frame(4, struct.pack(">QH", 0, 2000)),
    frame(4, struct.pack(">QH", 0, 1) + struct.pack(">BQ", 2, 0)),
    # truncated: half a header, half a payload
    record(0, 1, item(b"k", b"value", 1))[:5],
    record(0, 1, item(b"k", b"value", 1))[:30],
]


def repl_seed(stream_count, split, data):
    return bytes([0x40 | stream_count, split]) + data


# ----------------------------------------------------------------- TLS --
def client_hellos():
    """The first flight of Python's (OpenSSL's) TLS client: TLS 1.3 and
    1.2 ClientHellos, with and without SNI and ALPN."""
    import ssl
    out = []
    for maxv, sni, alpn in ((ssl.TLSVersion.TLSv1_3, "localhost", None),
                            (ssl.TLSVersion.TLSv1_2, "localhost", None),
                            (ssl.TLSVersion.TLSv1_3, None, ["memcached"]),
                            (ssl.TLSVersion.TLSv1_2, None, None)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = maxv
        if alpn:
            ctx.set_alpn_protocols(alpn)
        inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        conn = ctx.wrap_bio(inc, outg, server_hostname=sni)
        try:
            conn.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append(outg.read())
    return out


# --------------------------------------------------------------- write --


def write(out, target, items):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    rng = random.Random(13)
    write(out, "ascii", TEXT + META)
    write(out, "binary", BIN)
    verbs = {b"mg": 0, b"ms": 1, b"md": 2, b"ma": 3, b"me": 4}
    meta_seeds = [bytes([verbs[m[:2]]]) + m[3:] for m in META if m[:2] in verbs]
    meta_seeds.append(b"\x05\r\n")  # mn
    write(out, "meta", meta_seeds)
    # encode: ctx (noreply, opcode, opaque, with_key, binary), a count,
    # then each response: variant byte and its fields
    enc = []
    for variant in range(31):
        for binary in (0, 1):
            ctx = bytes([rng.getrandbits(1), rng.choice([0, 1, 0x0c, 0x1c, 0x0e, 0x10]),
                         1, 2, 3, 4, rng.getrandbits(1), binary])
            fields = bytes(rng.getrandbits(8) for _ in range(24)) + b"key value data"
            enc.append(ctx + bytes([1, variant]) + fields + b"\x00\x01k v t s\r\n")
    write(out, "encode", enc)
    # conn: split pattern byte, then a stream
    streams = [
        b"".join(TEXT[:60]),
        b"set a 0 0 1\r\n1\r\nget a a a a\r\nincr a 5\r\ngets a\r\nmn\r\n",
        b"".join(META[:30]),
        b"ms k 3\r\nabc\r\nmg k v c t s f\r\nma k N0\r\nmd k q\r\nmn\r\n",
        b"set k 0 0 -1\r\nget k\r\nset k 0 0 2\r\nabc\r\nversion\r\n",
        b"".join(BIN[:40]),
        b"".join(p for p in BIN if p[1] in (0x01, 0x09, 0x0d, 0x11, 0x0a)),
        pkt(0x01, b"k", SET_EX, b"v") + pkt(0x0d, b"k") + pkt(0x0a),
        b"GET / HTTP/1.1\r\n\r\n",
        # the SASL requests a connection survives, then one whose body is
        # swallowed, then the ones it closes on
        b"".join(SASL[i] for i in (0, 2, 3, 4, 5, 6, 7, 11, 12)) + pkt(0x0a),
        SASL[10] + b"\x00" * 64,
        SASL[1] + pkt(0x0a),
        SASL[8] + pkt(0x0a),
        SASL[9] + pkt(0x0a),
        b"set big 0 0 %d\r\n" % 5000 + b"x" * 5000 + b"\r\nget big big big big big\r\n",
    ]
    conn = []
    for s in streams:
        for split in (0, 3, 7, 11):
            conn.append(bytes([split]) + s)
    write(out, "conn", conn)
    write(out, "conn_small", conn)
    # replication: mode (0x40: set the version; streams), split, frames
    repl = [repl_seed(4, 0, f) for f in REPL_FRAMES]
    for i, s in enumerate(REPL_STREAMS):
        repl.append(repl_seed(4, 0, s))
        repl.append(repl_seed(1 + i % 7, 3 + 4 * (i % 3), s))
    write(out, "replication", repl)
    # tls: mode (& 3: 0 raw ClientHello on, 1 requests after a real
    # handshake, 2 raw bytes after one; & 4 client certificate required;
    # & 8 TLS 1.2), split, bytes
    tls = []
    for h in client_hellos():
        for mode in (0, 4):
            tls.append(bytes([mode, 0]) + h)
            tls.append(bytes([mode, 7]) + h + b"\x17\x03\x03\x00\x05hello")
    tls.append(b"\x00\x00" + b"get k\r\n")  # plaintext on a TLS port
    tls.append(b"\x00\x00" + b"\x16\x03\x01\xff\xff" + b"\x01" * 40)
    for mode in (1, 5, 9, 13):
        for s in (streams[1], streams[3], streams[4], streams[7],
                  streams[9], TEXT[0] + b"quit\r\n"):
            tls.append(bytes([mode, 0]) + s)
        tls.append(bytes([mode, 5]) + streams[0])
    for mode in (2, 6, 10):
        for raw in (b"\x17\x03\x03\x00\x10" + b"\x00" * 16,
                    b"\x15\x03\x03\x00\x02\x01\x00",
                    b"\x16\x03\x03\x00\x04\x00\x00\x00\x00",
                    b"get k\r\n",
                    b"\x17\x03\x03\xff\xff"):
            tls.append(bytes([mode, 0]) + raw)
    write(out, "tls", tls)


if __name__ == "__main__":
    main()
