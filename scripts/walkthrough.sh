#!/usr/bin/env bash
# Runs the flannel walkthrough on this machine with flannel-rs: one host
# runs etcd (10.25.31.105), two hosts run flanneld, mk-docker-opts and a
# docker0 bridge (10.25.31.61 and 10.25.31.37), and the two bridges talk
# across the overlay. Each host is a network namespace. A private bridge in
# a "switch" namespace joins them, so the root namespace keeps its
# addresses, routes and firewall as they are.
#
# Everything the run creates is removed at the end, also when a step fails
# or on Ctrl-C, unless --keep is given.
set -Eeuo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo

# Namespaces and the work folder are named <prefix><pid>, so that
# --teardown can tell the runs that have ended from one still running.
readonly name_prefix=flwd
readonly run_id="${name_prefix}$$"

readonly etcd_addr=10.25.31.105
readonly gateway=10.25.31.1
readonly etcd_endpoint="http://${etcd_addr}:2379"
readonly etcd_prefix=/coreos.com/network
readonly network=172.16.0.0/16
readonly flannel_hosts=(10.25.31.61 10.25.31.37)
readonly wait_seconds=45

backend=udp
etcd_api=v3
keep=false
profile=release
bin_dir=""
workdir=""
current_step="checking the command line"
finished=false

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Runs flannel's three-host walkthrough on this machine with network
namespaces: etcd on ${etcd_addr}, flanneld and a docker0 bridge on
${flannel_hosts[0]} and ${flannel_hosts[1]}, then ping and iperf3 between the
bridges across the overlay. Installs missing Debian packages and builds
flanneld and mk-docker-opts first.

Options:
  --backend TYPE   overlay backend written into the network configuration:
                   udp (default), vxlan or host-gw
  --etcd-api API   etcd API that stores the network: v3 (default, as
                   current flannel: etcdctl put and get) or v2 (as flannel
                   0.5 in the walkthrough: etcd runs with --enable-v2=true,
                   etcdctl set, ls and get, and flanneld gets -etcd-api=v2)
  --keep           leave the hosts running for exploring; prints how to
                   enter them and how to remove them
  --debug          build the binaries with the dev profile (faster build,
                   slower data path) instead of release
  --bin-dir DIR    use flanneld and mk-docker-opts from DIR, build nothing
  --teardown       remove what earlier runs with --keep left, then exit
  -h, --help       show this help

Needs root and Linux with TUN (/dev/net/tun) and network namespaces.
EOF
}

die() {
    printf '\nwalkthrough: FAILED while %s: %s\n' "$current_step" "$*" >&2
    exit 1
}

step() {
    current_step="$1"
    printf '\n==> %s\n' "$1"
}

# Prints a command as an operator would type it on host $1, then runs it
# in that host's namespace with its output indented.
on_host() {
    local host=$1
    shift
    printf '    [%s]# %s\n' "$host" "$*"
    ip netns exec "$(namespace_of "$host")" "$@" 2>&1 | sed 's/^/      /'
}

namespace_of() {
    echo "${run_id}-h${1##*.}"
}

require_root() {
    ((EUID == 0)) || die "root is needed to create and delete network namespaces: run sudo $0"
}

on_error() {
    local status=$? line=$1 command=$2
    printf '\nwalkthrough: FAILED while %s\n' "$current_step" >&2
    printf 'walkthrough: "%s" exited with status %s (line %s)\n' "$command" "$status" "$line" >&2
}

parse_args() {
    while (($# > 0)); do
        case "$1" in
            --backend) (($# > 1)) || die "--backend needs a value: udp, vxlan or host-gw"
                backend=$2; shift ;;
            --backend=*) backend=${1#--backend=} ;;
            --etcd-api) (($# > 1)) || die "--etcd-api needs a value: v2 or v3"
                etcd_api=$2; shift ;;
            --etcd-api=*) etcd_api=${1#--etcd-api=} ;;
            --keep) keep=true ;;
            --debug) profile=debug ;;
            --bin-dir) (($# > 1)) || die "--bin-dir needs a folder"
                bin_dir=$2; shift ;;
            --bin-dir=*) bin_dir=${1#--bin-dir=} ;;
            --teardown) require_root; remove_ended_runs; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option $1" ;;
        esac
        shift
    done
    case "$backend" in
        udp | vxlan | host-gw) ;;
        *) die "invalid --backend $backend: use udp, vxlan or host-gw" ;;
    esac
    case "$etcd_api" in
        v2 | v3) ;;
        *) die "invalid --etcd-api $etcd_api: use v2 or v3" ;;
    esac
}

