#!/usr/bin/env bash
# The demo: a real Asterisk with asterisk-conf/, queuebridge connected to it, and calls flowing
# through the queues. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ami_port=${AMI_PORT:-15038}
http_port=${HTTP_PORT:-8088}
secret=demo-secret
token=demo-token-please-change
work=$(mktemp -d /tmp/queuebridge-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

scripts/asterisk-rootfs >/dev/null
echo "== building queuebridge"
cargo build --release --quiet
echo "== starting Asterisk (AMI on 127.0.0.1:$ami_port)"
scripts/asterisk-instance demo "$ami_port" "$secret" > "$work/asterisk.log" 2>&1 &
pids+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/$ami_port) 2>/dev/null; do sleep 0.2; done

cat > "$work/queuebridge.toml" <<TOML
state_dir = "$work/state"
[[ami]]
id = "demo"
host = "127.0.0.1"
port = $ami_port
username = "bridge"
secret = "$secret"
[http]
listen = "127.0.0.1:$http_port"
token = "$token"
TOML
echo "== starting queuebridge (HTTP on 127.0.0.1:$http_port)"
target/release/queuebridge --config "$work/queuebridge.toml" 2> "$work/queuebridge.log" &
pids+=($!)
until curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null; do sleep 0.2; done

# The traffic: a plain AMI session over bash's /dev/tcp (user "driver" of manager.conf).
exec 3<>/dev/tcp/127.0.0.1/$ami_port
cat <&3 >/dev/null &
pids+=($!)
ami() { printf '%s\r\n' "$@" "" >&3; }
ami "Action: Login" "Username: driver" "Secret: $secret" "Events: off"
for a in agent1 agent2 agent3; do
  ami "Action: Command" "Command: database put qb mode_$a demo"
  ami "Action: Setvar" "Variable: DEVICE_STATE(Custom:$a)" "Value: NOT_INUSE"
done
(
  n=0
  while true; do
    n=$((n + 1))
    queue=$([ $((RANDOM % 3)) -eq 0 ] && echo support || echo sales)
    # Patience 10–40 s of talk, 15–60 s of waiting before giving up.
    ami "Action: Originate" "Channel: Local/$queue@callers" "Application: Wait" \
      "Data: $((10 + RANDOM % 30))" "Async: true" "Timeout: $(((15 + RANDOM % 45) * 1000))" \
      "CallerID: \"Caller $n\" <555$((1000 + RANDOM % 9000))>" "Variable: _PRIO=$((RANDOM % 4 == 0 ? 5 : 0))"
    if [ $((n % 7)) -eq 0 ]; then
      ami "Action: QueuePause" "Interface: Local/agent2@agents/n" "Paused: true" "Reason: Coffee"
    elif [ $((n % 7)) -eq 3 ]; then
      ami "Action: QueuePause" "Interface: Local/agent2@agents/n" "Paused: false"
    fi
    sleep $((2 + RANDOM % 5))
  done
) &
pids+=($!)

cat <<INFO

queuebridge is running against a real Asterisk, and calls are flowing through "sales" and "support".

  Live changes (SSE):  curl -N -H 'Authorization: Bearer $token' http://127.0.0.1:$http_port/api/v1/events
  All queues (JSON):   curl -H 'Authorization: Bearer $token' http://127.0.0.1:$http_port/api/v1/queues
  One queue:           curl -H 'Authorization: Bearer $token' http://127.0.0.1:$http_port/api/v1/queues/sales
  Health:              curl -H "Authorization: Bearer $token" http://127.0.0.1:$http_port/healthz
  Logs:                $work/queuebridge.log, $work/asterisk.log

A summary follows every 3 seconds. Ctrl-C stops the demo.

INFO
while true; do
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/api/v1/queues" | python3 scripts/summary.py || echo "(queuebridge not answering)"
  sleep 3
done
