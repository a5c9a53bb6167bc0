#!/usr/bin/env bash
# Side-by-side benchmark: Rampart (release build) against Prosody and ejabberd from Debian,
# same domain, same certificate, same accounts, same workloads, each server restarted fresh
# before each workload. Prints a table with ratios (Rampart vs the better peer) and leaves
# the raw JSON and logs in $BENCH/results. Leaves no process behind.
#
# Usage: bench/peers.sh            (needs root: installs packages, runs peers as their users)
# Knobs (environment):
#   SERVERS="rampart prosody ejabberd"   which servers to run
#   DURATION=15        measured seconds of flood and latency
#   PAIRS=20 WINDOW=64 flood/latency pairs, flood messages in flight per pair
#   RATE=2000          offered msg/s of the latency workload
#   IDLE=2000          idle connections
#   LOGIN_DURATION=10 LOGIN_WORKERS=16
#   USERS=200          accounts user1..userN (idle connections reuse them, distinct resources)
#   WORKLOADS="flood latency idle logins"
#   ROUNDS=1           run every workload on every server this many times, the servers taking
#                      turns within each round (this VM's speed drifts); the table shows
#                      each metric's median over the rounds
#   EJABBERD_MAM=1     also run "ejabberd-mam": ejabberd with its message archive on (mod_mam,
#                      every message, its default Mnesia store), for comparison with Rampart's
#                      archive; shown beside the peers, not counted as one for the targets
#   EJABBERD_MAM=sql   the same with the archive in PostgreSQL (Debian's, on loopback, its
#                      durable defaults; the cluster is started and a scratch database made)
#   RAMPART_VARIANTS="name=/path/snippet.toml ..."  extra Rampart runs with a TOML snippet
#                      appended to its config (start the snippet with a [table] header),
#                      e.g. threat defense or archive on/off; each shows as rampart-NAME.
#   BENCH=/tmp/rampart-bench   working directory (wiped at start)
#   RAMPART_BIN=path   use this Rampart binary instead of building target/release/rampart
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/common.sh

SERVERS=${SERVERS:-"rampart prosody ejabberd"}
DURATION=${DURATION:-15}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-64}
RATE=${RATE:-2000}
IDLE=${IDLE:-2000}
LOGIN_DURATION=${LOGIN_DURATION:-10}
LOGIN_WORKERS=${LOGIN_WORKERS:-16}
USERS=${USERS:-200}
WORKLOADS=${WORKLOADS:-"flood latency idle logins"}
ROUNDS=${ROUNDS:-1}
RAMPART_VARIANTS=${RAMPART_VARIANTS:-}
EJABBERD_MAM=${EJABBERD_MAM:-}
BENCH=${BENCH:-/tmp/rampart-bench}
DOMAIN=example.test
NOFILE=$(ulimit -Hn)  # raising the hard limit needs CAP_SYS_RESOURCE, which containers may lack
P_RAMPART=5522 P_RAMPART_TLS=5523 P_PROSODY=5322 P_EJABBERD=5422

need=()
command -v prosodyctl >/dev/null || need+=(prosody)
command -v ejabberdctl >/dev/null || need+=(ejabberd)
if [ "$EJABBERD_MAM" = sql ]; then
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
  ls -d /usr/lib/erlang/lib/p1_pgsql-* >/dev/null 2>&1 || need+=(erlang-p1-pgsql)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -n "${RAMPART_BIN:-}" ]; then
  cargo build --release -q -p rampart-load
  RAMPART=$RAMPART_BIN
else
  cargo build --release -q -p rampart -p rampart-load
  RAMPART=$ROOT/target/release/rampart
fi
LOAD=$ROOT/target/release/rampart-load

ulimit -n "$NOFILE"
epmd_was_running=no
pgrep -x epmd >/dev/null && epmd_was_running=yes

rm -rf "$BENCH"
mkdir -p "$BENCH/results"
chmod 755 "$BENCH"
make_cert "$BENCH/tls" "$DOMAIN"
chmod 644 "$BENCH/tls/"*
RES=$BENCH/results

# ---- Rampart ---------------------------------------------------------------------------
rampart_pid=""
rampart_setup() { # NAME [SNIPPET]
  local dir=$BENCH/$1 extra=""
  [ -n "${2:-}" ] && extra=$(cat "$2")
  rampart_config "$dir" "$DOMAIN" $P_RAMPART $P_RAMPART_TLS "$BENCH/tls" "$extra"
  rampart_users "$RAMPART" "$dir/rampart.toml" "$DOMAIN" "$USERS"
}
rampart_start() { # NAME
  "$RAMPART" --config "$BENCH/$1/rampart.toml" serve 2>>"$RES/$1.log" &
  rampart_pid=$!
  wait_port $P_RAMPART 30
  SERVER_PID=$rampart_pid PORT=$P_RAMPART
}
rampart_stop() {
  [ -n "$rampart_pid" ] || return 0
  kill "$rampart_pid" 2>/dev/null || true
  wait "$rampart_pid" 2>/dev/null || true
  rampart_pid=""
}

