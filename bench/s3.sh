#!/bin/bash
# bench/s3.sh - the S3 API beside moto_server and beside cairnd's native API.
#
#   sh bench/s3.sh            (make bench runs it after bench/run.sh)
#
# Small objects: 4 KiB GET and PUT operations per second, 64 keep-alive
# connections (wrk, 2 threads), requests signed with SigV4 header auth by
# botocore and replayed (bench/s3_requests.py, bench/replay.lua), against
#   - cairnd's S3 API (every request's signature verified),
#   - moto_server (the S3 emulator on this machine), same requests,
#   - cairnd's native API (PUT|GET /cas/<sha256>), same bodies.
# Large objects: a 1 GiB file through aws-cli (multipart upload, ranged
# parallel download), MB/s.
# Everything on 127.0.0.1, ports chosen at run time, stopped on exit.
# Raw numbers: bench/out/s3-raw-<stamp>.tsv; table: bench/out/s3-summary-<stamp>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
mkdir -p "$OUT"
RUNS=${RUNS:-3}
SECS=${WRK_SECONDS:-5}
N=${SMALL_BODIES:-1000}
SIZE=4096
BIG_MIB=${BIG_MIB:-1024}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$OUT/s3-raw-$STAMP.tsv
SUMMARY=$OUT/s3-summary-$STAMP.txt
WORK=$(mktemp -d /tmp/cairn-s3bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_cairnd() { # data dir -> sets CAIRN_PORT
    "$ROOT/bin/cairnd" --listen 127.0.0.1:0 --data "$1" --access-key bench --secret-key bench-secret \
        --max-size 50G >"$WORK/cairnd.out" 2>"$WORK/cairnd.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        CAIRN_PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/cairnd.out")
        [ -n "$CAIRN_PORT" ] && return 0
        sleep 0.05
    done
    echo "s3.sh: cairnd did not start" >&2; cat "$WORK/cairnd.log" >&2; exit 1
}

wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; return 1; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# wrk's requests/s for a request table; non-2xx responses fail the run
wrk_rps() { # url requests.lua
    local out
    out=$(wrk -t2 -c64 -d"${SECS}s" -s "$ROOT/bench/replay.lua" "$1" -- "$2")
    if echo "$out" | grep -q "Non-2xx"; then
        echo "s3.sh: errors from $1:" >&2; echo "$out" >&2; exit 1
    fi
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

start_cairnd "$WORK/data"
CAIRN=http://127.0.0.1:$CAIRN_PORT
MOTO_PORT=$(free_port)
moto_server -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO=http://127.0.0.1:$MOTO_PORT
wait_http "$MOTO/" || { echo "s3.sh: moto_server did not start" >&2; exit 1; }

AWS=aws
[ -x /usr/bin/aws ] && AWS=/usr/bin/aws
for u in "$CAIRN" "$MOTO"; do
    $AWS --endpoint-url "$u" s3 mb s3://bench >/dev/null
done

for kind in PUT GET; do
    python3 bench/s3_requests.py "$CAIRN" bench "$N" "$SIZE" $kind "$WORK/cairn-$kind.lua"
    python3 bench/s3_requests.py "$MOTO" bench "$N" "$SIZE" $kind "$WORK/moto-$kind.lua"
    python3 bench/s3_requests.py "$CAIRN" bench "$N" "$SIZE" $kind "$WORK/native-$kind.lua" native
done

: >"$RAW"
for kind in PUT GET; do
    for run in $(seq "$RUNS"); do
        for who in cairn moto native; do
            case $who in moto) url=$MOTO ;; *) url=$CAIRN ;; esac
            rps=$(wrk_rps "$url" "$WORK/$who-$kind.lua")
            printf '%s\t%s\t%s\t%s\n' "$kind" "$who" "$run" "$rps" >>"$RAW"
        done
    done
done

# large objects with aws-cli: upload (multipart) and download (ranged, parallel)
python3 - "$WORK/big" "$BIG_MIB" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
line = b"line %09d of a build artifact: objects, symbols, sources\n"
text = b"".join(line % i for i in range(20000))[: 1 << 20]
with open(path, "wb") as f:
    for i in range(mib):  # a cache archive's usual mix: text-like and incompressible
        f.write(text if i % 2 else os.urandom(1 << 20))
PY
BIG=$(stat -c %s "$WORK/big")
for run in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    $AWS --endpoint-url "$CAIRN" s3 cp --only-show-errors "$WORK/big" "s3://bench/big-$run"
    t1=$(date +%s.%N)
    $AWS --endpoint-url "$CAIRN" s3 cp --only-show-errors "s3://bench/big-$run" "$WORK/back"
    t2=$(date +%s.%N)
    cmp -s "$WORK/big" "$WORK/back" || { echo "s3.sh: 1 GiB download differs" >&2; exit 1; }
    rm -f "$WORK/back"
    awk -v b="$BIG" -v a="$t0" -v c="$t1" 'BEGIN {printf "BIGUP\tcairn\t'"$run"'\t%.1f\n", b / (c - a) / 1e6}' >>"$RAW"
    awk -v b="$BIG" -v a="$t1" -v c="$t2" 'BEGIN {printf "BIGDOWN\tcairn\t'"$run"'\t%.1f\n", b / (c - a) / 1e6}' >>"$RAW"
done

med() { awk -F'\t' -v k="$1" -v w="$2" '$1 == k && $2 == w {print $4}' "$RAW" | median; }
{
    echo "cairn S3 bench $STAMP, commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
    echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "clients: wrk 2 threads, 64 connections, ${SECS}s, $N keys of $SIZE bytes, SigV4 header auth (botocore); $AWS ($($AWS --version 2>&1 | cut -d' ' -f1)); medians of $RUNS runs"
    echo "command: sh bench/s3.sh"
    echo
    printf '%-34s %10s %10s %10s %12s %12s\n' "measurement" "cairn S3" "moto" "native" "S3/moto" "S3/native"
    for kind in PUT GET; do
        c=$(med $kind cairn); m=$(med $kind moto); n=$(med $kind native)
        printf '%-34s %10.0f %10.0f %10.0f %11.1fx %11.2fx\n' "$kind 4 KiB, requests/s" "$c" "$m" "$n" \
            "$(echo "$c / $m" | bc -l)" "$(echo "$c / $n" | bc -l)"
    done
    printf '%-34s %10.1f\n' "aws s3 cp up, $BIG_MIB MiB (MB/s)" "$(med BIGUP cairn)"
    printf '%-34s %10.1f\n' "aws s3 cp down, $BIG_MIB MiB (MB/s)" "$(med BIGDOWN cairn)"
    echo "targets: S3 >= 20x moto and >= 0.8x native"
} | tee "$SUMMARY"
cp "$SUMMARY" "$OUT/s3-summary.txt"
