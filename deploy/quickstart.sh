#!/usr/bin/env bash
# One command to see Tether work on this machine: builds, starts a relay with its embedded
# SQLite store in ./.tether-demo, enrolls this machine's agent and a technician, and shows the
# device list with this machine online.
#
#   bash deploy/quickstart.sh         set up (first run) or restart, then show devices
#   bash deploy/quickstart.sh stop    stop the demo relay and agent
#   bash deploy/quickstart.sh clean   stop and delete ./.tether-demo
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${TETHER_DEMO_DIR:-$PWD/.tether-demo}
PORT=${TETHER_DEMO_PORT:-4433}
BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug

stop() {
  for p in agent relay; do
    if [ -f "$DEMO/$p.pid" ] && kill -0 "$(cat "$DEMO/$p.pid")" 2>/dev/null; then
      kill -TERM "$(cat "$DEMO/$p.pid")" && echo "stopped $p"
      # Wait for a graceful exit so the port is free for the next start.
      for _ in $(seq 50); do kill -0 "$(cat "$DEMO/$p.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$DEMO/$p.pid"
  done
}

case "${1:-up}" in
  stop) stop; exit 0 ;;
  clean) stop; rm -rf "$DEMO"; echo "removed $DEMO"; exit 0 ;;
  up) ;;
  *) echo "usage: $0 [up|stop|clean]" >&2; exit 2 ;;
esac

bash deploy/install-deps.sh build
echo "building (first time takes a few minutes) ..."
cargo build --workspace --bins -j"$(nproc)" -q

mkdir -p "$DEMO"
stop >/dev/null
if [ ! -f "$DEMO/relay/relay.toml" ]; then
  "$BIN/tether-relay" init --data "$DEMO/relay" --name localhost --public-addr "127.0.0.1:$PORT"
fi

"$BIN/tether-relay" serve --data "$DEMO/relay" --listen "127.0.0.1:$PORT" >"$DEMO/relay.out" 2>"$DEMO/relay.log" &
echo $! >"$DEMO/relay.pid"
for _ in $(seq 100); do grep -q "listening on" "$DEMO/relay.out" 2>/dev/null && break; sleep 0.1; done
grep "listening on" "$DEMO/relay.out" || { echo "error: relay did not start; see $DEMO/relay.log" >&2; cat "$DEMO/relay.log" >&2; exit 1; }

if [ ! -f "$DEMO/agent/cert.pem" ]; then
  token=$("$BIN/tether-relay" token --data "$DEMO/relay" --agent --group workstations 2>/dev/null)
  "$BIN/tether-agent" enroll --token "$token" --state "$DEMO/agent"
fi
# Its own consent socket; no desktop here, so requests wait for `tether-agent approve`.
"$BIN/tether-agent" run --state "$DEMO/agent" --socket "$DEMO/agent.sock" --terminal-approval \
  --health-interval 10s >/dev/null 2>"$DEMO/agent.log" &
echo $! >"$DEMO/agent.pid"

if [ ! -f "$DEMO/tech/cert.pem" ]; then
  token=$("$BIN/tether-relay" token --data "$DEMO/relay" --technician demo --role admin 2>/dev/null)
  "$BIN/tether" --config "$DEMO/tech" enroll --token "$token"
fi

export TETHER_CONFIG="$DEMO/tech"
# The demo technician is an admin; let it reach the demo group without a prompt (still audited).
"$BIN/tether-relay" policy --data "$DEMO/relay" --group workstations --unattended on >/dev/null
for _ in $(seq 100); do
  "$BIN/tether" devices --json 2>/dev/null | grep -q '"online": true' && break
  sleep 0.1
done
echo
"$BIN/tether" devices
echo
"$BIN/tether" devices --json
cat <<EOT

Tether is running: relay on 127.0.0.1:$PORT (data in $DEMO/relay), this machine's agent online.
Try next:
  export TETHER_CONFIG=$DEMO/tech PATH=$BIN:\$PATH
  tether devices                      # the device list (add --json for scripts)
  tether health $(hostname)    # CPU, memory, disks, top processes; tether alerts
  tether exec $(hostname) -- uname -a    # a command on it (no prompt: the demo's policy)
  tether shell $(hostname)     # a terminal on it; tether sessions shows the audit trail
  export TETHER_AGENT_SOCKET=$DEMO/agent.sock; tether-agent sessions   # the user's side
  tether-relay token --data $DEMO/relay --agent      # a token to enroll another machine
  kill \$(cat $DEMO/agent.pid); tether devices        # the agent goes offline within 10 s
Logs: $DEMO/relay.log, $DEMO/agent.log (more detail with RUST_LOG=debug)
Stop: bash deploy/quickstart.sh stop      Remove everything: bash deploy/quickstart.sh clean
EOT
