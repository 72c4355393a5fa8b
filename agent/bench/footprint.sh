#!/bin/sh
# Agent footprint: RSS and idle CPU of a release `rampart-agent run` that
# enforces N rules on one interface in both directions (XDP + TC), in a
# scratch network namespace with its own pin root. Prints one Markdown row.
#
#   cargo build --release -p rampart-agent --bin rampart-agent
#   sudo agent/bench/footprint.sh 10000 [idle-seconds]
#
# RSS is read from /proc/PID/status once the policy is applied and the
# agent has idled 5 s (VmRSS now, VmHWM the peak); idle CPU is the agent's
# utime+stime over the idle window divided by its length.
set -eu
N=${1:-10000}
IDLE=${2:-30}
BIN=${BIN:-target/release/rampart-agent}
ID=$$
NS=fp-$ID
PINS=/sys/fs/bpf/rampart-fp-$ID
DIR=$(mktemp -d)
cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    "$BIN" --netns "$NS" --pin-root "$PINS" detach >/dev/null 2>&1 || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add fp0 type veth peer name fp1
ip -n "$NS" link set fp0 up
ip -n "$NS" link set fp1 up
{
    echo "version: 1"
    echo "interfaces:"
    echo "  - interface: fp0"
    echo "    direction: both"
    echo "    default_action: permit"
    echo "    rules:"
    i=0
    while [ "$i" -lt "$N" ]; do
        echo "      - {sequence: $i, action: deny, protocol: 17, sources: [10.99.$((i / 256 % 256)).$((i % 256))/32], destination_ports: [{first: $((1024 + i % 60000)), last: $((1024 + i % 60000))}]}"
        i=$((i + 1))
    done
} >"$DIR/policy.yaml"
"$BIN" --netns "$NS" --pin-root "$PINS" run --policy "$DIR/policy.yaml" \
    --metrics-listen 127.0.0.1:0 2>"$DIR/agent.log" &
PID=$!
n=0
until grep -q "policy applied" "$DIR/agent.log"; do
    n=$((n + 1))
    if [ "$n" -gt 600 ] || ! kill -0 "$PID" 2>/dev/null; then
        echo "agent did not apply the policy:" >&2
        cat "$DIR/agent.log" >&2
        exit 1
    fi
    sleep 0.1
done
sleep 5
rss=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
hwm=$(awk '/^VmHWM/ {print $2}' /proc/$PID/status)
ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
t0=$(ticks)
sleep "$IDLE"
t1=$(ticks)
hz=$(getconf CLK_TCK)
cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$IDLE" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}')
echo "| $N | both | $((rss / 1024)).$((rss % 1024 * 10 / 1024)) MB | $((hwm / 1024)).$((hwm % 1024 * 10 / 1024)) MB | $cpu% |"
