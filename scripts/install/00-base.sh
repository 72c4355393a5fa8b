#!/usr/bin/env bash
# Debian packages every build needs: protoc (tonic), cmake + pcre2 (bundled
# libyang), OpenSSL headers (libssh2), the network tools tests use, and the
# shells whose rampartctl completion scripts are tested.
# Idempotent and silent when everything is present.
set -euo pipefail

packages=(
    protobuf-compiler libprotobuf-dev cmake libpcre2-dev libssl-dev pkg-config
    iproute2 nftables iptables netsniff-ng curl jq libyang-tools
    zsh fish
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! [ -x tools/bin/cargo-nextest ]; then
    echo "installing: cargo-nextest"
    cargo install --quiet --locked cargo-nextest --root tools >/dev/null
fi
