#!/bin/sh
# Install the Debian packages the test suite needs, if missing. Idempotent; needs root.
set -eu
need=""
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
command -v sox >/dev/null 2>&1 || need="$need sox"
ldconfig -p 2>/dev/null | grep -q libportaudio || need="$need libportaudio2"
ldconfig -p 2>/dev/null | grep -q libsndfile || need="$need libsndfile1"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing$need (run as root, or install them); tests needing them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $need >/dev/null
