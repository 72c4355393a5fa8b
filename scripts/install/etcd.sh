#!/usr/bin/env bash
# Debian's etcd: the distributed store rampartd can run on ([store] backend
# = "etcd"). The conformance suite (controller/tests/store_conformance.rs)
# starts private 3-member clusters on loopback ports from the binaries; the
# system etcd service is never started (policy-rc.d) nor enabled.
# Idempotent and silent when everything is present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(etcd-server etcd-client)

apt_install_missing --no-service-start "${packages[@]}"
if ((APT_INSTALLED)); then
    # Debian enables the unit; rampart's tests never use it.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
