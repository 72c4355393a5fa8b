#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test (unit,
# integration, real peers: netconfd, eBPF in network namespaces, gRPC on
# loopback), and the vendor-simulator fidelity tests with the vendors' own
# Python clients. Extra arguments go to `cargo nextest run` (a filter).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "WARNING: not root: tests that need network namespaces, eBPF or sshd will SKIP (loudly)." >&2
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (deny warnings)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo nextest run"
cargo nextest run --locked --no-fail-fast --failure-output final "$@"

if [ $# -eq 0 ] && [ -x testbed/sims/run-tests.sh ]; then
    step "vendor simulators, driven by the vendors' own clients"
    testbed/sims/run-tests.sh
fi

step "all tests passed"
