#!/usr/bin/env bash
# The simulator fidelity tests: each simulator driven by the vendor's own
# client (meraki SDK, catalystwan, netmiko) or, for FDM, the documented REST
# flow. Exits non-zero on any failure. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x tools/venv/bin/python ]; then
    scripts/install/python-sims.sh
fi
if [ "$(id -u)" != 0 ]; then
    echo "WARNING: not root: the ASA simulator tests (sshd, useradd) will SKIP." >&2
fi
exec tools/venv/bin/python -m pytest -q -rs -p no:cacheprovider testbed/sims/tests "$@"
