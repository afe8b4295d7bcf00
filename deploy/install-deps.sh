#!/bin/sh
# Installs the Debian packages cairn needs, and only those missing.
#   install-deps.sh build [test] [bench]
# Run as root (make run / make test do); otherwise prints the command to run.
set -e

build="gcc make pkg-config libc6-dev libmicrohttpd-dev libssl-dev libzstd-dev liblmdb-dev \
libcurl4-openssl-dev libexpat1-dev"
# test: the real clients the integration tests drive (ccache, aws-cli v2,
# boto3, minio-go for a Go program, curl), Prometheus (promtool, a real
# server scraping cairnd), nginx (a fleet's balancer, as the README sets it
# up), openssl (a test tier's certificate) and the JS SDK's runtime
test="libcmocka-dev curl python3 zstd procps util-linux ccache gcc lmdb-utils \
awscli python3-boto3 golang-go golang-github-minio-minio-go-v7-dev prometheus nginx \
openssl"
bench="nginx wrk curl python3 procps bc awscli openssl"

want=""
for set in "$@"; do
    case "$set" in
    build) want="$want $build" ;;
    test) want="$want $test" ;;
    bench) want="$want $bench" ;;
    *) echo "install-deps.sh: unknown set '$set'" >&2; exit 2 ;;
    esac
done

case " $* " in
*" test "*) command -v node >/dev/null 2>&1 || want="$want nodejs npm" ;;
esac

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
js_deps() {
    # from the npm registry: the JS SDK v3 (tests/integration/test_s3_js.py) and
    # s3rver, an S3 server that checks signatures (tests/integration/test_tier.py)
    dir="$(dirname "$0")/../tests/integration/js-deps"
    [ -d "$dir/node_modules/@aws-sdk/client-s3" ] && [ -d "$dir/node_modules/s3rver" ] && return 0
    command -v npm >/dev/null 2>&1 || return 0
    echo "installing @aws-sdk/client-s3 and s3rver into tests/integration/js-deps"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error @aws-sdk/client-s3 s3rver \
        </dev/null >/dev/null 2>&1 || echo "install-deps.sh: npm install failed; the JS SDK and s3rver tests will be skipped" >&2
}

if [ -z "$missing" ]; then
    case " $* " in *" test "*) js_deps ;; esac
    exit 0
fi

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
case " $* " in *" test "*) js_deps ;; esac
