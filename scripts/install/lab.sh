#!/usr/bin/env bash
# What rampart-lab (testbed/lab) needs besides netconfd.sh's packages:
# ip (iproute2), nsenter/unshare/setpriv (util-linux), openssl (password
# hashes, simulator certificates), python3 (the vendor simulators), sysctl
# (procps, used by topology exec lines). Idempotent and silent when present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(iproute2 util-linux openssl python3 procps)

apt_install_missing "${packages[@]}"
