#!/usr/bin/env bash
# Installs the Debian packages that the walkthrough demo and the end-to-end
# tests run: etcd (server and etcdctl), protoc (needed to build the etcd
# client), ip, iperf3, iptables and ping.
#
# Quiet and idempotent: it checks with dpkg first, and runs `apt-get update`
# and `apt-get install` only when a package is missing. Needs root to install.
set -euo pipefail

packages=(
    etcd-server
    etcd-client
    protobuf-compiler
    iproute2
    iperf3
    iptables
    iputils-ping
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run as root to install them: sudo $0" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# apt prints progress and debconf notes even with -qq: keep them for a
# failure only.
if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: apt-get update failed; check the apt sources" >&2
    exit 1
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: apt-get install ${missing[*]} failed" >&2
    exit 1
fi
