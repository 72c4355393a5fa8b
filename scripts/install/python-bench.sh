#!/usr/bin/env bash
# Python venv (tools/venv-netconf, git-ignored) with ncclient 0.6.13, the
# baseline the NETCONF benchmark (controller/examples/netconf_bench.rs)
# runs side by side with the Rust client. Pinned in
# bench/netconf/requirements.txt. Idempotent, and silent when present.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=tools/venv-netconf
req=bench/netconf/requirements.txt
stamp="$venv/.requirements"
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"

if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "ok installed"; then
    echo "installing: python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ -f "$stamp" ] && cmp -s "$stamp" "$req"; then
    exit 0
fi
echo "installing: ncclient venv ($venv)"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
