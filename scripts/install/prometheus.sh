#!/usr/bin/env bash
# Prometheus for the lab (rampart-lab starts a private instance that scrapes
# rampartd, its fleet endpoint and every agent) and promtool, which the
# alert-rule unit tests in deploy/prometheus run. The system service is
# never started: the lab runs its own. Idempotent and silent when present.
set -euo pipefail

packages=(prometheus)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package's scripts must not start a system Prometheus on :9090.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
