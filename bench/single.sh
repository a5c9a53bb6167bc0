#!/usr/bin/env bash
# One workload against one Rampart configuration, for profiling and quick before/after
# checks (the side-by-side figures come from bench/peers.sh and bench/pipeline.sh).
# Usage: bench/single.sh VARIANT [flood|latency|idle|logins]
#   VARIANT: both_on (the defaults) | guard_only | archive_only | both_off
#   DURATION=10 PAIRS=20 WINDOW=64 (flood) RATE=2000 (latency) IDLE=2000 (idle connections)
#   WORKERS=16 (logins: login loops at once)
#   LOAD_ARGS="--no-scram-cache ..." more rampart-load options
#   USERS=PAIRS*2 accounts user1..userN (idle connections share them, distinct resources)
#   PERF=1 records 4 s of `perf record -g` of the server into $WORK/perf.data
#   WORK=/tmp/rampart-single (kept after the run: server.log, perf.data)
#   RAMPART_BIN=path: that server binary instead of building target/release/rampart (A/B runs)
#   DUMP=file (flood, latency): every message's send time and latency, for
#     bench/latency_clusters.py FILE (when in the run the slow ones fell)
# Release build; prints the load generator's report.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

v=${1:?variant: both_on, guard_only, archive_only or both_off}
wl=${2:-flood}
PAIRS=${PAIRS:-20}; DURATION=${DURATION:-10}; WINDOW=${WINDOW:-64}; RATE=${RATE:-2000}
IDLE=${IDLE:-2000}; USERS=${USERS:-$((PAIRS * 2))}
WORK=${WORK:-/tmp/rampart-single}
if [ -z "${RAMPART_BIN:-}" ]; then cargo build -q --release -p rampart -p rampart-load; fi
RAMPART=${RAMPART_BIN:-target/release/rampart}
LOAD=target/release/rampart-load

declare -A extra=(
  [both_on]=""
  [guard_only]=$'[archive]\nenabled = false'
  [archive_only]=$'[guard]\nenabled = false'
  [both_off]=$'[guard]\nenabled = false\n[archive]\nenabled = false'
)
[ -n "${extra[$v]+set}" ] || { echo "unknown variant $v" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"  # the idle workload holds thousands of sockets
rm -rf "$WORK"; mkdir -p "$WORK"
domain=example.test
make_cert "$WORK/tls" "$domain"
port=$(free_port); tlsport=$(free_port)
rampart_config "$WORK" "$domain" "$port" "$tlsport" "$WORK/tls" "${extra[$v]}"
rampart_users "$RAMPART" "$WORK/rampart.toml" "$domain" "$USERS"
"$RAMPART" --config "$WORK/rampart.toml" serve 2>"$WORK/server.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
wait_port "$port" 30
perf_pid=""
if [ "${PERF:-}" = 1 ]; then
  (sleep 4; perf record -F 2000 -g --call-graph dwarf,16384 -p "$pid" -o "$WORK/perf.data" \
     -- sleep 4 >/dev/null 2>&1) &
  perf_pid=$!
fi
case $wl in
  flood) args=(flood --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" --warmup 2 --drain 5
    ${DUMP:+--dump-latencies "$DUMP"}) ;;
  latency) args=(latency --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" --warmup 2
    ${DUMP:+--dump-latencies "$DUMP"}) ;;
  idle) args=(idle --connections "$IDLE" --settle 5 --hold 5 --login-concurrency 16) ;;
  logins) args=(logins --duration "$DURATION" --workers "${WORKERS:-16}") ;;
  *) echo "unknown workload $wl" >&2; exit 2 ;;
esac
"$LOAD" --server "127.0.0.1:$port" --domain "$domain" --ca "$WORK/tls/$domain.crt" \
  --users "$USERS" --server-pid "$pid" --label "$v" ${LOAD_ARGS:-} "${args[@]}"
if [ -n "$perf_pid" ]; then wait "$perf_pid"; fi
