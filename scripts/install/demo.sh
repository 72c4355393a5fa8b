#!/usr/bin/env bash
# What scripts/demo.sh uses besides the lab's packages (lab.sh, netconfd.sh):
# jq (reads rampartctl's JSON) and curl (traffic and Prometheus scrapes).
# Idempotent and silent when present.
set -euo pipefail

packages=(jq curl)

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
