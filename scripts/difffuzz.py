#!/usr/bin/env python3
"""Differential fuzzer: corecached against memcached 1.6.18, reply for reply.

A seeded generator makes random, mostly well-formed command sequences over
the three protocols (text storage/retrieval/arithmetic/admin commands with
and without noreply, meta mg/ms/md/ma/mn/me with random flag sets, base64
keys, opaque and q mode, binary requests of every opcode with the quiet
variants, bad magic, bad lengths), with pipelines (several commands in one
send, sometimes split into two writes), bad numbers and edge values (each
numeric field at 0, its maximum and maximum + 1). The same sequence goes to
both servers (`--ref`, default memcached from PATH, and `--test`, default
target/release/corecached), both started once by scripts/servers.py on
127.0.0.1 with the same flags and flushed (`flush_all`) before every
sequence. The reply streams are compared byte for byte after masking what
legitimately differs:

* CAS values are renumbered per server in order of first appearance, so
  equal/unequal relations are still compared (`VALUE ... <cas>`, meta `c`,
  `ME cas=`, binary header CAS);
* TTLs (meta `t`) and seconds since last access (meta `l`, `ME la=`) may
  differ by 2 s (the servers' clocks tick on their own);
* the version string (text `VERSION`, binary Version body);
* binary Stat replies (the statistics differ) and `ME` fields that depend
  on the store's layout (see MASKS below, each naming its
  docs/COMPATIBILITY.md row).

A sequence is one to three connections in a row; each connection is text
(classic and meta mixed) or binary. After every send the fuzzer sends a
sentinel (`mn` on text, a Noop with opaque 0xFEEDF00D on binary) and reads
until the sentinel's reply arrives, the connection closes, or nothing came
for IDLE seconds (a sentinel swallowed into a data block). A closed
connection is part of the reply stream: both servers must close at the same
point. The sequence's placeholders (the last CAS a server returned, "now +
N" exptimes) are filled in per server at send time.

On a difference the fuzzer runs the sequence again on the same servers (a
difference that does not repeat is timing noise), then once more on freshly
started servers, only to say whether it needs what earlier sequences left in
the servers; it prints the seed, shrinks the sequence (drops one command at
a time while the difference remains), and prints the minimal sequence and
both servers' normalised replies. Exit status 1 if any difference was found
(or a server died), else 0.

    scripts/difffuzz.py --seeds 0:150                # the bounded run of scripts/test
    nice -n 10 scripts/difffuzz.py --duration 1200   # a long run from a random seed
    scripts/difffuzz.py --seed 123 --show            # print one seed's sequence
    scripts/difffuzz.py --ref corecached --ref-args "-C"   # must fail (a plant)
"""

import argparse
import base64
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402  (scripts/servers.py, the one server launcher)

IDLE = 0.25  # s without a byte, when the sentinel's reply does not come
FIRST_WAIT = 1.0  # s for the first byte of a send's replies
READ_CAP = 15.0  # s for one send's replies, whatever happens
TTL_SLACK = 2  # s: meta t / l / la may differ by this much
SERVER_FLAGS = ["-t", "2", "-m", "64"]
SENTINEL_TEXT = b"mn\r\n"
SENTINEL_OPAQUE = 0xFEEDF00D
MIB = 1 << 20
ITEM_MAX = [MIB]  # -I, set by --item-max: values are made around it
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1

# What the generator leaves out or the comparison masks on purpose, each a
# row of docs/COMPATIBILITY.md ("Differences" table unless said):
MASKS = """
 silent-block: a text storage line or ms with a bad field carries the data
   block `verbosity 0 noreply` (19 bytes), a silent command, and its length
   token stays in place: rows "Text storage line with a bad field ..." and
   "Meta ms with a key > 250 bytes or too many flags" (memcached runs the
   block as commands, we swallow it).
 huge-length: no text length between -I + 16 MiB and 2147483645: row "A text
   data block announced past -I + 16 MiB".
 binary-body, reply-after-swallow: binary bodies stay under -I + 16 MiB, and
   a body or text block over -I is always sent whole: rows "Binary value body
   past -I + 16 MiB" and "Binary body over -I ...; text data block over -I".
 long-line: no line over 2048 bytes without its newline after other requests
   of a read (refused blocks are cut to 1000 bytes, gat/gats lines stay under
   2048 bytes, a mutation never removes a newline, no bad magic first on a
   connection): row "A text line of more than 2048 bytes ...".
 lost-replies: where memcached closes a connection without a byte for the
   last send, our replies to that send before the same close are not
   compared (rows on requests "after other requests of the same read":
   memcached loses the replies queued before a close).
 http: no HTTP request lines: row "HTTP request line ...".
 multiget: no get line over 1 MiB; a get with a 251-byte key only first in a
   send, and a mutation never merges two keys: rows "Multi-get line longer than 1 MiB", "Multi-get with a key > 250
   bytes after other requests".
 bin-verbosity: no binary Verbosity (0x1b): row "Binary Verbosity (0x1b)".
 bin-unknown: unknown binary opcodes carry no key and no body: row "Binary
   unknown opcode with a key/body".
 bin-stat-touch-body: binary Stat/Touch never carry extra body bytes: row
   "Binary Stat/Touch with extra body bytes".
 bin-bad-magic: a bad magic byte only first in a send (and not in the first
   send): row "Binary request with a bad magic byte after other requests".
 bin-keylen: a header whose key + extras exceed its body is followed by its
   key bytes: row "Binary header whose key + extras are longer than its body".
 bin-partial-header, bin-reply-held: a binary body shorter than announced
   comes first in its send, swallows the whole sentinel and ends the
   connection: rows "Binary: fewer than 24 bytes whose first byte is not
   0x80" and "Replies to earlier binary requests while a later request's
   body has not fully arrived".
 bin-sasl-step: no SASL Step (0x22): row "Binary SASL Step".
 version: VERSION strings masked: row "version".
 stats: binary Stat rows not compared (the terminator is); no text stats.
 ma-ttl: ma never carries T or E: row "Meta ma with T/E on an existing item".
 me: ME exp= masked unless -1: row "Meta me TTL".
 meta-k-b: base64 keys decode to bytes no text or binary key uses, and no N
   goes with b: row "Meta k when the request used b".
 meta-opaque: no opaque over 32 bytes on mg, nor on an ma with N: row "Meta
   mg / ma with an opaque (O) over 32 bytes".
 newer-meta: no E flag, no md x, no ms s, no ms N: row "Meta E on every
   command, md x, ms s, ms N".
 ttl-past: a TTL already past prints as a wrapped u32 in memcached and
   negative here; both count as "past": row "Meta t of an item whose TTL is
   already past".
 flush-delay: no flush_all delay in the future nor an absolute time in the
   past, no mutated flush_all line: rows "flush_all <delay> after an earlier
   flush_all", "flush_all <t> with an absolute Unix time in the past".
 blank-number: all-whitespace values only under the key e0, which incr/decr/
   ma never touch: row "incr/decr of an all-whitespace value".
 cas-order: with I (ms, md), C never carries a CAS the server returned
   (it may be another key's): row "CAS values of different keys".
 number-padding: a number value is compared without its trailing spaces and
   length: row "incr/decr result shorter than the stored value".
Timing, not differences: no TTL of 1-2 s, R tokens away from the TTLs set,
TTL and last-access numbers within 2 s, servers up 3 s before the first
sequence.
"""