# The network configuration as an operator writes it. For udp it is the
# walkthrough's own, with no Backend key, because udp is the default.
network_config() {
    if [[ $backend == udp ]]; then
        printf '{"Network":"%s"}' "$network"
    else
        printf '{"Network":"%s","Backend":{"Type":"%s"}}' "$network" "$backend"
    fi
}

# Kills every process in namespace $1 (SIGTERM, then SIGKILL after 5 s)
# and deletes it.
remove_namespace() {
    local namespace=$1 pids pid _
    pids=$(ip netns pids "$namespace" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086 # one pid per word
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(ip netns pids "$namespace" 2>/dev/null || true) ]] && break
            sleep 0.1
        done
        pids=$(ip netns pids "$namespace" 2>/dev/null || true)
        for pid in $pids; do
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    ip netns del "$namespace" 2>/dev/null || true
}

# Removes this run's namespaces and work folder.
remove_run() {
    local namespace count=0
    for namespace in $(ip netns list | awk '{print $1}' | grep "^${run_id}-" || true); do
        remove_namespace "$namespace"
        count=$((count + 1))
    done
    if [[ -n $workdir ]]; then
        rm -rf "$workdir"
    fi
    printf '    removed %d namespaces, their processes and %s\n' "$count" "${workdir:-no work folder}"

    local left
    left=$(ip netns list | awk '{print $1}' | grep "^${run_id}-" || true)
    if [[ -n $left || ( -n $workdir && -e $workdir ) ]]; then
        printf 'walkthrough: could not remove %s; run sudo %s --teardown\n' \
            "$(echo "$left" "$workdir" | xargs)" "$0" >&2
        return 1
    fi
}

# Removes namespaces and work folders of runs whose script has exited.
remove_ended_runs() {
    local name pid found=0
    for name in $(ip netns list | awk '{print $1}'); do
        [[ $name == "$name_prefix"* ]] || continue
        pid=${name#"$name_prefix"}
        pid=${pid%%-*}
        [[ -d /proc/$pid ]] && continue
        echo "removing namespace $name"
        remove_namespace "$name"
        found=1
    done
    for name in "${TMPDIR:-/tmp}/$name_prefix"*; do
        [[ -d $name ]] || continue
        pid=$(basename "$name")
        pid=${pid#"$name_prefix"}
        pid=${pid%%.*}
        [[ -d /proc/$pid ]] && continue
        echo "removing $name"
        rm -rf "$name"
        found=1
    done
    ((found)) || echo "nothing to remove"
}

on_exit() {
    local status=$?
    trap - ERR
    if $finished && $keep; then
        return
    fi
    current_step="tearing down"
    printf '\n==> Tearing down\n'
    remove_run || return
    if ((status == 0)); then
        printf '\nwalkthrough: all steps passed; nothing is left behind\n'
    else
        printf '\nwalkthrough: failed (exit status %d); nothing is left behind\n' "$status" >&2
    fi
}

find_cargo() {
    local home
    if command -v cargo >/dev/null; then
        command -v cargo
        return
    fi
    for home in "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)" /root; do
        if [[ -x $home/.cargo/bin/cargo ]]; then
            echo "$home/.cargo/bin/cargo"
            return
        fi
    done
    die "cargo not found: install Rust (https://rustup.rs) or pass --bin-dir"
}

build_binaries() {
    if [[ -n $bin_dir ]]; then
        echo "    using binaries from $bin_dir"
        return
    fi
    local cargo target_dir profile_flag=()
    cargo=$(find_cargo)
    target_dir=${CARGO_TARGET_DIR:-$repo/target}
    [[ $profile == release ]] && profile_flag=(--release)
    local build=("$cargo" build "${profile_flag[@]}" -p flanneld -p mk-docker-opts)
    echo "    ${build[*]}"

    # Build as the user who ran sudo, so that target/ stays theirs.
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        (cd "$repo" && sudo -u "$SUDO_USER" -H env "PATH=$(dirname "$cargo"):$PATH" \
            "CARGO_TARGET_DIR=$target_dir" "${build[@]}") ||
            die "cargo build failed (as $SUDO_USER, target folder $target_dir)"
    else
        (cd "$repo" && CARGO_TARGET_DIR=$target_dir "${build[@]}") || die "cargo build failed"
    fi
    bin_dir=$target_dir/$profile
}

check_binaries() {
    local binary
    [[ -d $bin_dir ]] || die "binary folder $bin_dir not found"
    bin_dir=$(cd "$bin_dir" && pwd)
    for binary in flanneld mk-docker-opts; do
        [[ -x $bin_dir/$binary ]] || die "$binary not found in $bin_dir"
    done
}

# Creates namespace $1 with its loopback up, wired to the switch through a
# veth pair (eth0 inside, p<last octet> on the switch), addressed $2/24.
# The default route goes via $gateway as on a real host. No namespace has
# that address, so overlay traffic never takes a shortcut over the switch.
create_host() {
    local namespace=$1 addr=$2 port="p${2##*.}"
    ip netns add "$namespace"
    ip -n "$namespace" link set dev lo up
    ip -n "${run_id}-sw" link add "$port" type veth peer name eth0 netns "$namespace"
    ip -n "${run_id}-sw" link set dev "$port" master br0 up
    ip -n "$namespace" addr add "$addr/24" dev eth0
    ip -n "$namespace" link set dev eth0 up
    ip -n "$namespace" route add default via "$gateway" dev eth0
    printf '    %-14s namespace %s\n' "$addr" "$namespace"
}

# Starts "$@" in namespace $1 in a session of its own (so that --keep
# outlives the terminal), output to $2.
start_daemon() {
    local namespace=$1 log=$2
    shift 2
    setsid ip netns exec "$namespace" "$@" >"$log" 2>&1 </dev/null &
}

# Runs etcdctl on the etcd host with the API chosen by --etcd-api.
etcdctl_on_etcd_host() {
    ip netns exec "${run_id}-etcd" env "ETCDCTL_API=${etcd_api#v}" etcdctl "$@"
}

# Prints an etcdctl command as the operator types it on the etcd host,
# then runs it there with its output indented. etcdctl 3.4 uses the v3
# API unless ETCDCTL_API=2 is set, so the printed line includes that.
etcdctl_as_operator() {
    local api_prefix=""
    [[ $etcd_api == v2 ]] && api_prefix="ETCDCTL_API=2 "
    printf '    [%s]# %setcdctl %s\n' "$etcd_addr" "$api_prefix" "$(quote_words "$@")"
    etcdctl_on_etcd_host "$@" | sed 's/^/      /'
}

# Prints its arguments as a shell line, quoting the words that need it.
quote_words() {
    local word line=""
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=-]+$ ]]; then
            line+=" $word"
        else
            line+=" '$word'"
        fi
    done
    echo "${line# }"
}

