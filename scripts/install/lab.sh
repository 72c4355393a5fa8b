#!/usr/bin/env bash
# What rampart-lab (testbed/lab) needs besides netconfd.sh's packages:
# ip (iproute2), nsenter/unshare/setpriv (util-linux), openssl (password
# hashes, simulator certificates), python3 (the vendor simulators), sysctl
# (procps, used by topology exec lines). Idempotent and silent when present.
set -euo pipefail

packages=(iproute2 util-linux openssl python3 procps)

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
