#!/bin/bash
# The whole daemon against the peer harness's AMI replay server (issue 16, item 5): the
# server on CPU 0 writes 1,000,000 events as fast as the daemon, pinned to CPU 1, reads them;
# its closing line is the daemon's consumption rate, the daemon's CPU time over the million
# is its cost per event. With SSE=1 one Server-Sent Events client (curl, on CPU 0) follows the
# native change stream throughout; the line then says how many changes it was sent. Figures go
# to BENCHMARKS.md.
#
#   [SSE=1] benches/daemon.sh [QUEUEBRIDGE] [ROUNDS]
#
# QUEUEBRIDGE defaults to target/release/queuebridge; REPLAY to the harness's replay binary
# built as its README says (cp -r ../shared/bench/ami-peers /var/tmp/ami-peers, then cargo
# build --release in its rust/ folder).
set -euo pipefail

bin=${1:-target/release/queuebridge}
rounds=${2:-2}
replay=${REPLAY:-/var/tmp/ami-peers/rust/target/release/replay}
port=${QB_DAEMON_BENCH_PORT:-25038}
http=${QB_DAEMON_BENCH_HTTP:-25039}
token=bench-token-0123456789
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat > "$dir/bench.toml" <<EOF
state_dir = "$dir/state"
[[ami]]
id = "pbx1"
host = "127.0.0.1"
port = $port
username = "bench"
secret = "bench"
auth = "plain"
[http]
listen = "127.0.0.1:$http"
token = "$token"
EOF

for _ in $(seq "$rounds"); do
    rm -rf "$dir/state" "$dir/sse.out"
    client=
    if [ "${SSE:-0}" = 1 ]; then
        # The daemon first, its AMI link retrying, so that the stream is followed from the
        # first event: the replay server starts writing when the daemon connects.
        taskset -c 1 "$bin" --config "$dir/bench.toml" > "$dir/daemon.log" 2>&1 &
        daemon=$!
        until curl -s -o /dev/null "http://127.0.0.1:$http/"; do sleep 0.05; done
        taskset -c 0 curl -sN -H "Authorization: Bearer $token" \
            "http://127.0.0.1:$http/api/v1/events" > "$dir/sse.out" &
        client=$!
        sleep 0.2
        taskset -c 0 "$replay" --port "$port" --events 1000000 --once > "$dir/replay.out" 2>&1 &
        server=$!
    else
        taskset -c 0 "$replay" --port "$port" --events 1000000 --once > "$dir/replay.out" 2>&1 &
        server=$!
        sleep 0.3
        taskset -c 1 "$bin" --config "$dir/bench.toml" > "$dir/daemon.log" 2>&1 &
        daemon=$!
    fi
    until grep -q wrote "$dir/replay.out"; do
        kill -0 "$daemon" 2> /dev/null || { cat "$dir/daemon.log"; exit 1; }
        sleep 0.1
    done
    read -r -a stat < "/proc/$daemon/stat"
    ticks=$((stat[13] + stat[14]))
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
    sse=
    if [ -n "$client" ]; then
        sleep 1 # what the daemon still has to write
        kill "$client" 2> /dev/null || true
        wait "$client" 2> /dev/null || true
        sse=", SSE client sent $(grep -c '^event: change' "$dir/sse.out" || true) changes in $(grep -c '^event: snapshot' "$dir/sse.out" || true) snapshot(s)"
    fi
    kill "$daemon" "$server" 2> /dev/null || true
    wait "$daemon" "$server" 2> /dev/null || true
    behind=$(grep -c 'is behind' "$dir/daemon.log" || true)
    echo "$(grep -o 'wrote.*' "$dir/replay.out"); daemon CPU $(echo "scale=2; $ticks / $(getconf CLK_TCK)" | bc) s, peak RSS $((hwm / 1024)) MiB, fell behind $behind times$sse"
done
