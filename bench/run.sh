#!/bin/sh
# bench/run.sh - cairnd beside nginx on loopback; prints a table and ratios.
#
#   sh bench/run.sh                 every measurement (make bench runs this)
#   sh bench/run.sh get4k rss       only the ones named:
#       get4k    GET of 4 KiB bodies, 64 keep-alive connections (wrk), req/s
#       get256   GET of a 256 MiB body (bench/cbench get), MB/s; identity, zstd, random
#       put256   PUT of a 256 MiB body (curl), MB/s
#       rss      peak RSS of cairnd during a 2 GiB upload and download
#       startup  time from exec to the first 200 from /readyz, 1M entries
#
# Knobs (environment): RUNS (repetitions, default 5), BIG_RUNS (repetitions of
# the short 256 MiB transfers, default 2 x RUNS), WRK_SECONDS (default 5),
# WRK_THREADS (default 2), WRK_CONNECTIONS (default 64), SMALL_BODIES
# (default 1000), STARTUP_ENTRIES (default 1000000), RSS_BYTES (default 2 GiB),
# BENCH_TMP (where data folders go, default $TMPDIR or /tmp).
#
# Everything runs on 127.0.0.1 on ports chosen free at run time, in temporary
# folders, and whatever this script started is stopped on exit.  Raw numbers
# go to bench/out/raw-<stamp>.tsv, the table to bench/out/summary-<stamp>.txt
# (and bench/out/summary.txt).  MB means 10^6 bytes, MiB 2^20.

if [ -z "${BASH_VERSION:-}" ]; then
    exec bash "$0" "$@"
fi
set -Eeuo pipefail
trap 'echo "run.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
mkdir -p "$OUT"

RUNS=${RUNS:-5}
BIG_RUNS=${BIG_RUNS:-$((RUNS * 2))}
WRK_SECONDS=${WRK_SECONDS:-5}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
SMALL_BODIES=${SMALL_BODIES:-1000}
STARTUP_ENTRIES=${STARTUP_ENTRIES:-1000000}
RSS_BYTES=${RSS_BYTES:-2147483648}
BIG=268435456 # 256 MiB
NCPU=$(nproc)

ALL="get4k get256 put256 rss startup"
TESTS=${*:-$ALL}
for t in $TESTS; do
    case " $ALL " in *" $t "*) ;; *) echo "run.sh: unknown measurement '$t' (known: $ALL)" >&2; exit 2 ;; esac
done

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (make bench-deps)" >&2; exit 1; }
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$OUT/raw-$STAMP.tsv
SUMMARY=$OUT/summary-$STAMP.txt
WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/cairn-bench.XXXXXX")
SHM=""
PIDS=()
T_START=$(date +%s)

cleanup() {
    local rc=$?
    set +e
    trap - ERR
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if [ -n "$SHM" ] && [ -d "$SHM" ]; then
        find "$SHM" -mindepth 1 -maxdepth 1 -print0 | xargs -0 -r -P2 -n16 rm -rf
        rm -rf "$SHM"
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
anomaly() {
    printf '%s\n' "$*" >>"$WORK/anomalies"
    log "!! $*"
}
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---- build ----------------------------------------------------------------

BUILD_NOTE=""
if ! make -s all >"$WORK/build.log" 2>&1; then
    [ -x bin/cairnd ] || { cat "$WORK/build.log" >&2; log "run.sh: make failed and there is no bin/cairnd"; exit 1; }
    BUILD_NOTE="make failed (see below); measured the existing bin/cairnd of $(date -r bin/cairnd '+%F %T')"
    log "!! $BUILD_NOTE"
    tail -5 "$WORK/build.log" >&2
fi
CBENCH=$OUT/cbench
if [ ! -x "$CBENCH" ] || [ bench/cbench.c -nt "$CBENCH" ] || [ storage/index.c -nt "$CBENCH" ] ||
    [ storage/index.h -nt "$CBENCH" ] || [ common/util.c -nt "$CBENCH" ]; then
    cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$CBENCH" bench/cbench.c storage/index.c \
        common/util.c -llmdb -lcrypto -pthread
fi
# a private copy: a rebuild of bin/cairnd during the run does not change what is measured
cp "$ROOT/bin/cairnd" "$WORK/cairnd"
CAIRND=$WORK/cairnd

# ---- records --------------------------------------------------------------

printf 'test\tserver\tvariant\trun\tvalue\tunit\tnote\n' >"$RAW"
record() { # test server variant run value unit [note]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$RAW"
}
median_of() { # test server variant -> median of the numeric values recorded
    awk -F'\t' -v t="$1" -v s="$2" -v v="$3" \
        '$1==t && $2==s && $3==v && $5 ~ /^[0-9.]+$/ {print $5}' "$RAW" | sort -g |
        awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2];
             else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'
}
ROWS=$WORK/rows
: >"$ROWS"
# row LABEL CAIRN NGINX UNIT KIND TARGET: KIND is ratio (cairn/nginx >= TARGET),
# min (cairn >= TARGET), max (cairn < TARGET) or info (no target).
row() {
    printf '%s|%s|%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >>"$ROWS"
}
fmt() { # a number with few digits
    [ -z "$1" ] && { echo "-"; return; }
    awk -v x="$1" 'BEGIN {if (x >= 1000) printf "%.0f", x; else if (x >= 100) printf "%.1f", x;
                          else printf "%.2f", x}'
}

