#!/usr/bin/env bash
# The README's "Several relays" recipe on one machine, to try it (or check it still works) before
# rolling it out: three relays on 127.0.0.2-4:4433 sharing the Debian PostgreSQL cluster's
# `tether` database, an agent and a technician enrolled through relay-1, then relay-1 killed
# (`kill -9`) and the agent followed to another relay. Run as root on a machine that is not
# serving: it starts Debian's `postgresql` cluster, creates the `tether` role, database and
# system user, and drops an existing `tether` database first.
#
#   cargo build --release -p tether-relay -p tether-agent -p tether-technician
#   sudo bash deploy/try-scale-out.sh [WORKDIR]      # default /tmp/tether-scale-out
#
# The differences from the README, one machine standing in for four: relay-N.example.org is
# 127.0.0.(N+1), db.example.org is 127.0.0.1, /var/lib/tether-relay is WORKDIR/relay-N, scp is
# cp, and `systemctl enable --now tether-relay` is the unit's ExecStart run as its user.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/tether-scale-out}
B=target/release
for b in tether-relay tether-agent tether; do
    [ -x "$B/$b" ] || { echo "error: $B/$b missing: cargo build --release -p tether-relay -p tether-agent -p tether-technician" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: run as root (it creates a system user and a database)" >&2; exit 1; }
rm -rf "$W" && install -d -m 0755 "$W"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; pkill -u tether -x tether-relay 2>/dev/null || true; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "PostgreSQL: a role and an empty database for the relays"
install -m 0755 "$B/tether-relay" /usr/local/bin/tether-relay
id tether >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin tether
pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null
runuser -u postgres -- dropdb --if-exists tether
runuser -u postgres -- dropuser --if-exists tether
# The README has `createuser --pwprompt`; here the password is set without a prompt.
runuser -u postgres -- createuser tether
runuser -u postgres -- psql -qc "ALTER ROLE tether PASSWORD 'try-scale-out'"
runuser -u postgres -- createdb -O tether tether
install -m 0600 /dev/null "$W/tether-relay.env"
echo 'TETHER_RELAY_STORE=postgres://tether:try-scale-out@127.0.0.1:5432/tether' > "$W/tether-relay.env"
set -a; . "$W/tether-relay.env"; set +a

step "relay-1: the organisation's CA; relay-2 and relay-3 join it"
tether-relay init --data "$W/relay-1" --name relay.example.org \
    --public-addr 127.0.0.2:4433 --id relay-1
for n in 2 3; do
    install -d -m 0700 "$W/join"
    cp -p "$W"/relay-1/{ca.pem,ca-key.pem,relay.toml} "$W/join/"
    tether-relay init --data "$W/relay-$n" --join "$W/join" \
        --public-addr "127.0.0.$((n + 1)):4433" --id "relay-$n" && rm -r "$W/join"
done
for n in 1 2 3; do
    chown -R tether:tether "$W/relay-$n"
    (cd / && exec runuser -u tether -- env TETHER_RELAY_DATA="$W/relay-$n" \
        RUST_LOG=info,quinn=warn,sqlx=warn TETHER_RELAY_STORE="$TETHER_RELAY_STORE" \
        /usr/local/bin/tether-relay serve --listen "127.0.0.$((n + 1)):4433") \
        > "$W/relay-$n.log" 2>&1 < /dev/null &
    pids+=($!)
done
for _ in $(seq 100); do
    [ "$(tether-relay relays --data "$W/relay-1" | grep -c alive)" = 3 ] && break
    sleep 0.1
done
tether-relay relays --data "$W/relay-1"

step "an agent and a technician, enrolled through relay-1 (the tokens list all three)"
agent_token=$(tether-relay token --data "$W/relay-1" --agent)
tech_token=$(tether-relay token --data "$W/relay-1" --technician ana --role admin)
"$B/tether-agent" enroll --state "$W/agent" --token "$agent_token"
export XDG_CONFIG_HOME="$W/tech"
"$B/tether" enroll --token "$tech_token"
RUST_LOG=info "$B/tether-agent" run --state "$W/agent" > "$W/agent.log" 2>&1 < /dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q "connected to relay" "$W/agent.log" && break; sleep 0.1; done
"$B/tether" devices
tether-relay relays --data "$W/relay-2"

step "kill -9 of relay-1: the agent moves on, the technician too"
held=$(grep -o "connected to relay [0-9.:]*" "$W/agent.log" | tail -1 | awk '{print $4}')
victim=$(pgrep -u tether -f "tether-relay serve --listen $held")
kill -9 "$victim"
start=$(date +%s%N)
moved=
for _ in $(seq 300); do
    if grep "connected to relay" "$W/agent.log" | tail -1 | grep -qv "$held"; then moved=1; break; fi
    sleep 0.1
done
[ -n "$moved" ] || { echo "error: the agent did not leave the killed relay $held within 30 s (see $W/agent.log)" >&2; exit 1; }
echo "the agent left the killed relay $held after $(( ($(date +%s%N) - start) / 1000000 )) ms:"
grep "connected to relay" "$W/agent.log" | tail -1
"$B/tether" devices
tether-relay relays --data "$W/relay-2"
echo "ok: logs in $W"
