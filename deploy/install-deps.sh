#!/usr/bin/env bash
# Installs the Debian packages Tether needs to build and test, quietly and only if missing.
# Usage: deploy/install-deps.sh [build|test|bench|windows]   (default: test, which includes build
# and windows; bench adds the peers the benchmark compares with; windows: the cross-build only)
set -euo pipefail

what=${1:-test}
# Build: C/C++ compilers for ring, zstd, the bundled SQLite and OpenH264 (nasm, or its encoder runs
# ~4.5x slower without assembly); XCB headers for screen capture (scrap); GTK 3 for the tray app.
build_pkgs=(gcc g++ libc6-dev pkg-config libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev nasm libgtk-3-dev)
# The Wayland capture (tether-wayland, the `pipewire` crate): PipeWire headers, and libclang for
# its bindgen (docs/research/wayland/FINDINGS.md §1; clang itself may not be needed, unverified).
build_pkgs+=(libpipewire-0.3-dev libclang-dev clang)
# Tests: a private X server, X clients to drive and check it, an independent screen capture.
test_pkgs=(procps xvfb xdotool xterm imagemagick xclip iproute2 util-linux)
# Keyboard tests: a key-logging probe window (xev), the XTEST key state (xinput), a German
# remote layout (setxkbmap), F13-F24 on the technician's keyboard (xmodmap).
test_pkgs+=(x11-utils xinput x11-xkb-utils x11-xserver-utils)
# The viewer window at run time: Mesa (software GL under Xvfb) and the X11 libraries winit loads.
test_pkgs+=(libgl1-mesa-dri libegl1 libgl1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6)
# The tray icon at run time (without it tether-tray falls back to a plain window), and a private
# session bus for the tray tests (dbus-daemon).
test_pkgs+=(libayatana-appindicator3-1 dbus-daemon)
# The PostgreSQL store's tests: a private server per test process (tests/pg, as the postgres
# user when run as root; apt starts no service here).
test_pkgs+=(postgresql)
# Headless Wayland desktops (tests/src/wayland.rs): GNOME's mutter with PipeWire for its
# ScreenCast API, sway (wlroots) with grim for an independent screenshot, the session bus tools
# (dbus-send, dbus-run-session), and the GTK 3 test client's Python bindings with cairo drawing
# (it runs with /usr/bin/python3). FINDINGS §1.
test_pkgs+=(mutter pipewire pipewire-bin wireplumber sway grim dbus-bin python3-gi-cairo gir1.2-gtk-3.0)

# The Windows agent, cross-built (deploy/build-windows.sh): Debian's Rust 1.96 toolchain with
# the standard library's source (rustup cannot fetch the Windows target here) and MinGW-w64;
# Wine 8 runs it for the tests (its `wine` launcher is a separate package).
windows_pkgs=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)
windows_test_pkgs=(wine64 wine)

# Benchmark peers (optional; the bench installs them itself when run as root).
bench_pkgs=(socat fusioninventory-agent x11vnc tigervnc-viewer mousepad iptables)

pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}" "${windows_pkgs[@]}" "${windows_test_pkgs[@]}")
[ "$what" = windows ] && pkgs+=("${windows_pkgs[@]}")
[ "$what" = bench ] && pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "error: missing packages ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
else SUDO=; fi
echo "installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
