#!/usr/bin/env bash
# Debian packages every build needs: protoc (tonic), cmake + pcre2 (bundled
# libyang), OpenSSL headers (libssh2), the network tools tests use, and the
# shells whose rampartctl completion scripts are tested.
# Idempotent and silent when everything is present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(
    protobuf-compiler libprotobuf-dev cmake libpcre2-dev libssl-dev pkg-config
    iproute2 nftables iptables netsniff-ng curl jq libyang-tools
    zsh fish
)

apt_install_missing "${packages[@]}"

if ! command -v cargo-nextest >/dev/null 2>&1 && ! [ -x tools/bin/cargo-nextest ]; then
    echo "installing: cargo-nextest"
    cargo install --quiet --locked cargo-nextest --root tools >/dev/null
fi