# ---- servers --------------------------------------------------------------

CAIRN_PID="" CAIRN_PORT=""
start_cairnd() { # NAME DATA [extra flags...]: sets CAIRN_PID, CAIRN_PORT
    local name=$1 data=$2
    shift 2
    mkdir -p "$data"
    "$CAIRND" --listen 127.0.0.1:0 --data "$data" "$@" >"$WORK/$name.stdout" 2>>"$WORK/$name.log" &
    CAIRN_PID=$!
    PIDS+=("$CAIRN_PID")
    local i=0
    CAIRN_PORT=""
    while [ $i -lt 1000 ]; do
        CAIRN_PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' \
            "$WORK/$name.stdout" 2>/dev/null | head -1)
        [ -n "$CAIRN_PORT" ] && break
        kill -0 "$CAIRN_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; log "cairnd $name died"; exit 1; }
        sleep 0.01
        i=$((i + 1))
    done
    [ -n "$CAIRN_PORT" ] || { log "cairnd $name did not start"; exit 1; }
}
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

NGINX_PID="" NGINX_PORT="" WWW=$WORK/www
start_nginx() {
    local prefix=$WORK/nginx
    mkdir -p "$prefix/tmp" "$WWW"
    NGINX_PORT=$("$CBENCH" freeport)
    local user=""
    [ "$(id -u)" = 0 ] && user="user root root;"
    cat >"$prefix/nginx.conf" <<EOF
# generated by bench/run.sh
$user
worker_processes $NCPU;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $WWW/.nginx-body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
        location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 0;
            dav_access user:rw group:r all:r;
        }
    }
}
EOF
    nginx -c "$prefix/nginx.conf" -p "$prefix" -g 'daemon off;' 2>>"$prefix/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    local i=0
    while ! curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/"; do
        kill -0 "$NGINX_PID" 2>/dev/null || { cat "$prefix/error.log" >&2; log "nginx died"; exit 1; }
        i=$((i + 1))
        [ $i -lt 500 ] || { log "nginx did not start"; exit 1; }
        sleep 0.01
    done
}

cairn_alive() { # NAME: notes a crash
    if ! kill -0 "$CAIRN_PID" 2>/dev/null; then
        anomaly "cairnd ($1) is no longer running; last log lines: $(tail -3 "$WORK/$1.log" | tr '\n' ' ')"
        return 1
    fi
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# CPU time (ns) of a server: cairnd, or nginx's master and workers.
# Unlike throughput, CPU per request hardly depends on what else the machine runs.
server_pids() { # cairnd|nginx PID
    if [ "$1" = nginx ]; then
        echo "$2" $(pgrep -P "$2" || true)
    else
        echo "$2"
    fi
}
# utime + stime of /proc/PID/stat count threads that have exited too (cairnd
# starts short-lived codec threads), at clock-tick resolution.
CLK_TCK=$(getconf CLK_TCK)
cpu_ns() { # PID...
    local p
    for p in "$@"; do cat /proc/"$p"/stat 2>/dev/null || true; done |
        awk -v hz="$CLK_TCK" '{sub(/.*\) /, ""); t += $12 + $13} END {printf "%.0f\n", t * 1e9 / hz}'
}

# ---- GET of 4 KiB bodies ----------------------------------------------------

# wrk_run OUTFILE URL PATHS [extra wrk args]:
# prints "req/s p50_ms p99_ms non2xx socket_errors requests"
wrk_run() {
    local out=$1 url=$2 paths=$3
    shift 3
    wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" --latency "$@" \
        -s "$ROOT/bench/paths.lua" "$url" -- "$paths" >"$out" 2>&1 || true
    awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0;
                         if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $5 }
        /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
        / requests in / { n = $1 }
        END { printf "%s %s %s %d %d %d\n", rps == "" ? "0" : rps, p50, p99, bad, err, n }' "$out"
}