# ---------------------------------------------------------------- values --

SILENT = b"verbosity 0 noreply"  # mask silent-block
TEXT_KEYS = ["a", "b", "k1", "key:2", "foo", "n", "x" * 250, "k\x7f", "caf\xe9", "e0"]
# mask blank-number: a value of only whitespace is stored only under "e0",
# which incr/decr/ma never touch (memcached's strtoull reads past such a value
# into leftover bytes: row "incr/decr of an all-whitespace value")
BLANK_KEY = "e0"
ARITH_KEYS = [k for k in TEXT_KEYS if k != BLANK_KEY]


def unblank(key, val):
    if key not in (BLANK_KEY, BLANK_KEY.encode()) and val and not val.strip():
        return val + b"w"
    return val
# mask meta-k-b: decoded bytes no text key has (a space or control byte)
B64_KEYS = [base64.b64encode(k).decode() for k in (b"\x00bin", b"sp ace", b"\xff\xfe", b"a\r\nb")]
FLAGS_OK = [0, 1, 42, 65535]
# (no empty field on storage lines: it moves the length token, see silent-block)
FLAGS_EDGE = [U32, U32 + 1, -1, U64, U64 + 1, "abc", "1a", "+5", "0x10", "007"]
EXP_OK = [0, 0, 0, 100, 3600, 2592000]
EXP_EDGE = [-1, 2592001, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63,
            "abc", "1x", ("now", 3600), ("now", -100), U32, 2**32 + 100]
# (2^32 + 1 would wrap to a TTL of 1 s: timing, see the end of MASKS)
DELTA = [0, 1, 7, 1000, U64, U64 + 1, U64 - 1, -1, "abc", "1a", "0x1"]
CAS_EDGE = [0, 1, U64, U64 + 1, -1, "abc"]
NUM_VALUES = [b"0", b"1", b"9", b"18446744073709551615", b"18446744073709551614",
              b"18446744073709551616", b"-1", b"abc", b"12 ", b"0012", b"", b"1" * 20,
              b" 5", b"42"]
# mask flush-delay: no delay in the future (memcached makes items an earlier
# flush removed visible again), none in the absolute past (memcached does not
# flush): rows "flush_all with a delay" and "flush_all with an absolute time
# in the past".
FLUSH_DELAYS = [None, None, 0, -1, 2**31, U32, -2**31, "abc", "1x"]  # (2^32 + 1 wraps to 1 s)


def ch(rng, *lists, edge=0.15):
    """A value from the first list, or with probability `edge` from the others."""
    if len(lists) > 1 and rng.random() < edge:
        return rng.choice(rng.choice(lists[1:]))
    return rng.choice(lists[0])


def is_edge(v, ok):
    return v not in ok