start_etcd() {
    # etcd 3.4 serves the v2 keys API only when started with this flag.
    local v2_flag=()
    [[ $etcd_api == v2 ]] && v2_flag=(--enable-v2=true)
    start_daemon "${run_id}-etcd" "$workdir/etcd.log" \
        etcd --name walkthrough --data-dir "$workdir/etcd-data" "${v2_flag[@]}" \
        --listen-client-urls "${etcd_endpoint},http://127.0.0.1:2379" \
        --advertise-client-urls "$etcd_endpoint" \
        --listen-peer-urls http://127.0.0.1:2380 \
        --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster walkthrough=http://127.0.0.1:2380 \
        --logger zap --log-level warn
    local pid=$! _
    for _ in $(seq $((wait_seconds * 5))); do
        # The health check uses the v3 API, which etcd serves in both modes.
        if ip netns exec "${run_id}-etcd" env ETCDCTL_API=3 etcdctl \
            --endpoints "$etcd_endpoint" --dial-timeout=1s endpoint health >/dev/null 2>&1; then
            echo "    etcd is serving on $etcd_endpoint (log: $workdir/etcd.log)"
            return
        fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$workdir/etcd.log" >&2; die "etcd exited"; }
        sleep 0.2
    done
    tail -n 20 "$workdir/etcd.log" >&2
    die "etcd not healthy on $etcd_endpoint after ${wait_seconds}s"
}

start_flanneld() {
    local host=$1 folder="$workdir/h${1##*.}"
    mkdir -p "$folder"
    local command=("$bin_dir/flanneld" "-etcd-endpoints=$etcd_endpoint"
        "-etcd-prefix=$etcd_prefix" "-subnet-file=$folder/subnet.env")
    [[ $etcd_api == v2 ]] && command+=(-etcd-api=v2)
    printf '    [%s]# %s\n' "$host" "${command[*]}"
    start_daemon "$(namespace_of "$host")" "$folder/flanneld.log" "${command[@]}"
    echo $! >"$folder/flanneld.pid"
}

