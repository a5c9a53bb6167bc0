#!/usr/bin/env bash
# Cost of the security pipeline on the message path: the same flood against Rampart with
# threat defense and the compliance archive on (the defaults), each alone, and both off,
# back to back in one run. Prints msg/s and server CPU µs per message for each.
# Usage: bench/pipeline.sh   (release build; DURATION, PAIRS, WINDOW override)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

DURATION=${DURATION:-10}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-64}
cargo build -q --release -p rampart -p rampart-load
RAMPART=target/release/rampart
LOAD=target/release/rampart-load

work=$(mktemp -d /tmp/rampart-pipeline.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
domain=example.test
make_cert "$work/tls" "$domain"

declare -A extra=(
  [both_on]=""
  [guard_only]=$'[archive]\nenabled = false'
  [archive_only]=$'[guard]\nenabled = false'
  [both_off]=$'[guard]\nenabled = false\n[archive]\nenabled = false'
)
printf '%-13s %12s %14s %10s\n' variant "msg/s" "server µs/msg" "p99 ms"
for v in both_off guard_only archive_only both_on; do
  dir="$work/$v"
  port=$(free_port); tlsport=$(free_port)
  rampart_config "$dir" "$domain" "$port" "$tlsport" "$work/tls" "${extra[$v]}"
  rampart_users "$RAMPART" "$dir/rampart.toml" "$domain" $((PAIRS * 2))
  "$RAMPART" --config "$dir/rampart.toml" serve 2>"$dir/server.log" &
  pid=$!
  wait_port "$port" 30
  "$LOAD" --server "127.0.0.1:$port" --domain "$domain" --ca "$work/tls/$domain.crt" \
    --users $((PAIRS * 2)) --server-pid "$pid" --label "$v" --json \
    flood --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" --warmup 2 --drain 5 > "$dir/out.json"
  python3 - "$v" "$dir/out.json" <<'PY'
import json, sys
v, path = sys.argv[1], sys.argv[2]
d = json.loads(open(path).read().strip().splitlines()[-1])
lat = d.get("latency") or {}
cpu = d.get("server_cpu_us_per_msg")
print(f"{v:<13} {d['msgs_per_s']:>12.0f} {cpu if cpu is not None else float('nan'):>14.1f} "
      f"{lat.get('p99_us', float('nan')) / 1000:>10.1f}  (missing {d.get('missing', 0)})")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
