#!/usr/bin/env bash
# A libFuzzer campaign over Rampart's cargo-fuzz targets (fuzz/, outside the
# workspace): builds every target, runs each one in turn for N seconds with a
# single job (the machine is shared: never two fuzzers at once), minimises
# what was found together with the kept corpus (libFuzzer merge, as
# `cargo fuzz cmin` does) into
# fuzz/corpus/<target>/, and prints execs/s, coverage and crashes per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 300, all)
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_NO_CMIN=1  run only; leave fuzz/corpus/ untouched
#   FUZZ_PREBUILT=fuzz/target/campaign/<stamp>  reuse that campaign's binaries
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module);
# only the stable toolchain is installed, so it runs with RUSTC_BOOTSTRAP=1.
# Targets are built with debug assertions (-a): an integer overflow or a
# failed debug_assert! counts as a crash, as it does in the test suite.
#
# Each target is built once (`cargo fuzz build`) and that binary is copied
# into the campaign directory and run from there, for the fuzzing and for
# the minimisation (libFuzzer `-merge=1`, exactly what `cargo fuzz cmin`
# runs): `cargo fuzz run/cmin` rebuild first, and with the controller under
# constant edit that meant ten more minutes of sanitizer build per step for
# spec_parse, and fuzzing a different build than the one reported.
#
# A libFuzzer dictionary fuzz/dict/<t>.dict (protocol tokens, spec keys) is
# used when present.
#
# Inputs: fuzz/seeds/<t>/ (hand-written, readable names), fuzz/corpus/<t>/
# (minimised, SHA-1 names) and fuzz/regressions/<t>/ (inputs that once
# crashed). The first two and the last are all replayed by the normal test
# suite. Work files, logs and crash artifacts stay under
# fuzz/target/campaign/<UTC stamp>/ (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="${ROOT}/fuzz"
SECS="${1:-300}"
if (($# > 0)); then shift; fi
if ! [[ "${SECS}" =~ ^[0-9]+$ ]] || ((SECS == 0)); then
    echo "fuzz.sh: SECONDS_PER_TARGET must be a positive integer, got '${SECS}'" >&2
    exit 2
fi
SAN="${FUZZ_SANITIZER:-address}"
case "${SAN}" in
    address | none) ;;
    *) echo "fuzz.sh: FUZZ_SANITIZER must be address or none, got '${SAN}'" >&2; exit 2 ;;
esac

export RUSTC_BOOTSTRAP=1
export PATH="${ROOT}/tools/bin:${PATH}"
bash "${ROOT}/scripts/install/fuzz.sh"
cd "${FUZZ}"