wait_for_subnet_env() {
    local host=$1 folder="$workdir/h${1##*.}" pid _
    pid=$(cat "$folder/flanneld.pid")
    for _ in $(seq $((wait_seconds * 5))); do
        if [[ -s $folder/subnet.env ]]; then
            echo "    flanneld on $host is up (log: $folder/flanneld.log)"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "    last lines of $folder/flanneld.log:" >&2
            tail -n 20 "$folder/flanneld.log" | sed 's/^/      /' >&2
            die "flanneld on $host exited before writing subnet.env"
        fi
        sleep 0.2
    done
    tail -n 20 "$folder/flanneld.log" | sed 's/^/      /' >&2
    die "flanneld on $host wrote no subnet.env within ${wait_seconds}s"
}

set_up_docker0() {
    local host=$1 folder="$workdir/h${1##*.}" namespace
    namespace=$(namespace_of "$host")
    echo "    --- $host ---"
    on_host "$host" cat "$folder/subnet.env"
    on_host "$host" "$bin_dir/mk-docker-opts" -i -f "$folder/subnet.env" -d "$folder/docker_opts.env"
    on_host "$host" cat "$folder/docker_opts.env"

    local FLANNEL_SUBNET
    FLANNEL_SUBNET=$(sed -n 's/^FLANNEL_SUBNET=//p' "$folder/subnet.env")
    [[ -n $FLANNEL_SUBNET ]] || die "$folder/subnet.env has no FLANNEL_SUBNET"
    ip -n "$namespace" link add docker0 type bridge
    on_host "$host" ip addr add "$FLANNEL_SUBNET" dev docker0
    ip -n "$namespace" link set dev docker0 up
    on_host "$host" ip -br addr show
}

# Writes the network configuration and reads it back, with etcdctl put
# (v3) or with the walkthrough's etcdctl set (v2).
write_config() {
    local config
    config=$(network_config)
    if [[ $etcd_api == v2 ]]; then
        etcdctl_as_operator set "$etcd_prefix/config" "$config"
    else
        etcdctl_as_operator put "$etcd_prefix/config" "$config"
    fi
    etcdctl_as_operator get "$etcd_prefix/config"
}

lease_list_command() {
    if [[ $etcd_api == v2 ]]; then
        echo "env ETCDCTL_API=2 etcdctl ls $etcd_prefix/subnets"
    else
        echo "etcdctl get --prefix $etcd_prefix/subnets"
    fi
}

# Prints the lease key of host $1's FLANNEL_SUBNET, e.g. 172.16.37.0-24
# for 172.16.37.1/24.
lease_key_of() {
    local subnet addr prefix_len a b c d value mask
    subnet=$(sed -n 's/^FLANNEL_SUBNET=//p' "$workdir/h${1##*.}/subnet.env")
    addr=${subnet%/*}
    prefix_len=${subnet#*/}
    IFS=. read -r a b c d <<<"$addr"
    value=$(((a << 24) | (b << 16) | (c << 8) | d))
    mask=$(((0xffffffff << (32 - prefix_len)) & 0xffffffff))
    value=$((value & mask))
    printf '%d.%d.%d.%d-%d\n' $((value >> 24)) $(((value >> 16) & 255)) \
        $(((value >> 8) & 255)) $((value & 255)) "$prefix_len"
}

# Lists the leases as the walkthrough checks them (etcdctl ls, then
# etcdctl get of the first host's lease with v2), and fails unless each
# flannel host's FLANNEL_SUBNET has a lease naming its address.
list_leases() {
    local host key listing
    if [[ $etcd_api == v2 ]]; then
        etcdctl_as_operator ls "$etcd_prefix/subnets"
        key=$(lease_key_of "${flannel_hosts[0]}")
        etcdctl_as_operator get "$etcd_prefix/subnets/$key"
        listing=$(etcdctl_on_etcd_host ls "$etcd_prefix/subnets")
    else
        etcdctl_as_operator get --prefix "$etcd_prefix/subnets"
        listing=$(etcdctl_on_etcd_host get --prefix --keys-only "$etcd_prefix/subnets")
    fi
    for host in "${flannel_hosts[@]}"; do
        key="$etcd_prefix/subnets/$(lease_key_of "$host")"
        grep -qxF "$key" <<<"$listing" || die "no lease $key for $host in etcd"
        etcdctl_on_etcd_host get "$key" | grep -qF "\"PublicIP\":\"$host\"" ||
            die "lease $key does not name PublicIP $host"
    done
    echo "    each flannel host has a lease for its FLANNEL_SUBNET that names its address"
}