bench_get4k() {
    log "== get4k: GET of 4 KiB bodies, $WRK_CONNECTIONS connections, ${WRK_SECONDS}s x $RUNS runs"
    start_cairnd get4k "$WORK/get4k-data"
    local cp=$CAIRN_PORT cpid=$CAIRN_PID
    [ -n "$NGINX_PID" ] || start_nginx
    local sets="text random"
    for kind in $sets; do
        local seed=11
        [ "$kind" = random ] && seed=12
        : >"$WORK/paths-$kind"
        "$CBENCH" smallset "127.0.0.1:$cp" "$WWW" "$SMALL_BODIES" 4096 "$kind" $seed \
            "$WORK/paths-$kind" || anomaly "get4k: some PUTs of the $kind set failed"
        # the same bytes come back from both servers
        for p in $(sed -n '1p;$p' "$WORK/paths-$kind"); do
            curl -sS -o "$WORK/check" "http://127.0.0.1:$cp$p" &&
                cmp -s "$WORK/check" "$WWW$p" || anomaly "get4k: cairnd GET $p differs from the body"
            curl -sS -o "$WORK/check" "http://127.0.0.1:$NGINX_PORT$p" &&
                cmp -s "$WORK/check" "$WWW$p" || anomaly "get4k: nginx GET $p differs from the body"
        done
    done
    local st
    st=$(curl -s "http://127.0.0.1:$cp/status")
    log "cairnd status after the 4 KiB PUTs: $st"
    # variants: server kind [wrk args]
    local variants=("cairnd text" "nginx text" "cairnd random" "nginx random" "cairnd-zstd text")
    for v in "${variants[@]}"; do # warm-up, not recorded
        set -- $v
        local port=$cp
        [ "$1" = nginx ] && port=$NGINX_PORT
        local extra=()
        [ "$1" = cairnd-zstd ] && extra=(-H "Accept-Encoding: zstd")
        WRK_SECONDS=2 wrk_run "$WORK/wrk-warm" "http://127.0.0.1:$port" "$WORK/paths-$2" \
            ${extra[@]+"${extra[@]}"} >/dev/null
    done
    local r n=${#variants[@]}
    for r in $(seq 1 "$RUNS"); do
        local k
        for k in $(seq 0 $((n - 1))); do # rotate the order from run to run
            set -- ${variants[$(((k + r) % n))]}
            local srv=$1 kind=$2 port=$cp extra=()
            [ "$srv" = nginx ] && port=$NGINX_PORT
            [ "$srv" = cairnd-zstd ] && extra=(-H "Accept-Encoding: zstd")
            local res pids c0 c1 us
            pids=$(server_pids "${srv%-zstd}" "$([ "$srv" = nginx ] && echo "$NGINX_PID" || echo "$cpid")")
            c0=$(cpu_ns $pids)
            res=$(wrk_run "$WORK/wrk-$srv-$kind-$r.txt" "http://127.0.0.1:$port" \
                "$WORK/paths-$kind" ${extra[@]+"${extra[@]}"})
            c1=$(cpu_ns $pids)
            set -- $res
            us=$(awk -v a="$c0" -v b="$c1" -v n="$6" 'BEGIN {if (n > 0) printf "%.1f", (b - a) / n / 1000}')
            record get4k "$srv" "$kind" "$r" "$1" req/s "p50=${2}ms p99=${3}ms non2xx=$4 sockerr=$5 requests=$6"
            record get4k-p99 "$srv" "$kind" "$r" "$3" ms
            record get4k-cpu "$srv" "$kind" "$r" "$us" us/request
            log "   run $r $srv $kind: $1 req/s, p50 ${2} ms, p99 ${3} ms, non-2xx $4, socket errors $5," \
                "server CPU $us us/request"
            if [ "$4" != 0 ] || [ "$5" != 0 ]; then
                cp "$WORK/wrk-$srv-$kind-$r.txt" "$OUT/wrk-$STAMP-$srv-$kind-$r.txt"
                anomaly "get4k: $srv $kind run $r: $4 non-2xx responses, $5 socket errors (wrk output: bench/out/wrk-$STAMP-$srv-$kind-$r.txt)"
            fi
        done
        cairn_alive get4k || break
    done
    local kind c ng
    for kind in text random; do
        c=$(median_of get4k cairnd $kind)
        ng=$(median_of get4k nginx $kind)
        row "GET 4 KiB $kind, ${WRK_CONNECTIONS} conns (req/s)" "$c" "$ng" req/s ratio 0.8
        row "  p99 latency (ms)" "$(median_of get4k-p99 cairnd $kind)" \
            "$(median_of get4k-p99 nginx $kind)" ms info ""
        row "  server CPU per request (us)" "$(median_of get4k-cpu cairnd $kind)" \
            "$(median_of get4k-cpu nginx $kind)" us info ""
    done
    row "GET 4 KiB text, Accept-Encoding: zstd (req/s)" "$(median_of get4k cairnd-zstd text)" \
        "$(median_of get4k nginx text)" req/s info ""
    row "  server CPU per request (us)" "$(median_of get4k-cpu cairnd-zstd text)" \
        "$(median_of get4k-cpu nginx text)" us info ""
    stop_pid "$cpid"
}

# ---- 256 MiB bodies ----------------------------------------------------------

TAR=$WORK/tar.bin TAR_SHA="" RND=$WORK/random.bin RND_SHA=""
make_big_bodies() {
    [ -n "$TAR_SHA" ] && return
    log "   making the 256 MiB bodies (tar of /usr/lib, random)"
    { tar cf - /usr/lib 2>/dev/null || true; } | head -c $BIG >"$TAR"
    if [ "$(stat -c %s "$TAR")" != $BIG ]; then # a small /usr/lib: pad with more text
        "$CBENCH" gen text $((BIG - $(stat -c %s "$TAR"))) 5 >>"$TAR"
    fi
    "$CBENCH" gen random $BIG 21 >"$RND"
    TAR_SHA=$("$CBENCH" shafile "$TAR" | cut -d' ' -f1)
    RND_SHA=$("$CBENCH" shafile "$RND" | cut -d' ' -f1)
}

# timed_get PORT PATH [HEADER]: prints "status bytes seconds"; the C client
# reads into a 1 MiB buffer, so it costs the machine less than curl does
timed_get() {
    "$CBENCH" get "127.0.0.1:$1" "$2" ${3+"$3"} || true
}
curl_put() { # FILE URL: prints "code seconds"
    curl -sS -o "$WORK/put-answer" -H 'Expect:' -w '%{http_code} %{time_total}\n' -T "$1" "$2" ||
        echo "000 0"
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {if (s > 0) printf "%.1f\n", b / s / 1e6; else print "fail"}'; }

bench_get256() {
    log "== get256: GET of a 256 MiB body (one connection, body read and dropped), $BIG_RUNS runs"
    make_big_bodies
    start_cairnd get256 "$WORK/get256-data"
    local cp=$CAIRN_PORT cpid=$CAIRN_PID
    [ -n "$NGINX_PID" ] || start_nginx
    mkdir -p "$WWW/big"
    cp "$TAR" "$WWW/big/tar.bin"
    cp "$RND" "$WWW/big/random.bin"
    local res
    res=$(curl_put "$TAR" "http://127.0.0.1:$cp/cas/$TAR_SHA")
    [ "${res%% *}" = 200 ] || anomaly "get256: PUT of the tar answered ${res%% *}: $(cat "$WORK/put-answer")"
    res=$(curl_put "$RND" "http://127.0.0.1:$cp/cas/$RND_SHA")
    [ "${res%% *}" = 200 ] || anomaly "get256: PUT of the random body answered ${res%% *}"
    local st
    st=$(curl -s "http://127.0.0.1:$cp/status")
    log "   cairnd status: $st"
    # correctness once: identity, zstd and the random body come back intact
    local got
    got=$(curl -sS "http://127.0.0.1:$cp/cas/$TAR_SHA" | "$CBENCH" shafile - | cut -d' ' -f1)
    [ "$got" = "$TAR_SHA" ] || anomaly "get256: identity GET of the tar does not hash to its name"
    if command -v zstd >/dev/null; then
        got=$(curl -sS -H 'Accept-Encoding: zstd' "http://127.0.0.1:$cp/cas/$TAR_SHA" | zstd -dcq |
            "$CBENCH" shafile - | cut -d' ' -f1)
        [ "$got" = "$TAR_SHA" ] || anomaly "get256: zstd GET of the tar does not decode to the body"
    fi
    got=$(curl -sS "http://127.0.0.1:$cp/cas/$RND_SHA" | "$CBENCH" shafile - | cut -d' ' -f1)
    [ "$got" = "$RND_SHA" ] || anomaly "get256: GET of the random body does not hash to its name"

    local variants=("cairnd tar" "cairnd-zstd tar" "nginx tar" "cairnd random" "nginx random")
    local r k n=${#variants[@]}
    for r in $(seq 0 "$BIG_RUNS"); do # run 0 is a warm-up
        for k in $(seq 0 $((n - 1))); do
            set -- ${variants[$(((k + r) % n))]}
            local srv=$1 kind=$2 pids c0 c1
            pids=$(server_pids "${srv%-zstd}" "$([ "$srv" = nginx ] && echo "$NGINX_PID" || echo "$cpid")")
            c0=$(cpu_ns $pids)
            case "$srv $kind" in
            "cairnd tar") res=$(timed_get "$cp" "/cas/$TAR_SHA") ;;
            "cairnd-zstd tar") res=$(timed_get "$cp" "/cas/$TAR_SHA" "Accept-Encoding: zstd") ;;
            "nginx tar") res=$(timed_get "$NGINX_PORT" /big/tar.bin) ;;
            "cairnd random") res=$(timed_get "$cp" "/cas/$RND_SHA") ;;
            "nginx random") res=$(timed_get "$NGINX_PORT" /big/random.bin) ;;
            esac
            c1=$(cpu_ns $pids)
            set -- ${res:-000 0 0}
            local v
            v=$(mbps $BIG "$3")
            if [ "$1" != 200 ] || { [ "$srv" != cairnd-zstd ] && [ "$2" != $BIG ]; }; then
                anomaly "get256: $srv $kind run $r: status $1, $2 bytes"
                v=fail
            fi
            [ "$r" = 0 ] && continue
            local ms
            ms=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.0f", (b - a) / 1e6}')
            record get256 "$srv" "$kind" "$r" "$v" MB/s "wire_bytes=$2 seconds=$3"
            record get256-wire "$srv" "$kind" "$r" "$2" bytes
            record get256-cpu "$srv" "$kind" "$r" "$ms" ms
            log "   run $r $srv $kind: $v MB/s of body ($2 bytes on the wire in $3 s), server CPU $ms ms"
        done
        cairn_alive get256 || break
    done
    local c ng w
    c=$(median_of get256 cairnd tar)
    ng=$(median_of get256 nginx tar)
    row "GET 256 MiB tar, identity (MB/s)" "$c" "$ng" MB/s ratio 0.9
    row "  server CPU per GET (ms)" "$(median_of get256-cpu cairnd tar)" \
        "$(median_of get256-cpu nginx tar)" ms info ""
    w=$(median_of get256-wire cairnd-zstd tar)
    row "GET 256 MiB tar, Accept-Encoding: zstd (MB/s)" "$(median_of get256 cairnd-zstd tar)" "$ng" \
        MB/s info ""
    row "  bytes on the wire with zstd (MiB of 256)" \
        "$(awk -v w="$w" 'BEGIN {printf "%.1f", w / 1048576}')" "256" MiB info ""
    row "GET 256 MiB random (MB/s)" "$(median_of get256 cairnd random)" \
        "$(median_of get256 nginx random)" MB/s ratio 0.9
    row "  server CPU per GET (ms)" "$(median_of get256-cpu cairnd random)" \
        "$(median_of get256-cpu nginx random)" ms info ""
    stop_pid "$cpid"
}

