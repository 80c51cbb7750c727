#!/usr/bin/env bash
# Start DragonPBX with a working example configuration on a fresh Debian 12
# machine (as root): installs what is missing, then runs its own Redis and
# RTPEngine on loopback, the example webhook app (tools/example_webhooks.py)
# and the PBX in the foreground. Ctrl-C stops everything.
#
#   scripts/run-example.sh                 # SIP on 127.0.0.1:5060 (softphones on this host)
#   PBX_IP=192.168.1.20 scripts/run-example.sh   # phones on the LAN reach that address
#
# Phones: register 1000/secret1000 or 1001/secret1001 (static passwords) or
# 2000/secret2000 … 2002 (checked by the RegHook) to sip:<PBX_IP>:<SIP_PORT>;
# dial another extension to ring it, 600 for an announcement.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"

PBX_IP=${PBX_IP:-127.0.0.1}
SIP_PORT=${SIP_PORT:-5060}
REDIS_PORT=${REDIS_PORT:-6390}
NG_PORT=${NG_PORT:-2223}
HOOK_PORT=${HOOK_PORT:-8088}
RUN_DIR=$(mktemp -d -t dragonpbx-example.XXXXXX)
chmod 755 "$RUN_DIR"

pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  echo "example stopped; logs were in $RUN_DIR" >&2
}
trap cleanup EXIT INT TERM

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$RUN_DIR" --daemonize no >"$RUN_DIR/redis.log" 2>&1 &
pids+=($!)
rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=5 \
  --interface="$PBX_IP" --listen-ng="127.0.0.1:$NG_PORT" \
  --port-min=30000 --port-max=30999 --delete-delay=0 --timeout=60 \
  >"$RUN_DIR/rtpengine.log" 2>&1 &
pids+=($!)
.venv/bin/python tools/example_webhooks.py --port "$HOOK_PORT" >"$RUN_DIR/webhooks.log" 2>&1 &
pids+=($!)

HOOK="http://127.0.0.1:$HOOK_PORT"
cat >"$RUN_DIR/config.json" <<JSON
{
  "domains": {
    "$PBX_IP": {
      "domain_id": 1,
      "clients": [
        {"username": "1000", "password": "secret1000", "codecs": ["PCMU", "PCMA", "G722"],
         "dialplan": {"????": {"callHook": "$HOOK/callhook", "statusHook": "$HOOK/statushook"},
                      "600": "$HOOK/callhook"}},
        {"username": "1001", "password": "secret1001", "codecs": ["PCMU", "PCMA", "G722"],
         "dialplan": {"????": {"callHook": "$HOOK/callhook", "statusHook": "$HOOK/statushook"},
                      "600": "$HOOK/callhook"}},
        {"username": "2*", "reghook": "$HOOK/reghook"}
      ],
      "trunks": []
    }
  }
}
JSON

for _ in $(seq 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1
done

WEBPORT=${WEBPORT:-2999}
echo "DragonPBX example: SIP on $PBX_IP:$SIP_PORT (udp+tcp), webhooks on $HOOK, logs in $RUN_DIR" >&2
echo "live page, HTTP API and metrics: http://127.0.0.1:$WEBPORT/ (loopback only, no token)" >&2
env DATA_SOURCE=json CONFIG_FILE="$RUN_DIR/config.json" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" RTPENGINE_HOST="127.0.0.1:$NG_PORT" \
    SIP_HOST="$PBX_IP" SIP_PORT="$SIP_PORT" LOGLEVEL="${LOGLEVEL:-info}" WEBPORT="$WEBPORT" \
    NONCE_SECRET="${NONCE_SECRET:-example-only-$(hostname)}" \
    .venv/bin/dragonpbx run &
pids+=($!)
wait "${pids[-1]}"