# ---- Prosody ---------------------------------------------------------------------------
PD=$BENCH/prosody
prosody_setup() {
  mkdir -p "$PD/data"
  sed -e "s#/tmp/rampart-peers/prosody#$PD#g" \
      -e 's#modules_disabled = { "s2s"; "offline" }#modules_disabled = { "s2s" } -- offline storage on, as in Rampart and ejabberd#' \
      -e 's#network_settings = { read_timeout = 840 }#network_settings = { read_timeout = 840; nagle = false }#' \
      /work/shared/peers/prosody.cfg.lua > "$PD/prosody.cfg.lua"
  grep -q 'nagle = false' "$PD/prosody.cfg.lua"
  ! grep -q '"offline" }' "$PD/prosody.cfg.lua"
  cp "$BENCH/tls/$DOMAIN.crt" "$BENCH/tls/$DOMAIN.key" "$PD/"
  chown -R prosody:prosody "$PD"
  chmod 600 "$PD/$DOMAIN.key"
}
prosody_pid() { cat "$PD/prosody.pid" 2>/dev/null; }
prosody_start() {
  rm -f "$PD/prosody.pid"
  runuser -u prosody -- sh -c "ulimit -n $NOFILE; exec prosody --config $PD/prosody.cfg.lua -D" >>"$RES/prosody.log" 2>&1
  wait_port $P_PROSODY 30
  local i; for ((i = 0; i < 50; i++)); do [ -s "$PD/prosody.pid" ] && break; sleep 0.1; done
  SERVER_PID=$(prosody_pid) PORT=$P_PROSODY
}
prosody_stop() {
  local pid; pid=$(prosody_pid) || true
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  local i; for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PD/prosody.pid"
}

# ---- ejabberd --------------------------------------------------------------------------
# ejabberd_use NAME: the instance the functions below act on ("ejabberd" or "ejabberd-mam").
ejabberd_use() {
  ED=$BENCH/$1
  NODE=${1//-/}bench@localhost
  EJ="ejabberdctl --config-dir $ED --ctl-config $ED/ejabberdctl.cfg --spool $ED/db --logs $ED/log --node $NODE"
}
ejabberd_use ejabberd
ej() { runuser -u ejabberd -- sh -c "ulimit -n $NOFILE; cd $ED; exec $EJ $*"; }
ejabberd_setup() { # [mam]
  mkdir -p "$ED/db" "$ED/log"
  sed -e "s#/tmp/rampart-peers/ejabberd#$ED#g" /work/shared/peers/ejabberd.yml > "$ED/ejabberd.yml"
  if [ "${1:-}" = mam ]; then
    # XEP-0313 archive of every message, in ejabberd's default store (Mnesia) or PostgreSQL
    sed -i 's/^  mod_last: {}$/  mod_last: {}\n  mod_mam:\n    default: always/' "$ED/ejabberd.yml"
    grep -q '^  mod_mam:' "$ED/ejabberd.yml"
    if [ "$EJABBERD_MAM" = sql ]; then
      pg_setup
      sed -i 's/^    default: always$/    default: always\n    db_type: sql/' "$ED/ejabberd.yml"
      printf 'sql_type: pgsql\nsql_server: "127.0.0.1"\nsql_database: "%s"\nsql_username: "%s"\nsql_password: "%s"\n' \
        "$PG_DB" "$PG_USER" "$PG_PASS" >> "$ED/ejabberd.yml"
    fi
  fi
  cp "$BENCH/tls/$DOMAIN.pem" "$ED/$DOMAIN.pem"
  cat > "$ED/ejabberdctl.cfg" <<CFG
ERLANG_NODE=$NODE
ERL_MAX_PORTS=262144
EJABBERD_PID_PATH=$ED/ejabberd.pid
CFG
  chown -R ejabberd:ejabberd "$ED"
  chmod 600 "$ED/$DOMAIN.pem"
}
# PostgreSQL for EJABBERD_MAM=sql: a scratch database with ejabberd's schema.
PG_DB=ejabberdbench PG_USER=ejabberdbench PG_PASS=bench pg_started=no
pg_setup() {
  local cluster; cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1 " " $2}')
  [ -n "$cluster" ] || { echo "no PostgreSQL cluster (pg_lsclusters)" >&2; exit 1; }
  if ! pg_lsclusters -h | awk 'NR==1 {exit $4 != "online"}'; then
    pg_ctlcluster $cluster start
    pg_started="$cluster"
  fi
  local psql="runuser -u postgres -- psql -q -v ON_ERROR_STOP=1"
  $psql -c "DROP DATABASE IF EXISTS $PG_DB" -c "DROP ROLE IF EXISTS $PG_USER" \
    -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASS'" -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  PGPASSWORD=$PG_PASS psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U $PG_USER -d $PG_DB \
    -f /usr/share/ejabberd/sql/pg.sql >/dev/null
}
ejabberd_pid() { pgrep -f "beam.smp.*-s?name $NODE" | head -1; }
ejabberd_start() {
  ej start >>"$RES/ejabberd.log" 2>&1
  ej started >>"$RES/ejabberd.log" 2>&1
  wait_port $P_EJABBERD 60
  SERVER_PID=$(ejabberd_pid) PORT=$P_EJABBERD
}
ejabberd_stop() {
  [ -n "$(ejabberd_pid)" ] || return 0
  ej stop >>"$RES/ejabberd.log" 2>&1 || true
  ej stopped >>"$RES/ejabberd.log" 2>&1 || true
  local pid; pid=$(ejabberd_pid) || true
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  rampart_stop
  command -v prosody >/dev/null && prosody_stop
  if command -v ejabberdctl >/dev/null; then
    for e in ejabberd ejabberd-mam; do
      ejabberd_use $e
      [ -d "$ED" ] && ejabberd_stop
    done
  fi
  [ "$epmd_was_running" = no ] && epmd -kill >/dev/null 2>&1
  [ "$pg_started" != no ] && pg_ctlcluster $pg_started stop
}
trap cleanup EXIT