if (($# > 0)); then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

BUILD=(--fuzz-dir "${FUZZ}" -s "${SAN}" -a)
# -timeout: an input taking over 10 s is a hang, reported like a crash.
LIBFUZZER=(-timeout=10 -rss_limit_mb=2048)
CAMPAIGN="${FUZZ}/target/campaign/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "${CAMPAIGN}"
SUMMARY="${CAMPAIGN}/summary.txt"

# spec_parse links the whole controller (feature `spec`, on by default); the
# NETCONF targets include their few source files by path and build in
# seconds without it.
features() { if [[ "$1" == spec_parse ]]; then echo --features=spec; else echo --no-default-features; fi; }

mkdir -p "${CAMPAIGN}/bin"
if [[ -n "${FUZZ_PREBUILT:-}" ]]; then
    # Reuse the binaries of an earlier campaign (same sanitizer assumed).
    echo "fuzz.sh: reusing the binaries of ${FUZZ_PREBUILT}" >&2
    for t in "${TARGETS[@]}"; do cp "${FUZZ_PREBUILT}/bin/${t}" "${CAMPAIGN}/bin/${t}"; done
    cp "${FUZZ_PREBUILT}/commit" "${CAMPAIGN}/commit"
else
    echo "fuzz.sh: building ${TARGETS[*]} (sanitizer ${SAN}, debug assertions)" >&2
    for t in "${TARGETS[@]}"; do
        # shellcheck disable=SC2046 # features() prints one word
        cargo fuzz build "${BUILD[@]}" $(features "${t}") "${t}" >>"${CAMPAIGN}/build.log" 2>&1 ||
            { tail -n 30 "${CAMPAIGN}/build.log" >&2; exit 1; }
        cp "${FUZZ}/target/x86_64-unknown-linux-gnu/release/${t}" "${CAMPAIGN}/bin/${t}"
    done
    git -C "${ROOT}" rev-parse HEAD >"${CAMPAIGN}/commit"
    git -C "${ROOT}" status --short -- controller/src fuzz >>"${CAMPAIGN}/commit"
fi
# What `cargo fuzz run` sets for address-sanitized targets, plus the
# suppression of a one-off leak in a dependency (see fuzz/lsan.supp).
if [[ "${SAN}" == address ]]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+${ASAN_OPTIONS}:}detect_odr_violation=0"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+${LSAN_OPTIONS}:}suppressions=${FUZZ}/lsan.supp"
fi

count() { if [[ -d "$1" ]]; then find "$1" -maxdepth 1 -type f | wc -l; else echo 0; fi; }
bytes() { if [[ -d "$1" ]]; then find "$1" -maxdepth 1 -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; else echo 0; fi; }
copy_in() { if [[ -d "$1" ]]; then find "$1" -maxdepth 1 -type f -exec cp -t "$2" {} +; fi; }
stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

printf '%-11s %8s %11s %7s %6s %7s %-17s %-17s %s\n' target seconds execs exec/s cov ft \
    "corpus before" "corpus after" crashes | tee "${SUMMARY}"
FOUND=0
for t in "${TARGETS[@]}"; do
    work="${CAMPAIGN}/${t}"
    mkdir -p "${work}/corpus" "${work}/artifacts"
    copy_in "${FUZZ}/corpus/${t}" "${work}/corpus"
    copy_in "${FUZZ}/seeds/${t}" "${work}/corpus"
    copy_in "${FUZZ}/regressions/${t}" "${work}/corpus"
    before="$(count "${FUZZ}/corpus/${t}") files/$(bytes "${FUZZ}/corpus/${t}")B"

    echo "fuzz.sh: ${t}: fuzzing for ${SECS} s (log: ${work}/fuzz-0.log)" >&2
    # -jobs=1 runs the fuzzer as one child whose output goes to fuzz-0.log in
    # the working directory; a crash ends the job and leaves an artifact.
    dict=()
    if [[ -f "${FUZZ}/dict/${t}.dict" ]]; then dict=(-dict="${FUZZ}/dict/${t}.dict"); fi
    (cd "${work}" && "${CAMPAIGN}/bin/${t}" "${LIBFUZZER[@]}" "${dict[@]}" \
        -max_total_time="${SECS}" -jobs=1 -workers=1 -print_final_stats=1 \
        -artifact_prefix="${work}/artifacts/" "${work}/corpus") \
        >"${work}/run.log" 2>&1 || true
    log="${work}/fuzz-0.log"
    [[ -f "${log}" ]] || log="${work}/run.log"

    execs="$(stat_of number_of_executed_units "${log}")"
    rate="$(stat_of average_exec_per_sec "${log}")"
    cov="$(grep -o 'cov: [0-9]*' "${log}" | tail -n 1 | cut -d' ' -f2)"
    ft="$(grep -o 'ft: [0-9]*' "${log}" | tail -n 1 | cut -d' ' -f2)"
    crashes="$(count "${work}/artifacts")"
    FOUND=$((FOUND + crashes))

    after="(not minimised)"
    if [[ "${FUZZ_NO_CMIN:-0}" != 1 ]]; then
        stage="${work}/min"
        mkdir -p "${stage}"
        if "${CAMPAIGN}/bin/${t}" "${LIBFUZZER[@]}" -artifact_prefix="${work}/merge-" \
            -merge=1 "${stage}" "${work}/corpus" \
            >"${work}/cmin.log" 2>&1; then
            # Seeds and regressions are kept in their own directories under
            # readable names; the corpus holds only what they do not cover.
            for keep in "${FUZZ}/seeds/${t}" "${FUZZ}/regressions/${t}"; do
                [[ -d "${keep}" ]] || continue
                find "${keep}" -maxdepth 1 -type f -exec sha1sum {} + |
                    while read -r sum _; do rm -f "${stage}/${sum}"; done
            done
            mkdir -p "${FUZZ}/corpus/${t}"
            find "${FUZZ}/corpus/${t}" -maxdepth 1 -type f -delete
            copy_in "${stage}" "${FUZZ}/corpus/${t}"
            after="$(count "${FUZZ}/corpus/${t}") files/$(bytes "${FUZZ}/corpus/${t}")B"
        else
            after="(cmin failed: ${work}/cmin.log)"
        fi
    fi

    printf '%-11s %8s %11s %7s %6s %7s %-17s %-17s %s\n' "${t}" "${SECS}" "${execs:-?}" \
        "${rate:-?}" "${cov:-?}" "${ft:-?}" "${before}" "${after}" "${crashes}" | tee -a "${SUMMARY}"
    if ((crashes > 0)); then
        find "${work}/artifacts" -maxdepth 1 -type f | sed 's/^/    artifact: /' | tee -a "${SUMMARY}"
    fi
done

echo "fuzz.sh: summary in ${SUMMARY}" >&2
if ((FOUND > 0)); then
    echo "fuzz.sh: ${FOUND} crash/timeout artifact(s): minimise with" \
        "'RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a <target> <artifact>' and add to fuzz/regressions/<target>/" >&2
    exit 1
fi