def value_bytes(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(NUM_VALUES)
    if r < 0.33:
        im = ITEM_MAX[0]
        return b"x" * rng.choice([im - d for d in range(40, 90, 3)] + [im, im + 1, 3 * im // 2])
    if r < 0.36:
        return b"line\r\nEND\r\nVALUE a 0 1\r\n"  # reply-looking data
    n = rng.choice([0, 1, 2, 3, 5, 10, 30, 100, 1000])
    return bytes(rng.choice(b"abcdefghij0123456789 \t") for _ in range(n))


def num(v):
    """A field value as bytes; ("now", d) is filled in at send time."""
    if isinstance(v, tuple):
        return v
    return str(v).encode()


# Templates: a command is a list of parts: bytes, ("now", d) = unix time + d,
# ("cas", i, fmt) = the i-th last distinct CAS this server returned, as text
# digits (fmt "t") or 8 bytes big-endian (fmt "b").

class Cmd:
    __slots__ = ("parts", "mn", "note")

    def __init__(self, parts, mn=0, note=""):
        self.parts = parts
        self.mn = mn  # `mn` replies this command produces (text sentinel counting)
        self.note = note


def join(*items):
    """Flatten bytes / placeholders / lists into parts, adjacent bytes merged."""
    flat = []

    def walk(it):
        if isinstance(it, (bytes, bytearray)):
            flat.append(bytes(it))
        elif isinstance(it, tuple):
            flat.append(it)
        elif isinstance(it, list):
            for x in it:
                walk(x)
        else:
            flat.append(str(it).encode())
    walk(list(items))
    parts = []
    for p in flat:
        if isinstance(p, bytes) and parts and isinstance(parts[-1], bytes):
            parts[-1] += p
        else:
            parts.append(p)
    return parts


def spaced(tokens):
    out = []
    for i, t in enumerate(tokens):
        if i:
            out.append(b" ")
        out.append(t if isinstance(t, tuple) else (t if isinstance(t, bytes) else str(t).encode()))
    return out


# ------------------------------------------------------------- text gen --

def eol(rng):
    return b"\n" if rng.random() < 0.05 else b"\r\n"


def text_key(rng, allow_long=True):
    if allow_long and rng.random() < 0.03:
        return "y" * 251
    return rng.choice(TEXT_KEYS) if rng.random() < 0.97 else ""


def gen_text(rng, first):
    """A text or meta command; sometimes with doubled spaces or one byte changed."""
    cmd = gen_text_cmd(rng, first)
    head = cmd.parts[0] if cmd.parts and isinstance(cmd.parts[0], bytes) else b""
    sp = [i for i, c in enumerate(head) if c == 0x20 and i < head.find(b"\n")]
    r = rng.random()
    if r < 0.06 and sp:  # spaces are separators, however many
        i = rng.choice(sp)
        cmd.parts[0] = head[:i] + rng.choice([b"  ", b"   "]) + head[i:]
    elif r < 0.10 and sp and sp[0] + 1 < head.find(b"\n") and cmd.note not in ("block", "nomut"):
        # one byte after the command name changed (never on a line with a data
        # block: the token count must not move, see silent-block)
        # (mask long-line: the newline stays; mask multiget: a space stays, so no
        # two keys merge into one over 250 bytes)
        i = rng.choice([j for j in range(sp[0] + 1, head.find(b"\n")) if head[j] != 0x20] or [sp[0] + 1])
        cmd.parts[0] = head[:i] + rng.choice([b"0", b"9", b"-", b"x", b"\x00", b"\r", b"\t", b"\xff",
                                              b" "]) + head[i + 1:]
    return cmd


def gen_text_cmd(rng, first):
    r = rng.random()
    noreply = [b"noreply"] if rng.random() < 0.15 else []
    if r < 0.30:  # storage
        cmd = rng.choice(["set", "set", "add", "replace", "append", "prepend", "cas"])
        key = text_key(rng) or "a"  # mask silent-block: no missing key (the token count moves)
        flags = ch(rng, FLAGS_OK, FLAGS_EDGE)
        exp = ch(rng, EXP_OK, EXP_EDGE)
        val = unblank(key, value_bytes(rng))
        bad = key == "y" * 251 or is_edge(flags, FLAGS_OK) or is_edge(exp, EXP_OK)
        toks = [cmd, key, num(flags), num(exp)]
        if cmd == "cas":
            if rng.random() < 0.8:
                toks_cas = ("cas", rng.choice([0, 0, 1]), "t")
            else:
                c = rng.choice(CAS_EDGE)
                toks_cas = num(c)
                bad = bad or c in (U64 + 1, -1, "abc")
        extra = rng.random() < 0.03  # wrong token count (at the end: the length stays in place)
        bad = bad or extra
        if bad:
            val = SILENT  # mask silent-block
        length = len(val)
        no_swallow = [-1, "abc", 2**31 - 2, 2**31 - 1, U64 + 1]  # refused: no block is read
        if rng.random() < 0.12:
            # mask long-line: an unread block must not be a line over 2 KiB; mask
            # reply-after-swallow: a block over -I is always sent whole
            val = val[:1000]
            if bad:  # mask silent-block: the block is read as 19 bytes or not at all
                length = rng.choice(no_swallow + [2**32 + len(val)])
            else:  # mask huge-length: never in (-I + 16 MiB, 2147483645]
                length = rng.choice(no_swallow + [len(val) + 1, max(len(val) - 1, 0),
                                                  2**32 + len(val)])
        toks.append(num(length))
        if cmd == "cas":
            toks.append(toks_cas)
        toks += noreply
        if extra:
            toks.append(b"extra")
        line = spaced(toks)
        return Cmd(join(line, eol(rng), val, b"\r\n" if bad or rng.random() < 0.97 else b"XY"),
                   note="block")
    if r < 0.48:  # retrieval
        cmd = rng.choice(["get", "get", "gets", "gat", "gats"])
        n = rng.choice([1, 1, 1, 2, 3, 30])
        keys = [text_key(rng, allow_long=first and n == 1) for _ in range(n)]  # mask multiget
        keys = [k for k in keys if k] or (["a"] if rng.random() < 0.9 else [])
        toks = [cmd]
        if cmd.startswith("gat"):
            toks.append(num(ch(rng, EXP_OK, EXP_EDGE)))
            # mask long-line: a gat/gats line stays under 2048 bytes (both close on a
            # longer one whose newline comes in a later read; memcached loses the
            # replies to the requests before it)
            while len(keys) > 1 and sum(len(k) + 1 for k in keys) > 1900:
                keys.pop()
        return Cmd(join(spaced(toks + keys), eol(rng)))
    if r < 0.60:
        cmd = rng.choice(["incr", "decr"])
        key = rng.choice(ARITH_KEYS) if rng.random() < 0.95 else text_key(rng)
        return Cmd(join(spaced([cmd, key, num(ch(rng, [0, 1, 2, 10], DELTA, edge=0.3))] + noreply), eol(rng)))
    if r < 0.67:
        toks = ["touch", text_key(rng), num(ch(rng, EXP_OK, EXP_EDGE))]
        return Cmd(join(spaced(toks + noreply), eol(rng)))
    if r < 0.76:
        toks = ["delete", text_key(rng)]
        if rng.random() < 0.1:
            toks.append(rng.choice([b"0", b"5", b"x"]))
        return Cmd(join(spaced(toks + noreply), eol(rng)))
    if r < 0.79:
        toks = ["flush_all"]
        d = rng.choice(FLUSH_DELAYS)
        if d is not None:
            toks.append(num(d))
        return Cmd(join(spaced(toks + noreply), eol(rng)), note="nomut")  # mask flush-delay
    if r < 0.82:
        toks = ["verbosity", num(rng.choice([0, 1, U32, U32 + 1, -1, "abc"]))]
        if rng.random() < 0.1:
            toks = ["verbosity"]
        return Cmd(join(spaced(toks + noreply), eol(rng)))
    if r < 0.835:
        return Cmd(join(b"version", eol(rng)))
    if r < 0.84:
        return Cmd(join(b"quit", eol(rng)))
    if r < 0.86:
        return Cmd(join(rng.choice([b"", b"  ", b"bogus", b"GET a", b"sets a 0 0 1", b"get",
                                    b"incr", b"quit x"]), eol(rng)))
    return gen_meta(rng)


# ------------------------------------------------------------- meta gen --

def meta_key(rng):
    if rng.random() < 0.2:
        return rng.choice(B64_KEYS), True
    if rng.random() < 0.03:
        return rng.choice(["y" * 251, "!!notb64", ""]), rng.random() < 0.5
    return rng.choice(TEXT_KEYS), False


def ttl_tok(rng, c):
    return (c.encode(), num(ch(rng, EXP_OK, EXP_EDGE)))


# R compares with the remaining TTL: never at a TTL the generator sets (the
# servers' clocks tick at different moments)
R_OK = [30, 1000, 5000, 3000000]


def recache_tok(rng, c):
    return (c.encode(), num(ch(rng, R_OK, EXP_EDGE)))


def opaque_tok(rng, long_ok=True):
    # 32 bytes with the O is the most memcached takes
    return (b"O", rng.choice([b"1", b"abc", b"x" * 31, b"x" * 32 if long_ok else b"2", b""]))


def no_cross_key_order(flags):
    """mask cas-order: with I, C compares "less than"; the CAS a server
    returned last may be another key's, and CAS values of different keys are
    ordered in memcached (one counter), not here (a clock per shard): row
    "CAS values of different keys". Such a C becomes C1."""
    if b"I" in flags:
        return [b"C1" if isinstance(f, tuple) and f[0] == b"C" else f for f in flags]
    return flags


def no_k_on_vivify(flags):
    """mask meta-k-b: memcached creates an item vivified by N under b without
    its binary-key mark, and `k` then echoes it raw: no N with b."""
    names = {f[:1] if isinstance(f, bytes) else f[0] for f in flags}
    if b"b" in names and b"N" in names:
        return [f for f in flags if (f[:1] if isinstance(f, bytes) else f[0]) != b"N"]
    return flags


def pick_flags(rng, simple, valued, b64):
    flags = []
    for f in rng.sample(simple, rng.randint(0, len(simple))):
        flags.append((f.encode(), b""))
    for f, gen in rng.sample(valued, rng.randint(0, len(valued))):
        flags.append(gen(rng, f))
    if b64 or rng.random() < 0.02:
        flags.append((b"b", b""))
    if rng.random() < 0.03:
        flags.append(rng.choice([(b"z", b""), (b"!", b""), (b"c", b"")]))  # unknown or duplicate
    rng.shuffle(flags)
    return [t[0] + t[1] if isinstance(t[1], bytes) else (t[0], t[1]) for t in flags]


def meta_line(verb, key, extra, flags):
    if not key:  # the first flag becomes the key: never one whose value differs per server
        flags = [f for f in flags if isinstance(f, bytes)]
    parts = [verb.encode(), b" ", key.encode()]
    for e in extra:
        parts += [b" ", e]
    for f in flags:
        parts.append(b" ")
        if isinstance(f, tuple) and f and f[0] not in ("now", "cas"):
            parts += list(f)
        else:
            parts.append(f)
    return join(parts)


def num_tok(values, ok, edge=0.2):
    def g(rng, c):
        return (c.encode(), num(ch(rng, ok, values, edge=edge)))
    return g


def cas_tok(rng, c):
    if rng.random() < 0.7:
        return (c.encode(), ("cas", rng.choice([0, 0, 1]), "t"))
    return (c.encode(), num(rng.choice(CAS_EDGE)))


def gen_meta(rng):
    r = rng.random()
    key, b64 = meta_key(rng)
    if r < 0.35:
        # mask meta-opaque: no opaque over 32 bytes on mg
        flags = pick_flags(rng, list("cfhklqstuv"),
                           [("O", lambda g, c: opaque_tok(g, long_ok=False)), ("N", ttl_tok),
                            ("R", recache_tok), ("T", ttl_tok)], b64)
        flags = no_k_on_vivify(flags)
        return Cmd(meta_line("mg", key, [], flags) + [b"\r\n"])
    if r < 0.65:  # mask newer-meta: no ms s, no ms N
        flags = pick_flags(rng, list("cIkq"),
                           [("O", lambda g, c: opaque_tok(g)), ("T", ttl_tok), ("C", cas_tok),
                            ("F", num_tok(FLAGS_EDGE, FLAGS_OK)),
                            ("M", lambda g, c: (b"M", g.choice([b"E", b"S", b"A", b"P", b"R", b"s", b"a",
                                                                 b"X", b"SS", b""])))], b64)
        flags = no_cross_key_order(flags)
        val = unblank(key, value_bytes(rng))
        length = None
        if len(key) > 250 or not key or len(flags) > 20:
            val = SILENT  # mask silent-block (a missing key moves the length token)
            length = len(val)
        elif rng.random() < 0.1:
            val = val[:1000]  # mask long-line, reply-after-swallow
            length = rng.choice([-1, "abc", len(val) + 1, 2**31 - 2, 2**32 + len(val), ""])
        if length is None:
            length = len(val)
        return Cmd(meta_line("ms", key, [num(length)], flags) + [b"\r\n", val, b"\r\n"], note="block")
    if r < 0.78:  # mask newer-meta: no md x
        flags = pick_flags(rng, list("Ikq"),
                           [("O", lambda g, c: opaque_tok(g)), ("T", ttl_tok), ("C", cas_tok)], b64)
        flags = no_cross_key_order(flags)
        return Cmd(meta_line("md", key, [], flags) + [b"\r\n"])
    if r < 0.92:  # mask ma-ttl: no T, no E
        if key == BLANK_KEY:  # mask blank-number
            key = "a"
        flags = pick_flags(rng, list("cktqv"),
                           [("O", lambda g, c: opaque_tok(g)), ("N", ttl_tok), ("C", cas_tok),
                            ("J", num_tok(DELTA, [0, 1, 13])), ("D", num_tok(DELTA, [0, 1, 5])),
                            ("M", lambda g, c: (b"M", g.choice([b"I", b"+", b"D", b"-", b"i", b"d",
                                                                 b"x", b"II"])))], b64)
        flags = no_k_on_vivify(flags)
        if any(f[:1] == b"N" or (isinstance(f, tuple) and f[0] == b"N") for f in flags):
            # mask meta-opaque: no opaque over 32 bytes on an ma that may create
            flags = [b"O1" if f == b"O" + b"x" * 32 else f for f in flags]
        return Cmd(meta_line("ma", key, [], flags) + [b"\r\n"])
    if r < 0.96:
        return Cmd(meta_line("me", key, [], [b"b"] if b64 else []) + [b"\r\n"])
    return Cmd([b"mn\r\n"], mn=1)


# ----------------------------------------------------------- binary gen --

def bin_pkt(op, key=b"", extras=b"", value=b"", cas=b"\0" * 8, opaque=0, magic=0x80,
            keylen=None, bodylen=None, dtype=0, vbucket=0):
    kl = len(key) if keylen is None else keylen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    hdr = struct.pack(">BBHBBHII", magic, op, kl, len(extras), dtype, vbucket, bl, opaque)
    cas_part = cas if isinstance(cas, tuple) else bytes(cas)
    return join(hdr, cas_part, extras, key, value)


def bin_exp(rng):
    # (no TTL of 1-2 s anywhere: the servers' clocks tick at different moments)
    return rng.choice([0, 0, 100, 2592000]) if rng.random() > 0.25 else rng.choice(
        [U32, 2**31 - 1, 2**31, 2592001])


def bin_cas(rng):
    r = rng.random()
    if r < 0.7:
        return b"\0" * 8
    if r < 0.9:
        return ("cas", rng.choice([0, 0, 1]), "b")
    return struct.pack(">Q", rng.choice([1, U64, 2**63]))


OPS_GET = [0x00, 0x09, 0x0c, 0x0d]
OPS_SET = [0x01, 0x02, 0x03, 0x11, 0x12, 0x13]
OPS_APP = [0x0e, 0x0f, 0x19, 0x1a]
OPS_DEL = [0x04, 0x14]
OPS_ARITH = [0x05, 0x06, 0x15, 0x16]
OPS_TOUCH = [0x1c, 0x1d, 0x1e, 0x23, 0x24]
OPS_MISC = [0x07, 0x17, 0x08, 0x18, 0x0a, 0x0b, 0x10, 0x20, 0x21]
OPS_UNKNOWN = [0x1f, 0x25, 0x30, 0x3f, 0x40, 0x80, 0xff]


def bin_key(rng):
    r = rng.random()
    if r < 0.03:
        return b"y" * 251
    if r < 0.05:
        return b""
    return rng.choice(TEXT_KEYS).encode()


def gen_bin(rng):
    r = rng.random()
    opaque = rng.choice([0, 1, 0x12345678, 7])
    if r < 0.22:
        op = rng.choice(OPS_GET)
        return Cmd(bin_pkt(op, bin_key(rng), opaque=opaque))
    if r < 0.45:
        op = rng.choice(OPS_SET)
        key = bin_key(rng)
        val = unblank(key, value_bytes(rng))
        extras = struct.pack(">II", rng.choice([0, 1, U32]), bin_exp(rng))
        if rng.random() < 0.05:
            extras = rng.choice([b"", extras[:4], extras + b"\0\0\0\0"])
        return Cmd(bin_pkt(op, key, extras, val, cas=bin_cas(rng), opaque=opaque))
    if r < 0.53:
        op = rng.choice(OPS_APP)
        return Cmd(bin_pkt(op, bin_key(rng), b"", value_bytes(rng), cas=bin_cas(rng), opaque=opaque))
    if r < 0.60:
        op = rng.choice(OPS_DEL)
        return Cmd(bin_pkt(op, bin_key(rng), cas=bin_cas(rng), opaque=opaque))
    if r < 0.72:
        op = rng.choice(OPS_ARITH)
        delta = rng.choice([0, 1, 5, U64, 2**63]) if rng.random() < 0.3 else rng.choice([1, 2, 10])
        init = rng.choice([0, 1, U64, 100])
        extras = struct.pack(">QQI", delta, init, bin_exp(rng))
        if rng.random() < 0.05:
            extras = extras[:8]
        key = rng.choice(ARITH_KEYS).encode() if rng.random() < 0.95 else bin_key(rng)
        return Cmd(bin_pkt(op, key, extras, cas=bin_cas(rng), opaque=opaque))
    if r < 0.80:
        op = rng.choice(OPS_TOUCH)
        extras = struct.pack(">I", bin_exp(rng))
        if rng.random() < 0.05:
            extras = b""
        return Cmd(bin_pkt(op, bin_key(rng), extras, opaque=opaque))  # mask bin-stat-touch-body
    if r < 0.90:
        op = rng.choice(OPS_MISC)
        if op in (0x08, 0x18):
            d = rng.choice([None, 0])  # mask flush-delay
            return Cmd(bin_pkt(op, extras=b"" if d is None else struct.pack(">I", d), opaque=opaque))
        if op == 0x10:
            return Cmd(bin_pkt(op, rng.choice([b"", b"", b"bogus", b"items"]), opaque=opaque))
        if op == 0x21:
            return Cmd(bin_pkt(op, b"PLAIN", value=b"\0u\0p", opaque=opaque))
        return Cmd(bin_pkt(op, opaque=opaque))
    if r < 0.93:
        return Cmd(bin_pkt(rng.choice(OPS_UNKNOWN), opaque=opaque))  # mask bin-unknown
    # malformed headers (mask bin-verbosity: 0x1b never)
    kind = rng.choice(["magic", "keylen", "extlen", "dtype", "short"])
    if kind == "magic":
        # mask bin-bad-magic: only as the first request of a send
        return Cmd(bin_pkt(0x0a, magic=rng.choice([0x81, 0x00, 0x7f, ord("g")]), opaque=opaque),
                   note="magic")
    if kind == "keylen":
        # mask bin-keylen: the key and extras a header announces are always sent
        kl = rng.choice([0, 2, 300])
        return Cmd(bin_pkt(0x00, b"a" * max(kl, 1), keylen=kl, bodylen=1, opaque=opaque))
    if kind == "extlen":
        return Cmd(bin_pkt(rng.choice([0x00, 0x04, 0x0a, 0x0b]), b"a", extras=b"\0" * 4, opaque=opaque))
    if kind == "dtype":
        return Cmd(bin_pkt(0x00, b"a", dtype=rng.choice([1, 0xff]), opaque=opaque))
    # a body shorter than announced: the stream stalls (last command of the connection)
    # mask bin-partial-header: the shortfall swallows the whole sentinel, and the
    # connection ends here, so no partial header follows; mask bin-reply-held: first
    # in its send, so no earlier reply is held back by memcached
    return Cmd(bin_pkt(0x01, b"a", struct.pack(">II", 0, 0), b"xy",
                       bodylen=8 + 1 + 2 + 24 + rng.randint(0, 9), opaque=opaque), note="short")


# ------------------------------------------------------------ sequences --

class Seq:
    """Records (conn, send, proto, Cmd) in order; a send's commands go in one write."""

    def __init__(self, seed, recs, splits):
        self.seed = seed
        self.recs = recs
        self.splits = splits  # (conn, send) -> fraction of the bytes in the first write

    def conns(self):
        out = []
        for conn, send, proto, cmd in self.recs:
            if not out or out[-1][0] != conn:
                out.append((conn, proto, []))
            sends = out[-1][2]
            if not sends or sends[-1][0] != send:
                sends.append((send, []))
            sends[-1][1].append(cmd)
        return out

    def ncmds(self):
        return len(self.recs)


def generate(seed):
    rng = random.Random(seed)
    recs = []
    splits = {}
    for conn in range(rng.choice([1, 1, 2, 3])):
        proto = "b" if rng.random() < 0.35 else "t"
        for send in range(rng.randint(1, 7)):
            n = rng.choice([1, 1, 1, 2, 3, 5]) if rng.random() > 0.04 else rng.randint(15, 40)
            for i in range(n):
                while True:
                    cmd = gen_bin(rng) if proto == "b" else gen_text(rng, first=(i == 0))
                    if cmd.note == "magic":
                        # mask bin-bad-magic: first in a send; mask long-line: never first
                        # on the connection (that makes it a text connection)
                        if i == 0 and send > 0:
                            break
                    elif i == 0 or cmd.note != "short":
                        break
                recs.append((conn, send, proto, cmd))
                if cmd.note == "short":
                    break
            if recs[-1][3].note == "short":
                break
            r = rng.random()
            if r < 0.1:
                splits[(conn, send)] = rng.random()  # two writes, cut there
            elif r < 0.14:
                splits[(conn, send)] = -1.0  # trickled: writes of 1-7 bytes
    return Seq(seed, recs, splits)


def render(parts, cas_seen):
    out = bytearray()
    for p in parts:
        if isinstance(p, bytes):
            out += p
        elif p[0] == "now":
            out += str(int(time.time()) + p[1]).encode()
        elif p[0] == "cas":
            v = cas_seen[-1 - p[1]] if len(cas_seen) > p[1] else 0
            out += str(v).encode() if p[2] == "t" else struct.pack(">Q", v)
        else:
            raise ValueError(p)
    return bytes(out)


def describe(seq):
    lines = [f"seed {seq.seed}:"]
    for conn, proto, sends in seq.conns():
        lines.append(f"  connection {conn} ({'binary' if proto == 'b' else 'text'}):")
        for send, cmds in sends:
            sp = seq.splits.get((conn, send))
            how = "" if sp is None else " (trickled)" if sp < 0 else f" (split at {sp:.2f})"
            lines.append(f"    send {send}{how}:")
            for c in cmds:
                shown = []
                for p in c.parts:
                    if isinstance(p, bytes):
                        r = repr(p if len(p) <= 300 else p[:120] + b"..." + p[-60:])
                        shown.append(r + (f"[{len(p)} bytes]" if len(p) > 300 else ""))
                    else:
                        shown.append(f"<{p[0]} {p[1]}>")
                lines.append("      " + " + ".join(shown))
    return "\n".join(lines)


# ------------------------------------------------------------- running --

def count_text_mn(buf):
    return buf.count(b"\r\nMN\r\n") + (1 if buf.startswith(b"MN\r\n") else 0)


def bin_packets(buf):
    """Complete response packets of `buf` and the offset after them."""
    out = []
    i = 0
    while len(buf) - i >= 24:
        magic, op, kl, el, dt, st, bl, opq, cas = struct.unpack_from(">BBHBBHIIQ", buf, i)
        if magic != 0x81 or len(buf) - i - 24 < bl:
            break
        out.append((op, kl, el, st, opq, cas, buf[i + 24:i + 24 + bl]))
        i += 24 + bl
    return out, i


def count_bin_sentinels(buf):
    pk, _ = bin_packets(buf)
    return sum(1 for p in pk if p[0] == 0x0a and p[4] == SENTINEL_OPAQUE)


RESET = (b"flush_all\r\nverbosity 0\r\n"
         + b"".join(b"mg " + k.encode() + b" q\r\n" for k in TEXT_KEYS)
         + b"".join(b"mg " + k.encode() + b" b q\r\n" for k in B64_KEYS) + b"mn\r\n")
SENTINEL_BIN = bytes(render(bin_pkt(0x0a, opaque=SENTINEL_OPAQUE), []))


def learn_cas(proto, data, cas_seen):
    if proto == "b":
        for p in bin_packets(data)[0]:
            if p[5]:
                cas_seen.append(p[5])
        return
    for m in re.finditer(rb"(?:^|\r\n)VALUE \S+ \d+ \d+ (\d+)\r\n", data):
        cas_seen.append(int(m.group(1)))
    for m in re.finditer(rb"(?:^|\r\n)(?:VA \d+|HD|EN|NS|EX|NF)((?: [^\r\n ]+)*)\r\n", data):
        for t in m.group(1).split():
            if t[:1] == b"c" and t[1:].isdigit():
                cas_seen.append(int(t[1:]))


class Run:
    """One sequence against one server: the reply stream of every connection."""

    def __init__(self, port, seq):
        self.port = port
        self.seq = seq
        self.streams = []  # per connection: bytes, ending with b"<CLOSED>" if the server closed
        self.last_send = []  # per connection: where the replies to its last send begin
        self.cmds_sent = 0
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported as a difference with the other side
            self.error = f"{type(e).__name__}: {e}"

    def _run(self):
        cas_seen = []
        for conn, proto, sends in self.seq.conns():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            closed = False
            expect = 0
            last = 0
            try:
                for send, cmds in sends:
                    data = b"".join(render(c.parts, cas_seen) for c in cmds)
                    sentinel = SENTINEL_BIN if proto == "b" else SENTINEL_TEXT
                    expect += 1 + sum(c.mn for c in cmds)
                    sp = self.seq.splits.get((conn, send))
                    try:
                        if sp == -1.0 and len(data) <= 4096:
                            tr = random.Random(self.seq.seed * 10007 + conn * 101 + send)
                            i = 0
                            while i < len(data):
                                n = tr.randint(1, 7)
                                s.sendall(data[i:i + n])
                                i += n
                                time.sleep(0.0005)
                            s.sendall(sentinel)
                        elif sp is not None and len(data) > 1:
                            sp = 0.5 if sp < 0 else sp
                            cut = max(1, int(len(data) * sp))
                            s.sendall(data[:cut])
                            time.sleep(0.003)
                            s.sendall(data[cut:] + sentinel)
                        else:
                            s.sendall(data + sentinel)
                    except (BrokenPipeError, ConnectionResetError):
                        closed = True
                    self.cmds_sent += len(cmds)
                    start = len(buf)
                    last = start
                    closed = self._read(s, buf, proto, expect) or closed
                    learn_cas(proto, bytes(buf[start:]), cas_seen)
                    if closed:
                        break
                    got = count_bin_sentinels(buf) if proto == "b" else count_text_mn(buf)
                    expect = got  # an idle timeout resynchronises the count
            finally:
                s.close()
            self.streams.append(bytes(buf) + (b"<CLOSED>" if closed else b""))
            self.last_send.append(last)

    def _read(self, s, buf, proto, expect):
        """Read until `expect` sentinels arrived, EOF (True), or IDLE s of silence."""
        deadline = time.monotonic() + READ_CAP
        got_any = False
        while time.monotonic() < deadline:
            if (count_bin_sentinels(buf) if proto == "b" else count_text_mn(buf)) >= expect:
                return False
            # a loaded machine may take a while for the first byte
            s.settimeout(IDLE if got_any else FIRST_WAIT)
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            buf += chunk
            got_any = True
        return False


# ------------------------------------------------------------ normalise --

class Norm:
    """A reply stream made comparable: masked text plus the numbers compared with slack."""

    def __init__(self):
        self.cas_map = {}
        self.text = []
        self.slack = []  # numbers (TTL, seconds since access) compared within TTL_SLACK

    def cas(self, v):
        v = int(v)
        if v == 0:
            return "0"
        return "C" + str(self.cas_map.setdefault(v, len(self.cas_map) + 1))

    def slacked(self, prefix, v):
        self.slack.append(int(v))
        return prefix + "~"


# mask number-padding: a value that is a number, space-padded or not (an
# incr/decr result shorter than the value: memcached pads it in place, or
# stores it unpadded when a reply of an mg of the same read still holds the
# item; corecached always pads: row "incr/decr result shorter than the value")
NUMBER = re.compile(rb"\d+ *")


def norm_text(data, nm):
    i = 0
    out = nm.text
    while i < len(data):
        j = data.find(b"\n", i)
        if j < 0:
            out.append(repr(data[i:]))
            break
        line = data[i:j + 1]
        i = j + 1
        body = line.rstrip(b"\r\n")
        toks = body.split(b" ")
        head = toks[0]
        nblock = None
        if head == b"VALUE" and len(toks) >= 4 and toks[3].isdigit():
            if len(toks) == 5 and toks[4].isdigit():
                toks[4] = nm.cas(toks[4]).encode()
            nblock = int(toks[3])
        elif head == b"VERSION":  # mask version
            toks = [b"VERSION", b"<v>"]
        elif head in (b"VA", b"HD", b"EN", b"NS", b"EX", b"NF"):
            start = 1
            if head == b"VA" and len(toks) > 1 and toks[1].isdigit():
                nblock = int(toks[1])
                start = 2
            for k in range(start, len(toks)):
                t = toks[k]
                if t[:1] == b"c" and t[1:].isdigit():
                    toks[k] = nm.cas(t[1:]).encode()
                elif t[:1] in (b"t", b"l") and re.fullmatch(rb"-?\d+", t[1:]) and t[1:] != b"-1":
                    toks[k] = nm.slacked(t[:1].decode(), t[1:]).encode()
        elif head == b"ME":
            for k in range(2, len(toks)):
                name, _, v = toks[k].partition(b"=")
                if name == b"cas":
                    toks[k] = b"cas=" + nm.cas(v).encode()
                elif name == b"la" and v.isdigit():
                    toks[k] = nm.slacked("la=", v).encode()
                elif name == b"exp" and v != b"-1":  # mask me
                    toks[k] = b"exp=*"
        block = None
        if nblock is not None and len(data) - i >= nblock + 2:
            block = data[i:i + nblock + 2]
            i += nblock + 2
            if NUMBER.fullmatch(block[:-2]):  # mask number-padding
                block = block[:-2].rstrip(b" ") + b"\r\n"
                toks[1 if head == b"VA" else 3] = b"#"
        out.append(repr(b" ".join(toks) + line[len(body):]))
        if block is not None:
            out.append(f"<{nblock} bytes {hash(block) & 0xffffffff:08x}>"
                       if nblock > 200 else repr(block))


def norm_bin(data, nm):
    pk, end = bin_packets(data)
    out = nm.text
    for op, kl, el, st, opq, cas, body in pk:
        if op == 0x10 and st == 0 and kl > 0:  # mask stats: only the terminator is compared
            continue
        if op == 0x0b and st == 0:  # mask version
            body = b"<v>"
        if st == 0 and NUMBER.fullmatch(body[el + kl:]):  # mask number-padding
            body = body[:el + kl] + body[el + kl:].rstrip(b" ")
        out.append(f"op={op:#04x} st={st:#06x} opq={opq:#x} cas={nm.cas(cas)} kl={kl} el={el} "
                   f"body={body[:200]!r}{'...%d' % len(body) if len(body) > 200 else ''}")
    if end < len(data):
        out.append(repr(data[end:end + 200]))


def normalise(run):
    nm = Norm()
    if run.error:
        nm.text.append("<fuzzer error: " + run.error + ">")
    for (conn, proto, _), stream in zip(run.seq.conns(), run.streams):
        nm.text.append(f"== connection {conn}")
        closed = stream.endswith(b"<CLOSED>")
        data = stream[:-8] if closed else stream
        (norm_bin if proto == "b" else norm_text)(data, nm)
        if closed:
            nm.text.append("<CLOSED>")
    return nm


def slack_equal(x, y):
    if abs(x - y) <= TTL_SLACK:
        return True
    # mask ttl-past: a TTL already past prints as a 32-bit wrapped number in
    # memcached (t4294967229), negative here (row "Meta t of an item whose TTL
    # is already past")
    return (x >= 2**31 or x < 0) and (y >= 2**31 or y < 0)


def same(a, b):
    return a.text == b.text and len(a.slack) == len(b.slack) and all(
        slack_equal(x, y) for x, y in zip(a.slack, b.slack))


# ------------------------------------------------------------- driving --

class Pair:
    def __init__(self, args):
        self.args = args
        self.ref = self.test = None

    def start(self):
        self.stop()
        a = self.args
        both = SERVER_FLAGS + ["-I", str(a.item_max)] + a.server_args.split()
        self.ref = servers.Server(a.ref, both + a.ref_args.split()).start()
        self.test = servers.Server(a.test, both + a.test_args.split()).start()
        # mask ttl-past: a TTL already past prints as "1 - the server's clock";
        # a server up for less than 3 s could print t-1, which means "no TTL"
        time.sleep(3)

    def stop(self):
        for s in (self.ref, self.test):
            if s is not None:
                s.stop(grace=1.0)
        self.ref = self.test = None

    def flush(self):
        """flush_all, then read every key the generator uses: memcached keeps
        flushed items until a read finds them, and a later flush_all with a
        delay would make them visible again."""
        for srv in (self.ref, self.test):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(RESET)
                got = b""
                while not got.endswith(b"MN\r\n"):
                    c = s.recv(4096)
                    if not c:
                        raise RuntimeError(f"{srv.kind} closed on flush")
                    got += c

    def run(self, seq):
        """(ref run, test run); restarts the pair if a server died."""
        self.flush()
        runs = [Run(self.ref.port, seq), Run(self.test.port, seq)]
        ts = [threading.Thread(target=r.run) for r in runs]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dead = [s for s in (self.ref, self.test) if not s.alive()]
        for s in dead:
            runs[0 if s is self.ref else 1].error = f"server died: {s.output()[-2000:]}"
        if dead:
            self.start()
        return runs


def lost_replies(r, t):
    """mask lost-replies: where memcached closed a connection without a byte
    for the last send, corecached's replies to that send (before the same
    close) are not compared: memcached loses the replies queued before a
    close (rows "... after other requests of the same read")."""
    for k, (a, b) in enumerate(zip(r.streams, t.streams)):
        if (a.endswith(b"<CLOSED>") and b.endswith(b"<CLOSED>") and k < len(r.last_send)
                and len(a) - 8 == r.last_send[k] and len(b) - 8 > t.last_send[k]):
            t.streams[k] = b[:t.last_send[k]] + b"<CLOSED>"


def differs(pair, seq):
    r, t = pair.run(seq)
    lost_replies(r, t)
    nr, nt = normalise(r), normalise(t)
    return (not same(nr, nt)), (r, t, nr, nt)


def shrink(pair, seq, rounds=3):
    """Drop one command at a time while the difference remains."""
    cur = seq
    changed = True
    while changed and rounds > 0:
        changed = False
        rounds -= 1
        i = len(cur.recs) - 1
        while i >= 0 and len(cur.recs) > 1:
            cand = Seq(cur.seed, cur.recs[:i] + cur.recs[i + 1:], cur.splits)
            if differs(pair, cand)[0]:
                cur = cand
                changed = True
            i -= 1
    return cur


def first_diff(nr, nt):
    """Index of the first differing normalised line, or None."""
    n = max(len(nr.text), len(nt.text))
    return next((k for k in range(n) if k >= len(nr.text) or k >= len(nt.text)
                 or nr.text[k] != nt.text[k]), None)


def brief_diff(sd, nr, nt):
    """One line per server for the run's closing summary (a CI log shows its end)."""
    k = first_diff(nr, nt)
    if k is None:
        return f"  seed {sd}: slack numbers {nr.slack} vs {nt.slack}"
    pick = lambda nm: nm.text[k][:120] if k < len(nm.text) else "<no more replies>"  # noqa: E731
    return f"  seed {sd}, line {k}: {pick(nr)!r} vs {pick(nt)!r}"


def show_diff(nr, nt, names):
    lines = []
    first = first_diff(nr, nt)
    lines.append(f"  first differing line: {first}" if first is not None else
                 f"  masked text equal; slack numbers: {nr.slack} vs {nt.slack}")
    for nm, name in ((nr, names[0]), (nt, names[1])):
        lines.append(f"  {name}:")
        for k, line in enumerate(nm.text):
            mark = ">>" if k == first else "  "
            lines.append(f"   {mark} {line[:400]}")
    return "\n".join(lines)


def parse_seeds(s):
    if ":" in s:
        a, b = s.split(":")
        return range(int(a), int(b))
    return [int(x) for x in s.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Differential fuzzer: corecached vs memcached 1.6.18.")
    ap.add_argument("--seeds", help="A:B (range) or a,b,c; default: from --start on until --duration")
    ap.add_argument("--seed", type=int, help="one seed")
    ap.add_argument("--start", type=int, default=None, help="first seed of a timed run (default random)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds, when no --seeds (default 60)")
    ap.add_argument("--show", action="store_true", help="print the sequence(s), send nothing")
    ap.add_argument("--ref", default="memcached", choices=servers.KINDS)
    ap.add_argument("--ref-args", default="")
    ap.add_argument("--test", default="corecached", choices=servers.KINDS)
    ap.add_argument("--test-args", default="")
    ap.add_argument("--item-max", type=int, default=MIB,
                    help="-I for both servers, in bytes (default 1 MiB); values are made around it")
    ap.add_argument("--server-args", default="", help="more flags for both servers")
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--max-diffs", type=int, default=20, help="stop after this many differences")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--masks", action="store_true", help="print what is masked and why")
    a = ap.parse_args(argv)
    if a.masks:
        print(MASKS.strip("\n"))
        return 0
    ITEM_MAX[0] = a.item_max

    if a.seed is not None:
        seeds = [a.seed]
    elif a.seeds:
        seeds = parse_seeds(a.seeds)
    else:
        start = a.start if a.start is not None else random.SystemRandom().randrange(10**9)
        seeds = iter(range(start, start + 10**12))
    if a.show:
        for sd in seeds if not isinstance(seeds, type(iter(()))) else []:
            print(describe(generate(sd)))
        return 0

    # a timeout or ^C stops the servers too (servers.py stops them at exit)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    names = (f"{a.ref} {a.ref_args}".strip(), f"{a.test} {a.test_args}".strip())
    pair = Pair(a)
    pair.start()
    t0 = time.monotonic()
    nseq = ncmd = 0
    diffs = []
    briefs = []  # one line per difference, repeated at the end
    last_note = t0
    first_seed = None
    try:
        for sd in seeds:
            if a.seeds is None and a.seed is None and time.monotonic() - t0 > a.duration:
                break
            if first_seed is None:
                first_seed = sd
            try:
                seq = generate(sd)
                bad, (r, t, nr, nt) = differs(pair, seq)
                nseq += 1
                ncmd += t.cmds_sent
                if bad:
                    # confirm once (timing noise is not a difference)
                    bad, (r, t, nr, nt) = differs(pair, seq)
                fresh = None
                if bad:
                    # and once more on freshly started servers, to say whether
                    # it needs what the run so far left in them (pages per
                    # size class, background work, the loops' clock phases);
                    # it counts either way: a difference that repeats on the
                    # same servers is no timing noise (the per-loop clock bug
                    # showed only on servers up for minutes)
                    first = (r, t, nr, nt)
                    pair.start()
                    fresh = differs(pair, seq)[0]
                    r, t, nr, nt = first
            except Exception:  # a fuzzer bug: say so, count it, go on with fresh servers
                print(f"\n!! FUZZER ERROR at seed {sd}:\n{traceback.format_exc()}", flush=True)
                diffs.append(sd)
                briefs.append(f"  seed {sd}: fuzzer error {traceback.format_exc().splitlines()[-1][:200]}")
                pair.start()
                continue
            if bad:
                small = seq if a.no_shrink else shrink(pair, seq)
                bad2, (r2, t2, nr2, nt2) = differs(pair, small)
                if bad2:
                    small, nr, nt = small, nr2, nt2
                else:
                    small = seq
                print(f"\n!! DIFFERENCE at seed {sd}: {names[0]} vs {names[1]} "
                      f"({'also' if fresh else 'not'} on freshly started servers)", flush=True)
                print(describe(small))
                print(show_diff(nr, nt, names), flush=True)
                diffs.append(sd)
                briefs.append(brief_diff(sd, nr, nt) + ("" if fresh else " (not on fresh servers)"))
                if len(diffs) >= a.max_diffs:
                    break
            if not a.quiet and time.monotonic() - last_note > 30:
                last_note = time.monotonic()
                print(f".. {nseq} sequences, {ncmd} commands, {len(diffs)} differences, "
                      f"{last_note - t0:.0f} s (seed {sd})", flush=True)
    finally:
        pair.stop()
    el = time.monotonic() - t0
    if briefs:
        print(f"differences ({names[0]} vs {names[1]}, first differing normalised line):")
        print("\n".join(briefs[-8:]))
    print(f"difffuzz: {nseq} sequences (seeds from {first_seed}), {ncmd} commands sent to each "
          f"server, {len(diffs)} differences, {el:.1f} s"
          + (f"; differing seeds: {diffs}" if diffs else ""), flush=True)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
