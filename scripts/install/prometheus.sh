#!/usr/bin/env bash
# Prometheus for the lab (rampart-lab starts a private instance that scrapes
# rampartd, its fleet endpoint and every agent) and promtool, which the
# alert-rule unit tests in deploy/prometheus run. The system service is
# never started: the lab runs its own. Idempotent and silent when present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(prometheus)

apt_install_missing --no-service-start "${packages[@]}"
