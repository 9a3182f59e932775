#!/usr/bin/env bash
# Browser side of replaypipe: Debian's Chromium (for the end-to-end test), the npm
# packages of web/ (from the lock file) and the recorder/viewer bundles.
# Idempotent and fast when already done: each step runs only when its inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WEB=$ROOT/web
DIST=$ROOT/services/sink/static/dist

say() { echo "setup_browser: $*"; }
die() { echo "setup_browser: ERROR: $*" >&2; exit 1; }

# 1. Chromium from Debian (a browser download by the test tool is not possible here).
if [ -z "${REPLAYPIPE_SKIP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        die "chromium is missing; install it with 'sudo apt-get install chromium' and run again"
    fi
    say "installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

# 2. Node.js >= 20 (playwright-core and the build need it).
command -v node >/dev/null 2>&1 || die "node is missing; install Node.js 20 or newer"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js $(node -v) is too old; install Node.js 20 or newer"

# 3. npm ci, only when package-lock.json changed since the last install.
lock_sum=$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)
stamp=$WEB/node_modules/.replaypipe-lock.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    say "npm ci in web/"
    (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$stamp"
fi

# 4. Bundles, only when the sources, build script or lock file changed.
inputs_sum=$(cat "$WEB/package-lock.json" "$WEB/build.mjs" "$WEB"/src/* | sha256sum | cut -d' ' -f1)
build_stamp=$DIST/.inputs.sha256
if [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$inputs_sum" ]; then
    say "building the recorder and viewer bundles"
    (cd "$WEB" && node build.mjs)
    echo "$inputs_sum" > "$build_stamp"
fi
