#!/usr/bin/env bash
# Builds bpf-linker 0.13.0 (needed by aya-build to link rampart-agent's eBPF
# programs) into /work/main/tools, linked against rustc's own libLLVM so no
# Debian LLVM packages are needed. `cargo install bpf-linker` with default
# features finds Debian's LLVM 14 and fails; see shared verified-facts.
# Idempotent and silent when everything is already present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${ROOT}/tools"
WANT="0.13.0"
BIN="${TOOLS}/bin/bpf-linker"

# The eBPF crate builds with -Z build-std=core, which needs core's sources.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup component add rust-src >/dev/null
fi

if [[ -x "${BIN}" ]] && "${BIN}" --version 2>/dev/null | grep -q "${WANT}"; then
    exit 0
fi

SR="$(rustc --print sysroot)/lib"
LIB="$(cd "${SR}" && ls libLLVM-*.so | head -n1)"
LIB="${LIB#lib}"
LIB="${LIB%.so}"
LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"

echo "bpf-linker.sh: building bpf-linker ${WANT} against ${LIB} (llvm-${LLVM_MAJOR}) into ${TOOLS}" >&2
RUSTFLAGS="-L native=${SR} -l dylib=${LIB} -C link-arg=-Wl,-rpath,${SR}" \
    cargo install bpf-linker --version "${WANT}" --locked --quiet \
    --no-default-features --features "llvm-${LLVM_MAJOR},no-llvm-linking" \
    --root "${TOOLS}"
