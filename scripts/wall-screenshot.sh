#!/usr/bin/env bash
# Writes docs/wall.png, the README's picture of the wallboard: runs
# `ringwatch demo` (a simulated call center on the wall clock), waits for
# calls to come in, and has headless Chromium take a 1600x900 screenshot of
# /wall. Needs the Debian package chromium.
#
# Usage: scripts/wall-screenshot.sh [OUT.png]   (default docs/wall.png)
# Environment: WAIT (seconds of demo traffic before the picture, default 90),
#              THEME (dark or light, default dark).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/wall.png}"
wait_s="${WAIT:-90}"
theme="${THEME:-dark}"
command -v chromium >/dev/null || { echo "chromium is missing (Debian package chromium)" >&2; exit 1; }

cargo build --quiet --bin ringwatch
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
RINGWATCH__HTTP__LISTEN="127.0.0.1:${port}" RINGWATCH__INGEST__LISTEN="127.0.0.1:0" \
  target/debug/ringwatch demo --duration $((wait_s + 60)) --seed 7 >"$log" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
head -1 "$log"
echo "letting the demo run for ${wait_s} s ..."
sleep "$wait_s"

profile="$(mktemp -d)"
# ?once=1: the page reads the figures once instead of streaming them (a
# stream never finishes loading, and --screenshot waits for the load).
timeout 120 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1600,900 --virtual-time-budget=4000 \
  --screenshot="$out" "http://127.0.0.1:${port}/wall?theme=${theme}&once=1" >/dev/null 2>&1
rm -rf "$profile"
echo "wrote $out"
