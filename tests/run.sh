#!/usr/bin/env bash
# Runs every test: unit tests of each crate and the end-to-end tests in tests/ (real relays,
# agents and technicians on 127.0.0.1). Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh test
# The end-to-end tests run the built binaries; build them once, up front.
cargo build --workspace --bins -j2
# The Windows agent and tray app, cross-built, for their tests under Wine (tests/tests/windows_agent.rs,
# windows_tray.rs).
bash deploy/build-windows.sh --debug
cargo test --workspace -j2 -- --test-threads=3
# The desktop portal backend against a stand-in portal on a private session bus (no real
# portal runs headless here: xdg-desktop-portal-wlr needs a GPU).
dbus-run-session -- cargo test -p tether-wayland -j2 portal -- --ignored
# The end-to-end tests again, every relay on its own database of a private PostgreSQL cluster
# (tests/pg), so both store backends carry the whole product.
# The Wayland desktops and the Windows agent do not depend on the store: they run once, above.
TETHER_TEST_STORE=postgres TETHER_TEST_WAYLAND=0 TETHER_TEST_WINDOWS=0 cargo test -p tether-tests -j2 -- --test-threads=3
