#!/bin/bash
# Headless GNOME (mutter 43, Debian 12) with PipeWire, on a private session bus.
#
#   ./run-mutter.sh start   # starts everything in the background, waits until ready,
#                           # writes $STATE/env (source it to join the session)
#   ./run-mutter.sh stop    # kills what start started (by pid, whole process group)
#   ./run-mutter.sh inner   # (internal) runs under dbus-run-session
#
# Needs (apt-get install -y --no-install-recommends): mutter pipewire pipewire-bin wireplumber
# dbus / dbus-daemon / dbus-bin (dbus-run-session) were already installed here.
#
# As root: XDG_RUNTIME_DIR must exist, be owned by the user and be mode 0700, or
# pipewire/mutter complain; we make a private one under $STATE.
set -u
STATE=${STATE:-/tmp/proto-wl}
SIZE=${SIZE:-1280x720}   # several monitors: SIZE="1280x720 1024x768"
HERE=$(cd "$(dirname "$0")" && pwd)

case "${1:-start}" in
start)
    if [ -f "$STATE/session.pid" ] && kill -0 "$(cat "$STATE/session.pid")" 2>/dev/null; then
        echo "already running (pid $(cat "$STATE/session.pid"))"; exit 0
    fi
    rm -rf "$STATE"; mkdir -p "$STATE/run"; chmod 700 "$STATE/run"
    export XDG_RUNTIME_DIR="$STATE/run"
    # setsid: own process group, so `stop` can kill the whole tree with one signal.
    setsid dbus-run-session -- "$HERE/run-mutter.sh" inner >"$STATE/session.log" 2>&1 < /dev/null &
    echo $! > "$STATE/session.pid"
    for _ in $(seq 1 200); do
        [ -f "$STATE/env" ] && { echo "ready: source $STATE/env"; cat "$STATE/env"; exit 0; }
        kill -0 "$(cat "$STATE/session.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "failed to start; log:"; tail -30 "$STATE/session.log"; exit 1
    ;;
inner)
    # We are inside dbus-run-session: DBUS_SESSION_BUS_ADDRESS is set.
    pipewire > "$STATE/pipewire.log" 2>&1 &
    # wireplumber needs pipewire's socket; give it a moment.
    for _ in $(seq 1 50); do [ -S "$XDG_RUNTIME_DIR/pipewire-0" ] && break; sleep 0.1; done
    wireplumber > "$STATE/wireplumber.log" 2>&1 &
    # No GPU: mutter uses the software (llvmpipe/surfaceless) path; GSettings backend 'memory'
    # avoids dconf warnings.
    MON=(); for s in $SIZE; do MON+=(--virtual-monitor "$s"); done
    GSETTINGS_BACKEND=memory mutter --headless "${MON[@]}" --wayland --no-x11 \
        --wayland-display=wayland-proto > "$STATE/mutter.log" 2>&1 &
    MUTTER=$!
    trap 'kill $MUTTER 2>/dev/null; kill %1 %2 2>/dev/null; wait' TERM INT EXIT
    # ready when the Wayland socket exists and mutter owns org.gnome.Mutter.ScreenCast
    for _ in $(seq 1 150); do
        if [ -S "$XDG_RUNTIME_DIR/wayland-proto" ] && \
           dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
             org.freedesktop.DBus.NameHasOwner string:org.gnome.Mutter.ScreenCast 2>/dev/null | grep -q true; then
            break
        fi
        sleep 0.1
    done
    cat > "$STATE/env.tmp" <<EOF
export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR
export DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS
export WAYLAND_DISPLAY=wayland-proto
export GDK_BACKEND=wayland
EOF
    mv "$STATE/env.tmp" "$STATE/env"
    wait $MUTTER
    ;;
stop)
    if [ -f "$STATE/session.pid" ]; then
        PID=$(cat "$STATE/session.pid")
        kill -TERM -- "-$PID" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$PID" 2>/dev/null
        rm -f "$STATE/session.pid"
        echo stopped
    fi
    ;;
esac
