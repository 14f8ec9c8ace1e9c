# scripts/test-steps.sh -- how scripts/test runs and reports its sections
# (sourced; tests/py/test_test_steps.py runs it with stand-in sections).
#
#   run_step NAME LIMIT CMD...   run CMD under a time limit; its output goes
#                                to the log and to a file kept for the summary
#   summary                      PASS lines (each with what the section
#                                reported), the last lines of every failed
#                                section, FAIL lines; exit 1 if one failed

FAILED=()
PASSED=()
FAILED_LOGS=()
STEP_LOGS=$(mktemp -d /tmp/corecached-test.XXXXXX)
trap 'rm -rf "$STEP_LOGS"' EXIT

section() {
    printf '\n==================== %s ====================\n' "$*"
}

step_result() { # log file -> one line: cargo's test totals, else the last line
    if grep -q '^test result: ' "$1"; then
        awk '/^test result: /{n++; p+=$4; f+=$6}
             END{printf "%d tests passed, %d failed, in %d test binaries\n", p, f, n}' "$1"
    else
        local last
        last=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1 | cut -c1-160)
        echo "${last:-no output}"
    fi
}

run_step() { # name, timeout-seconds, command...
    local name=$1 limit=$2
    shift 2
    section "$name"
    echo "+ $*"
    local start=$SECONDS
    # the step's output goes to the log as it comes, and to a file whose
    # tail the summary repeats for a failed step (CI shows only the log's end)
    local out="$STEP_LOGS/${#PASSED[@]}-${#FAILED[@]}.log"
    timeout --kill-after=10 "$limit" "$@" </dev/null 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    if [ $rc -eq 0 ]; then
        PASSED+=("$name ($((SECONDS - start))s): $(step_result "$out")")
    else
        [ $rc -eq 124 ] && echo "!! $name timed out after ${limit}s" | tee -a "$out"
        FAILED+=("$name (exit $rc)")
        FAILED_LOGS+=("$out")
    fi
    return $rc
}

summary() {
    section "summary"
    local p f i
    for p in "${PASSED[@]}"; do echo "PASS  $p"; done
    # CI shows only the log's end: what a failed section printed last
    for i in "${!FAILED[@]}"; do
        echo "---- the last lines of: ${FAILED[$i]}"
        tail -n 15 "${FAILED_LOGS[$i]}" | cut -c1-300
    done
    for f in "${FAILED[@]}"; do echo "FAIL  $f"; done
    if [ ${#FAILED[@]} -ne 0 ]; then
        echo "scripts/test: ${#FAILED[@]} section(s) failed"
        exit 1
    fi
    echo "scripts/test: all sections passed"
}