# ---- PUT of 256 MiB -----------------------------------------------------------

bench_put256() {
    log "== put256: PUT of a 256 MiB body, curl -T, $BIG_RUNS runs (cairnd with its default fsync on)"
    make_big_bodies
    start_cairnd put256 "$WORK/put256-data"
    local cp=$CAIRN_PORT cpid=$CAIRN_PID
    start_cairnd put256-nofsync "$WORK/put256-nofsync-data" --fsync=false
    local np=$CAIRN_PORT npid=$CAIRN_PID
    [ -n "$NGINX_PID" ] || start_nginx
    mkdir -p "$WWW/put"
    local variants=("cairnd tar" "nginx tar" "cairnd-nofsync tar" "cairnd random" "nginx random")
    local r k n=${#variants[@]} res
    for r in $(seq 0 "$BIG_RUNS"); do # run 0 is a warm-up
        for k in $(seq 0 $((n - 1))); do
            set -- ${variants[$(((k + r) % n))]}
            local srv=$1 kind=$2 file=$TAR sha=$TAR_SHA url want=200
            [ "$kind" = random ] && file=$RND sha=$RND_SHA
            case "$srv" in
            cairnd) url="http://127.0.0.1:$cp/cas/$sha" ;;
            cairnd-nofsync) url="http://127.0.0.1:$np/cas/$sha" ;;
            nginx) url="http://127.0.0.1:$NGINX_PORT/put/$kind.bin" want=201 ;;
            esac
            # each PUT creates its entry: remove what the previous run stored
            if [ "$srv" = nginx ]; then
                rm -f "$WWW/put/$kind.bin"
            else
                curl -s -o /dev/null -X DELETE "$url" || true
            fi
            local pids c0 c1 ms
            case "$srv" in
            cairnd) pids=$cpid ;;
            cairnd-nofsync) pids=$npid ;;
            nginx) pids=$(server_pids nginx "$NGINX_PID") ;;
            esac
            c0=$(cpu_ns $pids)
            res=$(curl_put "$file" "$url")
            c1=$(cpu_ns $pids)
            ms=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.0f", (b - a) / 1e6}')
            set -- $res
            local v
            v=$(mbps $BIG "$2")
            if [ "$1" != "$want" ]; then
                anomaly "put256: $srv $kind run $r: status $1: $(head -c 200 "$WORK/put-answer")"
                v=fail
            fi
            [ "$r" = 0 ] && continue
            record put256 "$srv" "$kind" "$r" "$v" MB/s "seconds=$2"
            record put256-cpu "$srv" "$kind" "$r" "$ms" ms
            log "   run $r $srv $kind: $v MB/s ($2 s), server CPU $ms ms"
        done
        kill -0 "$cpid" 2>/dev/null && kill -0 "$npid" 2>/dev/null ||
            { anomaly "put256: a cairnd died"; break; }
    done
    local c ng
    c=$(median_of put256 cairnd tar)
    ng=$(median_of put256 nginx tar)
    row "PUT 256 MiB tar, fsync on (MB/s)" "$c" "$ng" MB/s min 250
    row "  server CPU per PUT (ms)" "$(median_of put256-cpu cairnd tar)" \
        "$(median_of put256-cpu nginx tar)" ms info ""
    row "PUT 256 MiB tar, --fsync=false (MB/s)" "$(median_of put256 cairnd-nofsync tar)" "$ng" \
        MB/s info ""
    row "PUT 256 MiB random, fsync on (MB/s)" "$(median_of put256 cairnd random)" \
        "$(median_of put256 nginx random)" MB/s info ""
    stop_pid "$npid"
    stop_pid "$cpid"
}

