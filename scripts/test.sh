#!/usr/bin/env bash
# Runs every check that CI runs: formatting, lints, then the whole
# workspace's tests, which start real etcd servers on loopback and build
# network namespaces and TUN devices. Installs what a fresh Debian machine
# lacks first. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: run as root (the tests create network namespaces and TUN devices): sudo scripts/test.sh" >&2
    exit 1
fi

scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked
