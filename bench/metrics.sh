#!/bin/bash
# bench/metrics.sh - what metrics and logging cost on the hot path: 4 KiB
# GETs through the native API, cairnd with metrics on and every request in
# the access log (to a file) against cairnd with metrics and the access log
# off.  Target: at most 3 % fewer requests/s.
#
# cairnd runs on CPU 0 and wrk (1 thread, 32 connections) on CPU 1, so the
# server's own cost is what limits its throughput.  This machine is shared
# and its speed drifts by +-15 % over seconds, so the two servers take turns
# in short runs (SECS, 1 s by default), in the order on-off, off-on, ..., and
# the result is the median over RUNS pairs of each pair's ratio: a pair runs
# within two seconds, so drift cancels within it.
#   ACCESS_LOG=sampled bash bench/metrics.sh   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-31}
SECS=${WRK_SECONDS:-1}
WORK=$(mktemp -d /tmp/cairn-metricsbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name flags... -> port in $PORT
    local name=$1
    shift
    taskset -c 0 "$ROOT/bin/cairnd" --listen 127.0.0.1:0 --data "$WORK/data-$name" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/$name.out")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "metrics.sh: cairnd did not start" >&2
    exit 1
}

# CALIBRATE=1: the "on" server is configured like the other (an A/A run: the
# difference it shows is the method's own bias and noise)
if [ -n "${CALIBRATE:-}" ]; then
    start on --metrics false --access-log off --audit-log false
else
    start on --metrics true --access-log ${ACCESS_LOG:-all}
fi
ON=$PORT
ON_PID=${PIDS[0]}
start off --metrics false --access-log off --audit-log false
OFF=$PORT
OFF_PID=${PIDS[1]}
python3 - "$WORK/paths" "$ON" "$OFF" <<'PY'
import hashlib, http.client, sys
out, ports = sys.argv[1], sys.argv[2:]
paths = []
for i in range(1000):
    body = (b"key %08d lorem ipsum dolor sit amet consectetur\n" % i * 80)[:4096]
    d = hashlib.sha256(body).hexdigest()
    for p in ports:
        c = http.client.HTTPConnection("127.0.0.1", int(p))
        c.request("PUT", "/cas/" + d, body)
        assert c.getresponse().status == 200
        c.close()
    paths.append("/cas/" + d)
open(out, "w").write("\n".join(paths) + "\n")
PY
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# one wrk run against one server: prints "requests/s server-CPU-us-per-request"
rps() { # port pid
    local t0 t1 out
    t0=$(ticks "$2")
    out=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" -s "$ROOT/bench/paths.lua" \
        "http://127.0.0.1:$1" -- "$WORK/paths")
    t1=$(ticks "$2")
    echo "$out" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$SECS" \
        '/Requests\/sec/ {printf "%s %.2f\n", $2, t / hz * 1e6 / ($2 * s)}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$WORK/on"
: >"$WORK/off"
for r in $(seq "$RUNS"); do
    if [ $((r % 2)) = 1 ]; then
        rps "$ON" "$ON_PID" >>"$WORK/on"
        rps "$OFF" "$OFF_PID" >>"$WORK/off"
    else
        rps "$OFF" "$OFF_PID" >>"$WORK/off"
        rps "$ON" "$ON_PID" >>"$WORK/on"
    fi
done
on=$(cut -d' ' -f1 "$WORK/on" | median)
off=$(cut -d' ' -f1 "$WORK/off" | median)
ratio=$(paste -d' ' "$WORK/on" "$WORK/off" | awk '{printf "%.4f\n", $1 / $3}' | median)
con=$(cut -d' ' -f2 "$WORK/on" | median)
coff=$(cut -d' ' -f2 "$WORK/off" | median)
lines=$(grep -c '"event":"access"' "$WORK/on.log" || true)
echo "cairn metrics bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
echo "command: bash bench/metrics.sh (RUNS=$RUNS, ${SECS}s each, medians; 4 KiB GETs, native API;"
echo "         cairnd on CPU 0, wrk on CPU 1, the two servers in turns)"
label="metrics on, access log ${ACCESS_LOG:-all}"
[ -n "${CALIBRATE:-}" ] && label="A/A: the first server configured as the other"
printf '%-48s %10s\n' "$label (req/s)" "$on"
printf '%-48s %10s\n' "metrics off, access log off (req/s)" "$off"
printf '%-48s %9.1f%%   (target >= -3%%)\n' "difference (median of the pairs' ratios)" "$(echo "($ratio - 1) * 100" | bc -l)"
printf '%-48s %10s\n' "  server CPU per request (us)" "$con"
printf '%-48s %10s\n' "  server CPU per request, all off (us)" "$coff"
printf '%-48s %9.1f%%\n' "  CPU difference" "$(echo "($con / $coff - 1) * 100" | bc -l)"
printf '%-48s %10s\n' "access log lines written" "$lines"
echo "runs on (req/s us):  $(tr '\n' ',' <"$WORK/on")"
echo "runs off (req/s us): $(tr '\n' ',' <"$WORK/off")"
