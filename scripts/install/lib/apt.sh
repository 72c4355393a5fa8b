# Sourced by the install steps (not a step itself: ./x runs only
# scripts/install/*.sh). `apt_install_missing PKG...` installs the Debian
# packages that are not installed yet, quietly, and sets APT_INSTALLED=1
# when it installed any. With `--no-service-start` first, package scripts
# may not start system services (a temporary policy-rc.d): the tests run
# their own private servers and need the well-known ports free.
apt_install_missing() {
    local no_start=0 p
    if [ "${1:-}" = --no-service-start ]; then
        no_start=1
        shift
    fi
    local missing=()
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$p")
        fi
    done
    APT_INSTALLED=0
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d
    if ((no_start)) && [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    APT_INSTALLED=1
}
