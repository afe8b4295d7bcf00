#!/bin/sh
# Runs every test and ends with one line: "N passed, N failed[, N skipped]".
#   unit tests: build/test/unit/* (cmocka, sanitizers on)
#   integration tests: tests/integration (real cairnd, real clients)
# Called by `make test` after the test binaries are built.
cd "$(dirname "$0")/.." || exit 2
export CAIRN_TESTDATA="${CAIRN_TESTDATA:-../shared/testdata}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
log=build/test/log
mkdir -p "$log"
pass=0 fail=0 skip=0

count() { # file: adds a "N passed, N failed, N skipped" summary line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
    pass=$((pass + ${p:-0})) fail=$((fail + ${f:-0})) skip=$((skip + ${s:-0}))
}

for t in build/test/unit/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    "$t" > "$log/$name.out" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log/$name.out" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log/$name.out" | tail -1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log/$name.out" | tail -1)
    if [ -z "$p$f" ] || { [ "$rc" != 0 ] && [ -z "$f" ]; }; then
        f=1 # crashed before cmocka could count
    fi
    echo "unit $name: ${p:-0} passed, ${f:-0} failed, ${s:-0} skipped"
    [ "${f:-0}" != 0 ] && sed 's/^/    /' "$log/$name.out" | grep -v '^    \[ *\(RUN\|OK\) *\]' | head -60
    pass=$((pass + ${p:-0})) fail=$((fail + ${f:-0})) skip=$((skip + ${s:-0}))
done

if [ -f tests/unit/sigv4_botocore_check.py ] && [ -x build/test/unit/sigv4_cli ]; then
    python3 tests/unit/sigv4_botocore_check.py build/test/unit/sigv4_cli > "$log/sigv4_botocore.out" 2>&1
    case $? in
    0) pass=$((pass + 1)); echo "sigv4 cross-check with botocore: passed" ;;
    77) skip=$((skip + 1)); echo "sigv4 cross-check with botocore: skipped (no botocore)" ;;
    *) fail=$((fail + 1)); echo "sigv4 cross-check with botocore: FAILED"; tail -20 "$log/sigv4_botocore.out" ;;
    esac
fi

python3 tests/integration/run.py > "$log/integration.out" 2>&1
grep -E ' \.\.\. |^(FAIL|ERROR):|^Traceback|Error|^  File' "$log/integration.out" | head -400
count "$log/integration.out"
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$log/integration.out"; then
    tail -30 "$log/integration.out"
    fail=$((fail + 1))
fi

line="$pass passed, $fail failed"
[ "$skip" != 0 ] && line="$line, $skip skipped"
echo "$line"
[ "$fail" = 0 ]