# ---- peak RSS during a 2 GiB upload and download ------------------------------

bench_rss() {
    local mib=$((RSS_BYTES / 1048576))
    log "== rss: cairnd's VmHWM during a $mib MiB streamed upload (chunked) and download"
    start_cairnd rss "$WORK/rss-data"
    local cp=$CAIRN_PORT cpid=$CAIRN_PID
    sleep 0.2
    local base
    base=$(hwm_kib "$cpid")
    local sha
    sha=$("$CBENCH" sha mixed "$RSS_BYTES" 31)
    local t0 t1 res
    t0=$(date +%s.%N)
    res=$("$CBENCH" gen mixed "$RSS_BYTES" 31 |
        curl -sS -o "$WORK/rss-put-answer" -w '%{http_code}\n' -H 'Expect:' -T - \
            "http://127.0.0.1:$cp/cas/$sha" || echo 000)
    t1=$(date +%s.%N)
    [ "$res" = 200 ] || anomaly "rss: the $mib MiB PUT answered $res: $(head -c 200 "$WORK/rss-put-answer")"
    cairn_alive rss || return 0
    local up
    up=$(hwm_kib "$cpid")
    local up_mbps
    up_mbps=$(awk -v b="$RSS_BYTES" -v a="$t0" -v c="$t1" 'BEGIN {printf "%.1f", b / (c - a) / 1e6}')
    # reset the high-water mark so the download is measured on its own
    local reset=yes
    echo 5 >"/proc/$cpid/clear_refs" 2>/dev/null || reset=no
    t0=$(date +%s.%N)
    local got
    got=$(curl -sS "http://127.0.0.1:$cp/cas/$sha" | "$CBENCH" shafile -)
    t1=$(date +%s.%N)
    [ "${got%% *}" = "$sha" ] || anomaly "rss: the $mib MiB GET came back as '$got', not $sha"
    cairn_alive rss || return 0
    local down
    down=$(hwm_kib "$cpid")
    local down_mbps
    down_mbps=$(awk -v b="$RSS_BYTES" -v a="$t0" -v c="$t1" 'BEGIN {printf "%.1f", b / (c - a) / 1e6}')
    local st
    st=$(curl -s "http://127.0.0.1:$cp/status")
    log "   cairnd status: $st"
    log "   VmHWM: $base KiB at start, $up KiB after the upload ($up_mbps MB/s)," \
        "$down KiB during the download ($down_mbps MB/s; high-water mark reset: $reset)"
    record rss cairnd start 1 "$base" KiB
    record rss cairnd upload 1 "$up" KiB "mb_per_s=$up_mbps"
    record rss cairnd download 1 "$down" KiB "mb_per_s=$down_mbps reset=$reset"
    row "Peak RSS, $mib MiB upload (MiB)" "$(awk -v k="$up" 'BEGIN {printf "%.1f", k / 1024}')" "" \
        MiB max 64
    row "Peak RSS, $mib MiB download (MiB)" "$(awk -v k="$down" 'BEGIN {printf "%.1f", k / 1024}')" \
        "" MiB max 64
    row "  (idle: $(awk -v k="$base" 'BEGIN {printf "%.1f", k / 1024}') MiB; up $up_mbps MB/s, down $down_mbps MB/s)" \
        "" "" "" info ""
    stop_pid "$cpid"
}