# ---- servers: NAME -> kind, setup ----------------------------------------------------
names=()
for s in $SERVERS; do
  case $s in
    rampart) rampart_setup rampart; names+=(rampart) ;;
    prosody) prosody_setup; names+=(prosody) ;;
    ejabberd) ejabberd_use ejabberd; ejabberd_setup; names+=(ejabberd) ;;
    *) echo "unknown server $s" >&2; exit 1 ;;
  esac
done
if [ -n "$EJABBERD_MAM" ]; then
  ejabberd_use ejabberd-mam; ejabberd_setup mam; names+=(ejabberd-mam)
fi
for v in $RAMPART_VARIANTS; do
  rampart_setup "rampart-${v%%=*}" "${v#*=}"
  names+=("rampart-${v%%=*}")
done

start() { case $1 in rampart*) rampart_start "$1" ;; ejabberd*) ejabberd_use "$1"; ejabberd_start ;; *) "${1}_start" ;; esac; }
stop() { case $1 in rampart*) rampart_stop ;; ejabberd*) ejabberd_use "$1"; ejabberd_stop ;; *) "${1}_stop" ;; esac; }

load() { # NAME WORKLOAD ARGS...  (results in $RES/NAME-WORKLOAD.rROUND.json)
  local name=$1 w=$2; shift 2
  local out="$RES/$name-$w.r$round.json"
  echo "--- $name: $w (round $round of $ROUNDS)" >&2
  "$LOAD" --server "127.0.0.1:$PORT" --domain $DOMAIN --ca "$BENCH/tls/$DOMAIN.crt" \
    --users "$USERS" --server-pid "$SERVER_PID" --label "$name" --json "$w" "$@" \
    > "$out" 2>>"$RES/$name-load.log" || true
  # The same report in text form, from the JSON, for the log.
  cat "$out" >&2
}

# Accounts on the peers: in-band registration (both allow it from loopback).
for name in "${names[@]}"; do
  case $name in
    prosody|ejabberd*)
      start "$name"
      "$LOAD" --server "127.0.0.1:$PORT" --domain $DOMAIN --ca "$BENCH/tls/$DOMAIN.crt" \
        --users "$USERS" --login-concurrency 4 register
      stop "$name" ;;
  esac
done

for ((round = 1; round <= ROUNDS; round++)); do
for w in $WORKLOADS; do
  for name in "${names[@]}"; do
    start "$name"
    sleep 1
    case $w in
      flood) load "$name" flood --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" --warmup 2 ;;
      latency) load "$name" latency --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" --warmup 2 ;;
      idle) load "$name" idle --connections "$IDLE" --settle 5 --hold 5 --login-concurrency 16 ;;
      logins) load "$name" logins --duration "$LOGIN_DURATION" --workers "$LOGIN_WORKERS" ;;
      *) echo "unknown workload $w" >&2; exit 1 ;;
    esac
    stop "$name"
  done
done
done

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "versions: rampart $RAMPART ($(git -C "$ROOT" rev-parse --short HEAD) checked out), $(prosodyctl about 2>/dev/null | grep -m1 -i '^prosody' || echo prosody), ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null)"
  echo "settings: ROUNDS=$ROUNDS (medians) DURATION=$DURATION PAIRS=$PAIRS WINDOW=$WINDOW RATE=$RATE IDLE=$IDLE LOGIN_WORKERS=$LOGIN_WORKERS USERS=$USERS"
  python3 "$ROOT/bench/table.py" "$RES" "${names[@]}"
} | tee "$RES/table.md"
