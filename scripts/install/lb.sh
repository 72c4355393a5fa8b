#!/usr/bin/env bash
# Tools the load-balancer tests and lb-bench call: ping (priming neighbour
# entries from the LB namespace), sysctl (DSR backend settings), ethtool
# (checksum offload off in the DNAT test, so receiving stacks verify the
# rewritten checksums). iproute2,
# nftables, iptables and netsniff-ng (trafgen) come from 00-base.sh.
# Idempotent and silent when everything is present.
set -euo pipefail

need=()
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
