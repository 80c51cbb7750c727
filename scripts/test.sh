#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian 12 machine (as root): installs what
# is missing, then pytest. The tests start their own Redis, RTPEngine,
# PostgreSQL, SIPp and daemon processes on free loopback ports.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
.venv/bin/ruff check engine tests bench tools
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
