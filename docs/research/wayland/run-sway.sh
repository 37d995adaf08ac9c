#!/bin/bash
# Headless sway 1.7 (wlroots 0.15, Debian 12) as an unprivileged user.
#   ./run-sway.sh start|stop
# Needs: apt-get install -y --no-install-recommends sway grim ; useradd -m swayuser
# sway refuses to run as root; WLR_BACKENDS=headless + WLR_RENDERER=pixman (no GPU),
# WLR_LIBINPUT_NO_DEVICES=1 (no input devices at all in a container).
set -u
U=${SWAY_USER:-swayuser}
STATE=${STATE:-/tmp/proto-sway}
case "${1:-start}" in
start)
    rm -rf "$STATE"; mkdir -p "$STATE/run"; chown "$U" "$STATE" "$STATE/run"; chmod 700 "$STATE/run"
    cat > "$STATE/config" <<'EOF'
output HEADLESS-1 resolution 1280x720 position 0,0 bg #204060 solid_color
default_border none
EOF
    chown "$U" "$STATE/config"
    setsid runuser -u "$U" -- env -i PATH=/usr/bin:/bin HOME="$(getent passwd "$U" | cut -d: -f6)" \
        XDG_RUNTIME_DIR="$STATE/run" WLR_BACKENDS=headless WLR_RENDERER=pixman \
        WLR_LIBINPUT_NO_DEVICES=1 WLR_HEADLESS_OUTPUTS=1 \
        sway -c "$STATE/config" > "$STATE/sway.log" 2>&1 < /dev/null &
    echo $! > "$STATE/sway.pid"
    for _ in $(seq 1 100); do
        S=$(ls "$STATE/run" 2>/dev/null | grep -E '^wayland-[0-9]+$' | head -1)
        [ -n "$S" ] && break; sleep 0.1
    done
    [ -z "${S:-}" ] && { echo "sway failed"; tail -20 "$STATE/sway.log"; exit 1; }
    printf 'export XDG_RUNTIME_DIR=%s\nexport WAYLAND_DISPLAY=%s\n' "$STATE/run" "$S" > "$STATE/env"
    echo "ready: $(cat "$STATE/env" | tr '\n' ' ') (run clients as $U)"
    ;;
stop)
    [ -f "$STATE/sway.pid" ] && kill -TERM -- "-$(cat "$STATE/sway.pid")" 2>/dev/null; rm -f "$STATE/sway.pid"; echo stopped
    ;;
esac
