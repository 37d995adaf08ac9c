#!/usr/bin/env bash
# Cross-builds the Windows agent on Debian: target/windows/dist/tether-agent.exe and the user's
# tray app tether-tray.exe (each one file, statically linked: no MinGW DLLs to ship).
# Usage: deploy/build-windows.sh [--debug | --clippy]   (default: an optimised build;
#        --clippy lints the Windows-only code with -D warnings instead of building)
#
# rustup cannot fetch the Windows standard library on these machines, so this uses Debian's own
# Rust toolchain (rustc-web, 1.96, installed beside rustup's) and builds std from its source
# (-Zbuild-std, which needs RUSTC_BOOTSTRAP on a stable compiler). It also builds, for the tests
# under Wine only, target/windows/dist/wine/bcryptprimitives.dll (see its source).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh windows
profile=release
flag=--release
clippy=
case "${1:-}" in
  --debug) profile=debug; flag= ;;
  --clippy) clippy=1 ;;
esac
target=x86_64-pc-windows-gnu
export PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1
# Static CRT and libstdc++ (OpenH264 is C++): the .exe needs nothing but Windows' own DLLs.
# OpenH264's build asks for libstdc++ from four separate cc builds, which cc cannot make static
# (CXXSTDLIB_STATIC fails on the duplicates); a library directory searched first that holds
# only the static archive makes the linker take it.
static=$PWD/target/windows/static-libs
mkdir -p "$static"
ln -sf "$(x86_64-w64-mingw32-gcc -print-file-name=libstdc++.a)" "$static/libstdc++.a"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-static -L native=$static"
if [ -n "$clippy" ]; then
  # The Windows-only code, linted as CI lints the rest (.ci/run).
  cargo clippy --locked -j2 -Zbuild-std=std,panic_abort --target $target \
    --target-dir target/windows -p tether-agent -p tether-tray -- -D warnings
  exit
fi
# shellcheck disable=SC2086
cargo build --locked -j2 $flag -Zbuild-std=std,panic_abort --target $target \
  --target-dir target/windows -p tether-agent -p tether-tray
dist=target/windows/dist
mkdir -p "$dist/wine"
cp "target/windows/$target/$profile/tether-agent.exe" "target/windows/$target/$profile/tether-tray.exe" "$dist/"
x86_64-w64-mingw32-gcc -O2 -shared -o "$dist/wine/bcryptprimitives.dll" \
  deploy/windows/wine-bcryptprimitives.c -ladvapi32
echo "built $dist/tether-agent.exe and $dist/tether-tray.exe ($profile)"