bridge_addr() {
    sed -n 's/^FLANNEL_SUBNET=\(.*\)\/.*/\1/p' "$workdir/h${1##*.}/subnet.env"
}

wait_for_overlay() {
    local from=$1 to=$2 source target deadline
    source=$(bridge_addr "$from")
    target=$(bridge_addr "$to")
    deadline=$((SECONDS + wait_seconds))
    while ((SECONDS < deadline)); do
        if ip netns exec "$(namespace_of "$from")" ping -n -c 1 -W 1 -I "$source" "$target" \
            >/dev/null 2>&1; then
            return
        fi
        sleep 0.5
    done
    die "docker0 $source on $from cannot reach docker0 $target on $to within ${wait_seconds}s"
}

test_traffic() {
    local a=${flannel_hosts[0]} b=${flannel_hosts[1]} addr_a addr_b
    addr_a=$(bridge_addr "$a")
    addr_b=$(bridge_addr "$b")
    wait_for_overlay "$a" "$b"
    wait_for_overlay "$b" "$a"
    on_host "$a" ip route get "$addr_b"
    on_host "$a" ping -n -c 3 -I "$addr_a" "$addr_b"
    on_host "$b" ping -n -c 3 -I "$addr_b" "$addr_a"

    start_daemon "$(namespace_of "$b")" "$workdir/iperf3-server.log" iperf3 -s -1 -B "$addr_b"
    local _
    for _ in $(seq 50); do
        [[ -n $(ip netns exec "$(namespace_of "$b")" ss -Hltn 'sport = :5201') ]] && break
        sleep 0.1
    done
    on_host "$a" iperf3 -c "$addr_b" -B "$addr_a" -t 3 -f m
}

print_keep_help() {
    local a=${flannel_hosts[0]} b=${flannel_hosts[1]}
    cat <<EOF

==> The hosts keep running
    Enter a host:        sudo ip netns exec $(namespace_of "$a") bash
    Ping across:         sudo ip netns exec $(namespace_of "$a") ping -I $(bridge_addr "$a") $(bridge_addr "$b")
    Leases:              sudo ip netns exec ${run_id}-etcd $(lease_list_command)
    Logs and subnet.env: $workdir
    Remove everything:   sudo $0 --teardown
EOF
}

main() {
    parse_args "$@"
    require_root
    [[ -c /dev/net/tun ]] || die "/dev/net/tun is missing: load the tun module (modprobe tun)"

    trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    step "Installing missing packages (scripts/install-deps.sh)"
    "$repo/scripts/install-deps.sh"
    echo "    etcd, etcdctl, ip, iperf3, iptables and ping are installed"

    step "Building flanneld and mk-docker-opts ($profile)"
    build_binaries
    check_binaries

    workdir=$(mktemp -d "${TMPDIR:-/tmp}/${run_id}.XXXXXX")

    step "1/6 Creating the hosts as network namespaces on a private switch"
    ip netns add "${run_id}-sw"
    ip -n "${run_id}-sw" link add br0 type bridge
    ip -n "${run_id}-sw" link set dev br0 up
    create_host "${run_id}-etcd" "$etcd_addr"
    local host
    for host in "${flannel_hosts[@]}"; do
        create_host "$(namespace_of "$host")" "$host"
    done

    step "2/6 Starting etcd on $etcd_addr and writing the network configuration"
    start_etcd
    write_config

    step "3/6 Starting flanneld on ${flannel_hosts[*]}"
    for host in "${flannel_hosts[@]}"; do
        start_flanneld "$host"
    done
    for host in "${flannel_hosts[@]}"; do
        wait_for_subnet_env "$host"
    done

    step "4/6 Running mk-docker-opts and creating docker0 from FLANNEL_SUBNET"
    echo "    (each host's subnet.env stands in for /run/flannel/subnet.env)"
    for host in "${flannel_hosts[@]}"; do
        set_up_docker0 "$host"
    done

    step "5/6 Listing the leases in etcd"
    list_leases

    step "6/6 Sending traffic between the docker0 bridges across the overlay"
    test_traffic

    finished=true
    if $keep; then
        print_keep_help
        printf '\nwalkthrough: all steps passed\n'
    fi
}

main "$@"
