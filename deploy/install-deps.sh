#!/bin/sh
# Installs the Debian packages cairn needs, and only those missing.
#   install-deps.sh build [test] [bench]
# Run as root (make run / make test do); otherwise prints the command to run.
set -e

build="gcc make pkg-config libc6-dev libmicrohttpd-dev libssl-dev libzstd-dev liblmdb-dev \
libcurl4-openssl-dev libexpat1-dev"
test="libcmocka-dev curl python3 zstd procps util-linux ccache gcc"
bench="nginx wrk curl python3 procps"

want=""
for set in "$@"; do
    case "$set" in
    build) want="$want $build" ;;
    test) want="$want $test" ;;
    bench) want="$want $bench" ;;
    *) echo "install-deps.sh: unknown set '$set'" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "cairn needs these Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing </dev/null >/dev/null
