#!/usr/bin/env bash
# deploy.sh TOPOLOGY DEPLOY_PEER [check|bench]
#
# Stands up one deployment topology on 127.0.0.1 from the configurations
# beside this script, on ports the kernel picks, and runs deploy_peer's
# cases through it (check, the default) or measures its throughput next to
# the direct connection (bench).  Every process it starts is stopped again
# when it exits, however it exits.
#
#   mqtt_bridge   three mosquitto brokers: a hub and two leaves bridged to it
#   haproxy_tcp   haproxy in TCP mode in front of two libnq TCP servers
#   haproxy_tls   the same, with TLS passing through to the servers
#   nginx_grpc    nginx (grpc_pass, routing by nq-id) in front of two libnq
#                 gRPC servers, h2c on both legs
#   nginx_grpcs   the same with TLS terminated at nginx and opened again to
#                 the servers
#   nginx_grpc_idle  nginx_grpc ending streams idle for 3 s: libnq's stay
#
# A missing broker or proxy is a failure, not a skip: tools/install-deps.sh
# installs them.  bench takes NQ_DEPLOY_BENCH, a list of COUNTxSIZE
# (default "200000x1024 5000x65536"), and NQ_DEPLOY_RUNS (default 5).
set -euo pipefail

topology=$1
peer=$2
mode=${3:-check}
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

work=$(mktemp -d /tmp/nqdeployXXXXXX)
# The brokers and nginx's workers may run as users of their own.
chmod 755 "$work"
pids=()
certs=

stop() { # pid
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    # Its own children (nginx's workers) first, so none is left behind.
    pkill -KILL -P "$1" 2>/dev/null || true
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    stop "$pid"
  done
  [ -z "$certs" ] || rm -rf "$certs"
  rm -rf "$work"
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap too.
trap 'exit 143' TERM
trap 'exit 130' INT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f")" >&2
    tail -n 40 "$f" >&2
  done
  exit 1
}

need() { # program
  command -v "$1" >/dev/null || fail "$1 is not installed (tools/install-deps.sh installs it)"
}

# render TEMPLATE OUT KEY=VALUE...: the template with every @KEY@ replaced.
render() {
  local template=$1 out=$2
  shift 2
  local args=()
  for kv in "$@"; do
    args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  sed "${args[@]}" "$here/$template" >"$out"
  chmod 644 "$out"
  ! grep -q '@[A-Z_0-9]*@' "$out" || fail "$template: a placeholder is left in $out"
}

# start NAME COMMAND...: runs COMMAND in the background, its output in
# NAME.log, and remembers it for cleanup.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

