#!/usr/bin/env bash
# Starts a private mosquitto for a test on a free 127.0.0.1 port.
#   mqtt-broker.sh start DIR [CONF]  starts it in DIR (created), prints the
#                              port; CONF's lines are added to its settings
#                              (a password file, an ACL file...)
#   mqtt-broker.sh stop DIR    stops it and removes DIR
# The broker dies with the shell that started it only through "stop", so
# callers stop it from an EXIT trap.
set -euo pipefail

cmd=$1
dir=$2
extra=${3:-}
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $cmd in
start)
  mkdir -p "$dir"
  chmod 755 "$dir"
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/mosquitto.conf" <<CONF
set_tcp_nodelay true
persistence false
log_dest stderr
listener $port 127.0.0.1
CONF
    if [ -n "$extra" ]; then
      cat "$extra" >>"$dir/mosquitto.conf"
    else
      echo "allow_anonymous true" >>"$dir/mosquitto.conf"
    fi
    chmod 644 "$dir/mosquitto.conf"
    "$mosquitto" -c "$dir/mosquitto.conf" >"$dir/broker.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$port"
        exit 0
      fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
      sleep 0.05
    done
    kill "$(cat "$dir/pid")" 2>/dev/null || true
  done
  echo "mqtt-broker.sh: mosquitto did not start:" >&2
  cat "$dir/broker.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: mqtt-broker.sh start|stop DIR" >&2
  exit 2
  ;;
esac
