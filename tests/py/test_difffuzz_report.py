"""scripts/difffuzz.py can fail, and says at its end what differed (a CI log
shows only its end): the reference started with -C (CAS off) against the
same server with CAS must be reported, seed 0, with its first differing line."""

import os
import subprocess
import sys

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "difffuzz.py")
KIND = os.environ.get("CORECACHED_TEST_SERVER", "corecached")


def fuzz(*args):
    r = subprocess.run([sys.executable, FUZZ, "--seed", "0", "--no-shrink", "--quiet",
                        "--ref", KIND, "--test", KIND, *args],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout.splitlines()


def test_a_planted_difference_fails_and_is_named_in_the_closing_lines():
    rc, lines = fuzz("--ref-args=-C")
    assert rc == 1, lines[-20:]
    head = next(ln for ln in lines if ln.startswith("!! DIFFERENCE at seed 0:"))
    assert head.endswith("(also on freshly started servers)"), head
    end = lines[-3:]
    assert end[0] == f"differences ({KIND} -C vs {KIND}, first differing normalised line):", end
    assert end[1].startswith("  seed 0, line ") and " vs " in end[1], end
    assert end[2].startswith("difffuzz: 1 sequences") and end[2].endswith("differing seeds: [0]"), end


def test_the_same_server_on_both_sides_differs_nowhere():
    rc, lines = fuzz()
    assert rc == 0, lines[-20:]
    assert lines[-1].startswith("difffuzz: 1 sequences") and ", 0 differences," in lines[-1], lines
