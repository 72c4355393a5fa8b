#!/usr/bin/env bash
# Debian's etcd: the distributed store rampartd can run on ([store] backend
# = "etcd"). The conformance suite (controller/tests/store_conformance.rs)
# starts private 3-member clusters on loopback ports from the binaries; the
# system etcd service is never started (policy-rc.d) nor enabled.
# Idempotent and silent when everything is present.
set -euo pipefail

packages=(etcd-server etcd-client)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package's postinst must not start a system etcd on 2379/2380.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    # Debian enables the unit; rampart's tests never use it.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
