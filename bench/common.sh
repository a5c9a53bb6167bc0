# Shared helpers for bench/smoke.sh and bench/peers.sh (sourced, not run).
# Starting and stopping a Rampart instance, creating its accounts, waiting for ports.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT [SECONDS]: until something listens on 127.0.0.1:PORT.
wait_port() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$port after ${secs}s" >&2
  return 1
}

# A self-signed certificate for DOMAIN usable as a trust anchor by rustls/webpki
# (end-entity: CA:FALSE, SAN, serverAuth): writes DIR/DOMAIN.{crt,key,pem}.
make_cert() {
  local dir=$1 domain=$2
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$domain" \
    -addext "subjectAltName=DNS:$domain,DNS:*.$domain" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/$domain.key" -out "$dir/$domain.crt" 2>/dev/null
  cat "$dir/$domain.crt" "$dir/$domain.key" > "$dir/$domain.pem"
}

# rampart_config DIR DOMAIN PORT TLSPORT CERTDIR [EXTRA_TOML]: write DIR/rampart.toml.
rampart_config() {
  local dir=$1 domain=$2 port=$3 tlsport=$4 certdir=$5 extra=${6:-}
  mkdir -p "$dir/data"
  cat > "$dir/rampart.toml" <<TOML
domain = "$domain"
data_dir = "$dir/data"
[listen]
c2s = "127.0.0.1:$port"
c2s_tls = "127.0.0.1:$tlsport"
[limits]
max_connections_per_ip = 1000000
auth_failures = 1000000
[tls]
cert = "$certdir/$domain.crt"
key = "$certdir/$domain.key"
$extra
TOML
}

# rampart_users BIN CONFIG DOMAIN N: create user1..userN (one process each: slow, ~tens of ms).
rampart_users() {
  local bin=$1 cfg=$2 domain=$3 n=$4 i
  for ((i = 1; i <= n; i++)); do
    "$bin" --config "$cfg" user add "user$i@$domain" --password password >/dev/null 2>&1 || true
  done
  local have
  have=$("$bin" --config "$cfg" user list 2>/dev/null | grep -c "^user") || true
  [ "${have:-0}" -ge "$n" ] || { echo "only ${have:-0} of $n accounts exist" >&2; return 1; }
}
