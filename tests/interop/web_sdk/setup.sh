#!/usr/bin/env bash
# Idempotent, non-interactive setup for the @millisai/web-sdk interop harness.
#   1. Debian's chromium at /usr/bin/chromium (apt-get; needs root)
#   2. npm ci (exact versions from package-lock.json)
#   3. bundle src/page.js -> dist/page.bundle.js (esbuild)
# Never downloads a browser build of its own (no `playwright install`).
set -euo pipefail
cd "$(dirname "$0")"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: $CHROMIUM is missing and installing it needs root (apt-get install chromium);" \
         "run this script as root or install Debian's chromium package first" >&2
    exit 1
  fi
  echo "setup.sh: installing chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q chromium
fi
"$CHROMIUM" --version 2>/dev/null | grep -i chromium >&2 || {
  echo "setup.sh: $CHROMIUM does not run" >&2
  exit 1
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup.sh: node and npm are required (Node >= 18)" >&2
  exit 1
fi
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || {
  echo "setup.sh: Node >= 18 required, found $(node --version)" >&2
  exit 1
}

npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
test -s dist/page.bundle.js
echo "setup.sh: ready (node run.mjs --help)" >&2
