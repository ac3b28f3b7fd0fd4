#!/usr/bin/env bash
# scripts/faketime-tests.sh: runs the test binaries with the wall clock moved
# ahead by libfaketime, to show that no test depends on today's date (see
# "Tests on any day" in docs/testing.md).
#
#   scripts/faketime-tests.sh [OFFSET...]
#
# OFFSETs are libfaketime's relative offsets (default: +365d +3650d). Each
# test binary runs once per offset under `faketime -f OFFSET`; LD_PRELOAD and
# FAKETIME* are inherited by the daemons the tests spawn (tests/common keeps
# them in the otherwise empty environment it gives ringwatch).
#
# Prometheus and Alertmanager are Go programs: libfaketime does not reach
# them, so they live in today's time while ringwatch lives in the faked one.
# The test that hands Alertmanager alerts stamped by ringwatch's clock is
# skipped (an alert resolved with an endsAt a year ahead of Alertmanager's
# clock stays active there); promtool's checks and unit tests do not read the
# clock, and the Prometheus end-to-end tests run ringwatch on the event
# clock, so they stay.
#
# Needs faketime (Debian package faketime). Exits 1 if any binary failed.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

if ! command -v faketime >/dev/null 2>&1; then
    echo "faketime-tests.sh: faketime is required (apt-get install faketime)" >&2
    exit 2
fi
offsets=("$@")
[ ${#offsets[@]} -gt 0 ] || offsets=(+365d +3650d)

# Tests that need a Go server to agree with ringwatch's wall clock.
skips=(--skip hold_past_the_limit_reaches_alertmanager_and_resolves)

bins=()
while IFS= read -r line; do
    bins+=("$line")
done < <(cargo test --tests --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"] + " " + m["executable"])
')
if [ ${#bins[@]} -eq 0 ]; then
    echo "faketime-tests.sh: no test binary built (cargo test --no-run failed?)" >&2
    exit 2
fi

failed=()
for offset in "${offsets[@]}"; do
    echo "== faketime -f '$offset': $(faketime -f "$offset" date -u +%FT%TZ)"
    for entry in "${bins[@]}"; do
        name="${entry%% *}"
        bin="${entry#* }"
        log="$(mktemp)"
        faketime -f "$offset" "$bin" "${skips[@]}" >"$log" 2>&1
        rc=$?
        result="$(grep '^test result:' "$log" | tail -1)"
        echo "$name: ${result:-no result line} (exit $rc)"
        if [ $rc -ne 0 ]; then
            failed+=("$offset $name")
            grep -E '^    [A-Za-z0-9_:]+$|panicked at' "$log" | sed 's/^/    /' | head -20
        fi
        rm -f "$log"
    done
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "faketime-tests.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "faketime-tests.sh: every test binary passed at ${offsets[*]}"
