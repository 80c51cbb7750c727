#!/usr/bin/env bash
# Set up everything DragonPBX needs on Debian 12 (run as root): the Debian
# packages (only the missing ones), a virtualenv in .venv and the project in it.
# Idempotent; run by the README test command, .ci/run and scripts/run-example.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Programs the tests run and the package that brings each: dot (graphviz), prlimit
# (util-linux), tcpdump, sipp (sip-tester), rtpengine (rtpengine-daemon), chromium,
# redis-server, postgres (postgresql), drachtio's libraries (libboost-*, libgoogle-perftools4…);
# and for bench/bench_instructions.py, valgrind.
PKGS="python3 python3-venv python3-dev gcc rtpengine-daemon rtpengine-utils sip-tester
      redis-server postgresql sox libsox-fmt-mp3 ffmpeg graphviz tcpdump util-linux valgrind
      libboost-thread1.74.0 libboost-log1.74.0 libboost-filesystem1.74.0 libgoogle-perftools4
      libcurl4 libssl3 zlib1g
      chromium fonts-liberation"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
    || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 $missing >/dev/null
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$c; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python >= 3.11 not found" >&2; exit 2; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.dragonpbx-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
