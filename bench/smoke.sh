#!/usr/bin/env bash
# Smoke run of the load generator against Rampart alone: a handful of connections, a few
# hundred messages, every workload once, --strict (any error fails). Finishes in well under a
# minute once built. Usage: bench/smoke.sh [--release]   (debug build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

profile=debug
flag=()
[ "${1:-}" = "--release" ] && { profile=release; flag=(--release); }
cargo build -q "${flag[@]}" -p rampart -p rampart-load
RAMPART=target/$profile/rampart
LOAD=target/$profile/rampart-load

work=$(mktemp -d /tmp/rampart-smoke.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

domain=example.test
port=$(free_port)
tlsport=$(free_port)
make_cert "$work/tls" "$domain"
rampart_config "$work" "$domain" "$port" "$tlsport" "$work/tls"
rampart_users "$RAMPART" "$work/rampart.toml" "$domain" 8

"$RAMPART" --config "$work/rampart.toml" serve 2>"$work/server.log" &
pid=$!
wait_port "$port" 30

common=(--domain "$domain" --ca "$work/tls/$domain.crt"
        --users 8 --server-pid "$pid" --label smoke --strict --timeout 10)
run() { echo "+ rampart-load $*"; "$LOAD" "${common[@]}" "$@"; echo; }
starttls=(--server "127.0.0.1:$port")

run "${starttls[@]}" flood --pairs 2 --duration 1 --warmup 0.5 --drain 3 --window 16
run "${starttls[@]}" latency --pairs 2 --rate 200 --duration 2 --warmup 0.5 --drain 3
run "${starttls[@]}" idle --connections 20 --settle 0.5 --hold 0.5
run "${starttls[@]}" logins --duration 2 --workers 2
# Direct TLS and each mechanism once.
run --direct-tls --server "127.0.0.1:$tlsport" logins --duration 1 --workers 1
for m in SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS SCRAM-SHA-1 PLAIN; do
  run "${starttls[@]}" --mechanism "$m" --json logins --duration 0.5 --workers 1
done
echo "smoke: ok"
