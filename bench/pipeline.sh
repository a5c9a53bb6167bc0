#!/usr/bin/env bash
# Cost of the security pipeline on the message path: the same flood against Rampart with
# threat defense and the compliance archive on (the defaults), each alone, and both off,
# back to back in one run. Prints msg/s and server CPU µs per message for each.
# The variants run interleaved REPS times (a shared VM's speed drifts over minutes; one run
# of each, one after the other, can differ by 20% for no reason of ours), and the summary
# gives each variant's median and its cost against "both_off".
# Usage: bench/pipeline.sh   (release build; DURATION, PAIRS, WINDOW, REPS, VARIANTS override;
#        e.g. VARIANTS="both_off guard_only" REPS=6 for the guard's cost alone)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

DURATION=${DURATION:-10}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-64}
REPS=${REPS:-3}
VARIANTS=${VARIANTS:-both_off guard_only archive_only both_on}
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
printf '%-13s %4s %12s %14s %10s\n' variant rep "msg/s" "server µs/msg" "p99 ms"
for rep in $(seq 1 "$REPS"); do
for v in $VARIANTS; do
  dir="$work/$v.$rep"
  port=$(free_port); tlsport=$(free_port)
  rampart_config "$dir" "$domain" "$port" "$tlsport" "$work/tls" "${extra[$v]}"
  rampart_users "$RAMPART" "$dir/rampart.toml" "$domain" $((PAIRS * 2))
  "$RAMPART" --config "$dir/rampart.toml" serve 2>"$dir/server.log" &
  pid=$!
  wait_port "$port" 30
  "$LOAD" --server "127.0.0.1:$port" --domain "$domain" --ca "$work/tls/$domain.crt" \
    --users $((PAIRS * 2)) --server-pid "$pid" --label "$v" --json \
    flood --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" --warmup 2 --drain 5 > "$dir/out.json"
  tail -n 1 "$dir/out.json" >> "$work/$v.jsonl"
  python3 - "$v" "$rep" "$dir/out.json" <<'PY'
import json, sys
v, rep, path = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.loads(open(path).read().strip().splitlines()[-1])
lat = d.get("latency") or {}
cpu = d.get("server_cpu_us_per_msg")
print(f"{v:<13} {rep:>4} {d['msgs_per_s']:>12.0f} {cpu if cpu is not None else float('nan'):>14.1f} "
      f"{lat.get('p99_us', float('nan')) / 1000:>10.1f}  (missing {d.get('missing', 0)})")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$dir/data"
done
done
python3 - "$work" $VARIANTS <<'PY'
import json, statistics, sys
work, variants = sys.argv[1], sys.argv[2:]
med = {}
print(f"\nmedians of the runs above, and each variant's cost against both_off")
print(f"{'variant':<13} {'msg/s':>12} {'server µs/msg':>14} {'throughput cost':>16}")
for v in variants:
    runs = [json.loads(l) for l in open(f"{work}/{v}.jsonl") if l.strip()]
    rate = statistics.median(r["msgs_per_s"] for r in runs)
    cpu = statistics.median(r.get("server_cpu_us_per_msg") or float("nan") for r in runs)
    med[v] = rate
    cost = f"{1 - rate / med['both_off']:.0%}" if "both_off" in med else "-"
    print(f"{v:<13} {rate:>12.0f} {cpu:>14.1f} {cost:>16}")
PY