# ---- startup with many entries ------------------------------------------------

bench_startup() {
    local n=$STARTUP_ENTRIES
    log "== startup: $n index entries, exec to first 200 from /readyz, $RUNS warm and $RUNS cold starts"
    local data=$WORK/startup-data
    mkdir -p "$data"
    # A million tiny blob files cost minutes to create and delete on a disk
    # mounted with discard; on tmpfs seconds.  The index stays on disk (so
    # the cold runs read it from there); blobs/ points into /dev/shm.
    local need_kib=$((n * 6 + 1048576))
    if [ -d /dev/shm ] && [ -w /dev/shm ] &&
        [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt "$need_kib" ]; then
        SHM=$(mktemp -d /dev/shm/cairn-bench.XXXXXX)
        ln -s "$SHM" "$data/blobs"
        log "   blob files in $SHM (tmpfs), index on $(df -P "$data" | awk 'NR==2 {print $1}')"
    fi
    local t0 t1
    t0=$(date +%s.%N)
    "$CBENCH" populate "$data" "$n"
    t1=$(date +%s.%N)
    log "   populated in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s;" \
        "index $(du -m "$data/index.mdb" | cut -f1) MiB"
    # the entries read back through the server
    start_cairnd startup-check "$data"
    local cp=$CAIRN_PORT cpid=$CAIRN_PID i ok=0 tried=0
    for i in 0 1 $((n / 2)) $((n - 2)) $((n - 1)); do
        [ "$i" -ge 0 ] || continue
        local body hexd
        body=$(printf 'cairn bench entry %07d' "$i")
        hexd=$(printf '%s\n' "$body" | "$CBENCH" shafile - | cut -d' ' -f1)
        tried=$((tried + 1))
        if [ "$(curl -s "http://127.0.0.1:$cp/cas/$hexd")" = "$body" ]; then
            ok=$((ok + 1))
        else
            anomaly "startup: populated entry $i (/cas/$hexd) does not read back"
        fi
    done
    local keys
    keys=$(curl -s "http://127.0.0.1:$cp/status" | sed -n 's/.*"keys":\([0-9]*\).*/\1/p')
    log "   $ok of $tried sampled entries read back; /status says $keys keys"
    [ "$keys" = "$n" ] || anomaly "startup: /status counts $keys keys, populated $n"
    stop_pid "$cpid"
    local mode
    for mode in warm cold; do
        local arg=()
        [ "$mode" = cold ] && arg=(cold)
        "$CBENCH" startup "$CAIRND" "$data" "$WORK/startup.log" "$RUNS" ${arg[@]+"${arg[@]}"} \
            >"$WORK/startup-$mode.txt"
        local run listen ready stop how
        while read -r run listen ready stop how; do
            record startup cairnd "$mode" "$run" "$ready" ms "listening_line=${listen}ms stop=${stop}ms $how"
            record startup-stop cairnd "$mode" "$run" "$stop" ms
            log "   $mode start $run: listening after $listen ms, ready after $ready ms," \
                "SIGTERM to exit $stop ms ($how)"
        done <"$WORK/startup-$mode.txt"
    done
    local how
    how=$(awk 'NR==1 {print $5}' "$WORK/startup-cold.txt")
    row "Startup, $n entries, warm (ms to /readyz)" "$(median_of startup cairnd warm)" "" ms max 1000
    row "Startup, $n entries, cold: $how (ms)" "$(median_of startup cairnd cold)" "" ms max 1000
    if [ -n "$SHM" ]; then
        find "$SHM" -mindepth 1 -maxdepth 1 -print0 | xargs -0 -r -P2 -n16 rm -rf
        rm -rf "$SHM"
        SHM=""
    fi
    rm -rf "$data"
}

# ---- main ---------------------------------------------------------------------

CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+changes" || true)
HEADER="cairn bench $STAMP, commit $COMMIT$DIRTY
machine: $NCPU cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)
peers: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2 || true), $(curl --version | head -1 | cut -d' ' -f1-2)
load average at start: $(cut -d' ' -f1-3 /proc/loadavg); medians of $RUNS runs ($BIG_RUNS for 256 MiB transfers); wrk $WRK_THREADS threads, $WRK_CONNECTIONS connections, ${WRK_SECONDS}s"
log "$HEADER"
: >"$WORK/anomalies"
[ -z "$BUILD_NOTE" ] || anomaly "$BUILD_NOTE: $(grep -m1 -i error "$WORK/build.log")"

