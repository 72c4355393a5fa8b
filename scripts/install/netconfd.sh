#!/usr/bin/env bash
# The real NETCONF peer the controller's tests and benchmark run against:
# Debian's yuma123 netconfd behind OpenSSH (the harness in
# controller/tests/support/netconfd.rs starts private instances; the system
# services are never enabled). Also ssh-keygen, unshare and setpriv, which
# the harness uses. Do NOT add netconfd-module-ietf-interfaces/-ietf-system:
# their plugin runs ifconfig on the host and crashes the server.
# Idempotent and silent when everything is present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(netconfd openssh-server openssh-client util-linux)

apt_install_missing --no-service-start "${packages[@]}"
