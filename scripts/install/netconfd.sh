#!/usr/bin/env bash
# The real NETCONF peer the controller's tests and benchmark run against:
# Debian's yuma123 netconfd behind OpenSSH (the harness in
# controller/tests/support/netconfd.rs starts private instances; the system
# services are never enabled). Also ssh-keygen, unshare and setpriv, which
# the harness uses. Do NOT add netconfd-module-ietf-interfaces/-ietf-system:
# their plugin runs ifconfig on the host and crashes the server.
# Idempotent and silent when everything is present.
set -euo pipefail

packages=(netconfd openssh-server openssh-client util-linux)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package scripts must not start a system sshd/netconfd on port 22/830.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