for t in $TESTS; do
    "bench_$t"
done

T_END=$(date +%s)
{
    echo "$HEADER"
    echo "command: sh bench/run.sh${*:+ $*}   (took $((T_END - T_START)) s; raw numbers: bench/out/$(basename "$RAW"))"
    echo
    printf '%-48s %10s %10s %7s  %-10s %s\n' "measurement (median of runs)" cairnd nginx ratio target verdict
    while IFS='|' read -r label c ng unit kind target; do
        ratio="" verdict="" tgt=""
        if [ -n "$c" ] && [ -n "$ng" ]; then
            ratio=$(awk -v a="$c" -v b="$ng" 'BEGIN {if (b > 0) printf "%.2fx", a / b}')
        fi
        case "$kind" in
        ratio)
            tgt=">= ${target}x"
            verdict=$(awk -v a="$c" -v b="$ng" -v t="$target" \
                'BEGIN {if (a == "" || b == "" || b == 0) print "n/a"; else print (a / b >= t ? "ok" : "MISSED")}') ;;
        min)
            tgt=">= $target"
            verdict=$(awk -v a="$c" -v t="$target" 'BEGIN {if (a == "") print "n/a"; else print (a >= t ? "ok" : "MISSED")}') ;;
        max)
            tgt="< $target"
            verdict=$(awk -v a="$c" -v t="$target" 'BEGIN {if (a == "") print "n/a"; else print (a < t ? "ok" : "MISSED")}') ;;
        esac
        printf '%-48s %10s %10s %7s  %-10s %s\n' "$label" "$(fmt "$c")" "$(fmt "$ng")" "$ratio" "$tgt" "$verdict"
    done <"$ROWS"
    if [ -s "$WORK/anomalies" ]; then
        echo
        echo "anomalies:"
        sed 's/^/  /' "$WORK/anomalies"
    fi
} >"$SUMMARY"
cp "$SUMMARY" "$OUT/summary.txt"
cp "$RAW" "$OUT/raw.tsv"
echo
cat "$SUMMARY"
