#!/usr/bin/env bash
# Python venv (tools/venv, git-ignored) for the vendor simulators' fidelity
# tests: the official meraki and catalystwan SDKs, netmiko and pytest, pinned
# in testbed/sims/requirements.txt with every transitive version locked in
# testbed/sims/constraints.txt. Also the Debian packages the simulators use:
# openssh-server (the ASA simulator runs a private sshd), openssl (certificates)
# and python3-venv. Idempotent, and silent when everything is present.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=tools/venv
req=testbed/sims/requirements.txt
con=testbed/sims/constraints.txt
# Debian's interpreter when present, so the venv does not depend on a user's pyenv.
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"

missing=()
for p in openssh-server openssl python3-venv; do
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

want="$("$py" -c 'import sys; print(sys.executable)') $(cat "$req" "$con" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.rampart-sims-stamp"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "installing: python venv for the simulator tests ($venv)"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" -c "$con"
echo "$want" >"$stamp"
