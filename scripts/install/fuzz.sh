#!/usr/bin/env bash
# Installs cargo-fuzz (the libFuzzer driver behind `scripts/fuzz.sh`) into
# /work/main/tools (git-ignored). Nothing else: the fuzz build itself runs on
# the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only
# `-Z` flags), so no nightly toolchain is installed.
# Idempotent and silent when cargo-fuzz is already present (one stat plus one
# `--version` call, a few milliseconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${ROOT}/tools"
WANT="0.13.2"
BIN="${TOOLS}/bin/cargo-fuzz"

if [[ -x "${BIN}" ]] && "${BIN}" --version 2>/dev/null | grep -q "${WANT}"; then
    exit 0
fi

echo "fuzz.sh: installing cargo-fuzz ${WANT} into ${TOOLS}" >&2
cargo install cargo-fuzz --version "${WANT}" --locked --quiet --root "${TOOLS}"