wait_port() { # port
  local pid=${pids[${#pids[@]}-1]}
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "the process for port $1 exited"
    sleep 0.1
  done
  fail "nothing listens on port $1"
}

free_ports() { # n: sets the array ports
  mapfile -t ports < <("$peer" ports "$1")
  [ "${#ports[@]}" -eq "$1" ] || fail "no free ports"
}

make_certs() {
  certs=$("$peer" certs) || fail "cannot make the certificates"
}

# probe FROM TO TOPIC: a message published on broker FROM reaches a
# subscriber on broker TO.
probe() {
  for _ in $(seq 30); do
    mosquitto_sub -h 127.0.0.1 -p "$2" -t "$3" -C 1 -W 2 >"$work/probe" 2>/dev/null &
    local sub=$!
    sleep 0.2
    mosquitto_pub -h 127.0.0.1 -p "$1" -t "$3" -q 1 -m ready 2>/dev/null || true
    if wait "$sub" && [ "$(cat "$work/probe")" = ready ]; then
      return 0
    fi
  done
  fail "the bridge does not carry $3 from port $1 to port $2"
}

start_mqtt_bridge() {
  need mosquitto
  need mosquitto_sub
  need mosquitto_pub
  free_ports 3
  hub=${ports[0]}
  leaf1=${ports[1]}
  leaf2=${ports[2]}
  render mosquitto-hub.conf "$work/hub.conf" PORT="$hub"
  render mosquitto-leaf.conf "$work/leaf1.conf" PORT="$leaf1" NAME=leaf1 HUB_PORT="$hub"
  render mosquitto-leaf.conf "$work/leaf2.conf" PORT="$leaf2" NAME=leaf2 HUB_PORT="$hub"
  start hub mosquitto -c "$work/hub.conf"
  wait_port "$hub"
  start leaf1 mosquitto -c "$work/leaf1.conf"
  wait_port "$leaf1"
  start leaf2 mosquitto -c "$work/leaf2.conf"
  wait_port "$leaf2"
  # The bridges connect in the background: wait until both carry messages
  # each way, and from leaf to leaf through the hub.
  probe "$leaf1" "$hub" c2s/probe
  probe "$hub" "$leaf1" s2c/probe
  probe "$leaf2" "$hub" c2s/probe
  probe "$hub" "$leaf2" s2c/probe
  probe "$leaf1" "$leaf2" probe/s2c/probe
}

start_haproxy() {
  need haproxy
  free_ports 3
  front=${ports[0]}
  back1=${ports[1]}
  back2=${ports[2]}
  render haproxy.cfg "$work/haproxy.cfg" FRONT_PORT="$front" PORT1="$back1" PORT2="$back2"
  haproxy -c -q -f "$work/haproxy.cfg" >"$work/haproxy-check.log" 2>&1 ||
    fail "haproxy refuses its configuration"
  # -db: in the foreground, one process.
  start haproxy haproxy -db -f "$work/haproxy.cfg"
  proxy=$!
  again="exec haproxy -db -f '$work/haproxy.cfg' >>'$work/haproxy-again.log' 2>&1"
  wait_port "$front"
}

start_nginx() { # config
  need nginx
  free_ports 3
  front=${ports[0]}
  back1=${ports[1]}
  back2=${ports[2]}
  render "$1" "$work/nginx.conf" WORK="$work" CERTS="$certs" FRONT_PORT="$front" \
    PORT1="$back1" PORT2="$back2"
  local args=(-p "$work" -e "$work/error.log" -c "$work/nginx.conf")
  nginx -t -q "${args[@]}" >"$work/nginx-check.log" 2>&1 ||
    fail "nginx refuses its configuration"
  start nginx nginx "${args[@]}" -g "daemon off;"
  proxy=$!
  again="exec nginx $(printf '%q ' "${args[@]}")-g 'daemon off;' >>'$work/nginx-again.log' 2>&1"
  wait_port "$front"
  # The master listens before its worker runs: the cases start once the
  # worker serves.
  for _ in $(seq 100); do
    pgrep -P "$proxy" >/dev/null && return 0
    sleep 0.1
  done
  fail "nginx started no worker"
}

# bench_pair LABEL SERVERS FRONT DIRECT_SERVERS DIRECT_FRONT ARGS...: the
# throughput of each COUNTxSIZE through the topology and directly.
bench_pair() {
  local label=$1 servers=$2 via=$3 dservers=$4 dvia=$5
  shift 5
  local spec count size line
  for spec in ${NQ_DEPLOY_BENCH:-200000x1024 5000x65536}; do
    count=${spec%x*}
    size=${spec#*x}
    for route in direct "$label"; do
      if [ "$route" = direct ]; then
        line=$("$peer" bench "$@" --servers "$dservers" --front "$dvia" --count "$count" \
          --size "$size" --runs "${NQ_DEPLOY_RUNS:-5}") || fail "bench $route"
      else
        line=$("$peer" bench "$@" --servers "$servers" --front "$via" --count "$count" \
          --size "$size" --runs "${NQ_DEPLOY_RUNS:-5}") || fail "bench $route"
      fi
      echo "$topology $route $line"
    done
  done
}

run() { # ARGS... for deploy_peer, or bench's
  if [ "$mode" = bench ]; then
    return 0
  fi
  "$peer" "$@" | tee "$work/peer.out" || fail "deploy_peer $1"
}

case "$topology" in
  mqtt_bridge)
    start_mqtt_bridge
    run mqtt --hub "$hub" --leaf "$leaf1" --leaf "$leaf2"
    [ "$mode" != bench ] || bench_pair bridged "$hub" "$leaf1" "$hub" "$hub" --protocol mqtt
    ;;
  haproxy_tcp | haproxy_tls)
    tls=()
    if [ "$topology" = haproxy_tls ]; then
      make_certs
      tls=(--certs "$certs")
    fi
    start_haproxy
    run proxy --protocol tcp --front "$front" --backends "$back1,$back2" "${tls[@]}" \
      --proxy-pid "$proxy" --proxy-cmd "$again"
    [ "$mode" != bench ] || bench_pair haproxy "$back1,$back2" "$front" "$back1" "$back1" \
      --protocol tcp "${tls[@]}"
    ;;
  nginx_grpc | nginx_grpcs)
    tls=()
    config=nginx-grpc.conf
    if [ "$topology" = nginx_grpcs ]; then
      make_certs
      tls=(--certs "$certs")
      config=nginx-grpcs.conf
    fi
    start_nginx "$config"
    run proxy --protocol grpc --front "$front" --backends "$back1,$back2" "${tls[@]}" \
      --proxy-pid "$proxy" --proxy-cmd "$again"
    if [ "$mode" != bench ]; then
      # Streaming end to end: nginx logged one call per client, where
      # clients polling in rounds would have made one per round.
      clients=$(sed -n 's/^clients through the proxy: //p' "$work/peer.out")
      calls=$(grep -c . "$work/access.log" || true)
      echo "calls through nginx: $calls for $clients clients"
      [ "$calls" -ge 1 ] && [ "$calls" -le "$clients" ] ||
        fail "nginx logged $calls calls for $clients clients: not one stream each"
    fi
    [ "$mode" != bench ] || bench_pair nginx "$back1,$back2" "$front" "$back1" "$back1" \
      --protocol grpc "${tls[@]}"
    ;;
  nginx_grpc_idle)
    [ "$mode" != bench ] || fail "nginx_grpc_idle has nothing to measure"
    start_nginx nginx-grpc-idle.conf
    run idle --protocol grpc --front "$front" --backends "$back1,$back2" --idle-ms 3000
    # nginx would log a timed-out stream; the case would also have failed.
    ! grep -q "timed out" "$work/error.log" || fail "nginx timed a stream out"
    ;;
  *)
    echo "usage: deploy.sh TOPOLOGY DEPLOY_PEER [check|bench], TOPOLOGY one of" \
      "mqtt_bridge haproxy_tcp haproxy_tls nginx_grpc nginx_grpcs nginx_grpc_idle" >&2
    exit 2
    ;;
esac
