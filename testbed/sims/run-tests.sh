#!/usr/bin/env bash
# The simulator fidelity tests: each simulator driven by the vendor's own
# client (meraki SDK, catalystwan, netmiko) or, for FDM, the documented REST
# flow. Exits non-zero on any failure. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install/python-sims.sh  # quiet and <1 s when the venv is current
if [ "$(id -u)" != 0 ]; then
    echo "WARNING: not root: the ASA simulator tests (sshd, useradd) will SKIP." >&2
fi
exec tools/venv/bin/python -m pytest -q -rs -p no:cacheprovider testbed/sims/tests "$@"
