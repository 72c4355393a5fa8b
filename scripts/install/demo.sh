#!/usr/bin/env bash
# What scripts/demo.sh uses besides the lab's packages (lab.sh, netconfd.sh):
# jq (reads rampartctl's JSON) and curl (traffic and Prometheus scrapes).
# Idempotent and silent when present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

packages=(jq curl)

apt_install_missing "${packages[@]}"
