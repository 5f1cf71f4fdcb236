#!/usr/bin/env bash
# Measures iperf3 TCP throughput between two network namespaces joined by a
# veth pair, three ways in one run. The paths are the bare veth pair, a
# kernel VXLAN device set up by hand, and the udp backend's data path (the
# udp_pair example, once with offloads and once without). Prints each figure
# and the ratios.
#
# Usage: sudo scripts/bench-overlay.sh
# Environment: DURATION (seconds per iperf3 run, default 10),
#              STREAMS (parallel TCP streams, default 1).
# Needs root, iproute2 and iperf3. Touches nothing outside the two
# namespaces it creates, and removes them on exit and on Ctrl-C.
set -euo pipefail

DURATION=${DURATION:-10}
STREAMS=${STREAMS:-1}
SUFFIX="$$"
NS_A="ovbench-a-$SUFFIX"
NS_B="ovbench-b-$SUFFIX"
VETH_A="vba$SUFFIX"
VETH_B="vbb$SUFFIX"
TUN_A="tba$SUFFIX"
TUN_B="tbb$SUFFIX"
WORK=$(mktemp -d)
PIDS=()

if ! command -v iperf3 >/dev/null; then
    echo "iperf3 not found: apt-get install iperf3" >&2
    exit 1
fi
if ! command -v ip >/dev/null; then
    echo "ip not found: apt-get install iproute2" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-overlay.sh creates network namespaces and must run as root" >&2
    exit 1
fi

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

# Build the data path in release mode.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --quiet --release -p overlay-udp --example udp_pair)
UDP_PAIR="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/udp_pair"

# Two namespaces and the veth pair between them.
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"
in_a ip link set lo up
in_b ip link set lo up
in_a ip addr add 10.201.0.1/24 dev "$VETH_A"
in_b ip addr add 10.201.0.2/24 dev "$VETH_B"
in_a ip link set "$VETH_A" up
in_b ip link set "$VETH_B" up

# Runs iperf3 from a to the given address in b; prints Gbit/s.
measure() {
    local target=$1 log=$WORK/iperf3-$1.txt
    in_b iperf3 --server --one-off --bind "$target" >/dev/null 2>&1 &
    local server=$!
    PIDS+=("$server")
    for _ in $(seq 50); do
        if in_a iperf3 --client "$target" --time 1 --parallel 1 >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    wait "$server" 2>/dev/null || true
    in_b iperf3 --server --one-off --bind "$target" >/dev/null 2>&1 &
    server=$!
    PIDS+=("$server")
    sleep 0.3
    in_a iperf3 --client "$target" --time "$DURATION" --parallel "$STREAMS" --format g >"$log"
    wait "$server" 2>/dev/null || true
    awk '/receiver/ && (/SUM/ || !sum) { for (i = 1; i <= NF; i++) if ($i == "Gbits/sec") v = $(i - 1); if (/SUM/) sum = 1 }
         END { if (v == "") exit 1; print v }' "$log"
}

# Starts udp_pair in both namespaces with extra arguments; stopping closes
# their standard input, so they shut down cleanly and print their counters.
start_pair() {
    mkfifo "$WORK/in-a" "$WORK/in-b"
    in_a "$UDP_PAIR" --tun "$TUN_A" --lease 10.244.1.0/24 --network 10.244.0.0/16 \
        --bind 10.201.0.1:8285 --peer 10.244.2.0/24=10.201.0.2 "$@" \
        <"$WORK/in-a" >"$WORK/stats-a.txt" &
    PIDS+=("$!")
    in_b "$UDP_PAIR" --tun "$TUN_B" --lease 10.244.2.0/24 --network 10.244.0.0/16 \
        --bind 10.201.0.2:8285 --peer 10.244.1.0/24=10.201.0.1 "$@" \
        <"$WORK/in-b" >"$WORK/stats-b.txt" &
    PIDS+=("$!")
    exec {PAIR_A}>"$WORK/in-a" {PAIR_B}>"$WORK/in-b"
    for _ in $(seq 50); do
        if in_a ip link show "$TUN_A" >/dev/null 2>&1 && in_b ip link show "$TUN_B" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "udp_pair did not create its TUN devices" >&2
    exit 1
}

stop_pair() {
    exec {PAIR_A}>&- {PAIR_B}>&-
    local pid
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    rm -f "$WORK/in-a" "$WORK/in-b"
    echo "  counters a: $(cat "$WORK/stats-a.txt")"
    echo "  counters b: $(cat "$WORK/stats-b.txt")"
}

echo "machine: $(nproc) CPUs, kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "iperf3 TCP, $DURATION s, $STREAMS stream(s), a -> b"

VETH=$(measure 10.201.0.2)
echo "veth pair:                 $VETH Gbit/s"

# Kernel VXLAN between the same namespaces (MTU 1500 - 50).
in_a ip link add vxa type vxlan id 42 local 10.201.0.1 remote 10.201.0.2 dstport 4789 dev "$VETH_A"
in_b ip link add vxb type vxlan id 42 local 10.201.0.2 remote 10.201.0.1 dstport 4789 dev "$VETH_B"
in_a ip addr add 10.202.0.1/24 dev vxa
in_b ip addr add 10.202.0.2/24 dev vxb
in_a ip link set vxa up
in_b ip link set vxb up
VXLAN=$(measure 10.202.0.2)
echo "kernel VXLAN:              $VXLAN Gbit/s"
in_a ip link del vxa
in_b ip link del vxb

start_pair
OURS=$(measure 10.244.2.0)
echo "udp data path, offloads:   $OURS Gbit/s"
stop_pair

start_pair --no-offload
PLAIN=$(measure 10.244.2.0)
echo "udp data path, no offload: $PLAIN Gbit/s"
stop_pair

awk -v veth="$VETH" -v vxlan="$VXLAN" -v ours="$OURS" -v plain="$PLAIN" 'BEGIN {
    printf "ratios: VXLAN/veth %.3f, ours/VXLAN %.3f (no offload %.3f), ours/veth %.3f\n",
        vxlan / veth, ours / vxlan, plain / vxlan, ours / veth
}'
