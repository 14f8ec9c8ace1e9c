"""scripts/test-steps.sh: how scripts/test runs its sections and what its
summary shows (CI shows only the end of the log, so a failed section's last
lines must be there)."""

import os
import subprocess

STEPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "test-steps.sh")


def run_sections(body):
    r = subprocess.run(["bash", "-c", f'source "{STEPS}"\n{body}\nsummary'],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout


def summary_of(out):
    return out[out.index("==================== summary"):].splitlines()[1:]


def test_all_passed_each_line_says_what_the_section_reported():
    rc, out = run_sections(
        'run_step "one" 10 sh -c "echo first; echo all fine; echo"\n'
        'run_step "cargo" 10 printf "test result: ok. 3 passed; 0 failed;\\n'
        'test result: ok. 0 passed; 0 failed;\\ntest result: ok. 4 passed; 1 failed;\\n"\n'
        'run_step "quiet" 10 true')
    assert rc == 0
    s = summary_of(out)
    assert s[0].startswith("PASS  one (") and s[0].endswith("): all fine"), s
    assert s[1].endswith("): 7 tests passed, 1 failed, in 3 test binaries"), s
    assert s[2].endswith("): no output"), s
    assert s[3] == "scripts/test: all sections passed"


def test_a_failed_section_shows_its_last_lines_at_the_end():
    rc, out = run_sections(
        'run_step "ok" 10 true\n'
        'run_step "bad" 10 sh -c "seq 1 40; echo the reason; exit 3"\n'
        'run_step "slow" 1 sleep 5')
    assert rc == 1
    s = summary_of(out)
    assert s[0].startswith("PASS  ok (")
    bad = s.index("---- the last lines of: bad (exit 3)")
    assert s[bad + 1:bad + 16] == [str(i) for i in range(27, 41)] + ["the reason"]
    slow = s.index("---- the last lines of: slow (exit 124)")
    assert s[slow + 1] == "!! slow timed out after 1s"
    assert s[-3:] == ["FAIL  bad (exit 3)", "FAIL  slow (exit 124)",
                      "scripts/test: 2 section(s) failed"]
    # the section's output is in the log as it came, too
    assert "the reason" in out[:out.index("==================== summary")]
