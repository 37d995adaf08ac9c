#!/usr/bin/env bash
# Fuzzes every protocol decoder with libFuzzer on the stable toolchain (no cargo-fuzz or nightly
# needed): `bash protocol/fuzz/run.sh [seconds]` (default 120). New inputs land in corpus/decode;
# a crash is written to crash-* here and must become a regression test in protocol/src/fuzzing.rs.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --target "$target" --target-dir target
mkdir -p corpus/decode
"target/$target/release/decode" corpus/decode -max_total_time="$secs" -max_len=4096 -print_final_stats=1
