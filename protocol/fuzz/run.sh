#!/usr/bin/env bash
# Fuzzes every decoder with libFuzzer on the stable toolchain (no cargo-fuzz or nightly needed):
# `bash protocol/fuzz/run.sh [seconds per target] [target…]` (default 120 s, targets decode and csr).
# New inputs land in corpus/<target>; a crash is written to crash-* here and must become a
# regression test (protocol/src/fuzzing.rs for decode).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode csr)
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --target "$target" --target-dir target
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: $secs s" >&2
  "target/$target/release/$t" "corpus/$t" -max_total_time="$secs" -max_len=4096 -print_final_stats=1
done
