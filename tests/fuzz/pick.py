#!/usr/bin/env python3
"""Pick a small corpus that keeps most of a larger one's coverage.

    tests/fuzz/pick.py BINARY IN_DIR OUT_DIR MAX_FILES

IN_DIR is a corpus already minimized by `cargo afl cmin` (each file adds an
edge no smaller file has). Each file's edges are read with `cargo afl
showmap`; files are then taken greedily, the one adding the most edges not
yet covered first (the smaller on a tie), until MAX_FILES or nothing new.
Prints the edges kept against the edges of all of IN_DIR.
"""
import os
import shutil
import subprocess
import sys
import tempfile


def edges_of(binary, in_dir):
    maps = tempfile.mkdtemp(prefix="showmap-")
    try:
        subprocess.run(["cargo", "afl", "showmap", "-q", "-t", "5000", "-i", in_dir,
                        "-o", maps, "--", binary],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        out = {}
        for name in os.listdir(in_dir):
            path = os.path.join(maps, name)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                out[name] = {line.split(":")[0] for line in f if line.strip()}
        return out
    finally:
        shutil.rmtree(maps, ignore_errors=True)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    binary, in_dir, out_dir, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    edges = edges_of(binary, in_dir)
    if not edges:
        sys.exit("pick.py: no maps (is %s an afl binary?)" % binary)
    size = {n: os.path.getsize(os.path.join(in_dir, n)) for n in edges}
    every = set().union(*edges.values())
    covered, picked = set(), []
    while len(picked) < cap:
        best = max(edges, key=lambda n: (len(edges[n] - covered), -size[n]))
        gain = len(edges[best] - covered)
        if gain == 0:
            break
        picked.append(best)
        covered |= edges.pop(best)
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, old))
    for i, name in enumerate(picked):
        shutil.copyfile(os.path.join(in_dir, name), os.path.join(out_dir, "c%03d" % i))
    print("%s: %d files, %d of %d edges (%.1f%%), %d bytes" % (
        out_dir, len(picked), len(covered), len(every),
        100.0 * len(covered) / len(every), sum(size[n] for n in picked)))


if __name__ == "__main__":
    main()
