#!/usr/bin/env bash
# scripts/fuzz.sh: runs every cargo-fuzz target of fuzz/ for a bounded time
# and exits non-zero if any of them found a crash (see docs/testing.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS (default 60) is the fuzzing time of each target, build time not
# included; TARGETs default to all of them (decode_frame, rules_engine).
# Installs cargo-fuzz from crates.io when it is missing; needs the nightly
# toolchain (rustup toolchain install nightly).
#
# Environment:
#   FUZZ_SANITIZER  none (default: panics and overflow checks only, ~4x the
#                   executions of address) or address, memory, thread...
#   FUZZ_JOBS       parallel build jobs (default 2)
#
# Each target's corpus grows in fuzz/corpus/TARGET (not committed), started
# from the committed seeds in fuzz/seeds/TARGET; decode_frame's also gets every
# line of tests/golden/*.jsonl and *.frames. A crash leaves its input in
# fuzz/artifacts/TARGET/ and the full log in fuzz/logs/TARGET.log.
set -uo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 64
fi
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_frame rules_engine esl_frame)
sanitizer="${FUZZ_SANITIZER:-none}"
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-2}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is required: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

mkdir -p fuzz/logs
failed=()
summary=()
for target in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
        echo "fuzz.sh: no target $target in fuzz/fuzz_targets" >&2
        exit 64
    fi
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    extra=()
    if [ "$target" = decode_frame ]; then
        # Every golden frame, one file per line, refreshed on each run.
        n=0
        for f in tests/golden/*.jsonl tests/golden/*.frames; do
            while IFS= read -r line || [ -n "$line" ]; do
                [ -n "$line" ] || continue
                n=$((n + 1))
                printf '%s' "$line" > "$corpus/golden-$(basename "$f")-$n"
            done < "$f"
        done
        extra+=(-dict=fuzz/decode_frame.dict)
    fi
    log="fuzz/logs/$target.log"
    echo "== $target: ${seconds}s (sanitizer: $sanitizer)"
    cargo +nightly fuzz run -s "$sanitizer" "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        > "$log" 2>&1
    status=$?
    runs="$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | grep -oE '[0-9]+ runs in [0-9]+' | sed 's/ runs in / execs in /')"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9A-Za-z]+' "$log" | tail -1)"
    if [ $status -ne 0 ]; then
        failed+=("$target")
        summary+=("$target: FAILED (exit $status) after ${runs:-?} s; $cov")
        grep -m1 -A8 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" >&2
        grep -m1 -A2 'Reproduce with' "$log" >&2
        echo "   full log: $log" >&2
    else
        summary+=("$target: ok, ${runs:-?} s; $cov")
    fi
done

echo
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
