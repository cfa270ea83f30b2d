#!/usr/bin/env bash
# The chat as a two-node cluster on this machine: a redis-server of its own
# (in a temporary directory, nothing saved) and two C chat hosts joined
# through it (CHAT_REDIS_URL), each serving the page. Ctrl-C (or any of the
# three exiting) stops them all.
#
# Usage: examples/chat/cluster.sh   (`make chat-cluster` builds the host first)
# Env: CHAT_HOST (the host binary; default build/c/chat), PORT_A, PORT_B
# (the chat ports; default 3000, 3001), REDIS_PORT (default: a free port),
# CHAT_REDIS_KEY (the stream's name; default socket.io), CHAT_RECOVERY_MS.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" # the hosts find the page and node_modules/socket.io-client here
chat=${CHAT_HOST:-build/c/chat}
port_a=${PORT_A:-3000}
port_b=${PORT_B:-3001}
redis_port=${REDIS_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

[ -x "$chat" ] || { echo "$chat is missing: make chat-cluster builds it" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing: make setup-redis" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
stop_all() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done
[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || { cat "$tmp/redis.log" >&2; exit 1; }
echo "redis on 127.0.0.1:$redis_port"

export CHAT_REDIS_URL="redis://127.0.0.1:$redis_port"
for port in "$port_a" "$port_b"; do
    "$chat" "$port" &
    pids+=($!)
done
echo "Ctrl-C stops the cluster"

# The first of them to end ends the cluster (stop_all stops the others).
status=0
wait -n || status=$?
exit "$status"
