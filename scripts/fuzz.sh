#!/usr/bin/env bash
# Fuzzes gqa-core's parsers with cargo-fuzz (libFuzzer + AddressSanitizer), each target for
# GQA_FUZZ_SECONDS (default 15: the smoke run of `npm test`; the long run is
# `GQA_FUZZ_SECONDS=600 bash scripts/fuzz.sh`). Targets (crates/gqa-core/fuzz/fuzz_targets):
#   safetensors_load   any bytes -> model / model + head / attention-layer loaders (+ a forward)
#   config_json        any text -> model, attention and load-option parsers (+ JSON round trip)
#   head_fit_options   any text -> task-head and fit-option parsers (+ JSON round trip)
# Each run starts from the committed seeds (crates/gqa-core/fuzz/seeds/<target>) and works in a
# scratch corpus under target/fuzz-corpus/, so the seeds stay as committed. A crash, a leak, a
# timeout (-timeout=10 s) or an allocation over -rss_limit_mb=2048 fails the run; libFuzzer then
# writes the input to crates/gqa-core/fuzz/artifacts/<target>/ and prints how to reproduce it.
# Needs cargo-fuzz (scripts/setup.sh installs it) and rustup's stable toolchain, which ships the
# AddressSanitizer runtime; RUSTC_BOOTSTRAP=1 lets stable take cargo-fuzz's -Z flags.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_PER_TARGET="${GQA_FUZZ_SECONDS:-15}"
TARGETS="${GQA_FUZZ_TARGETS:-safetensors_load config_json head_fit_options}"
ROOT="$(pwd)"
cd crates/gqa-core
export RUSTC_BOOTSTRAP=1
cargo +stable fuzz build 2>&1 | tail -3
for t in $TARGETS; do
  work="$ROOT/target/fuzz-corpus/$t"
  mkdir -p "$work"
  max_len=4096
  [ "$t" = safetensors_load ] && max_len=16384
  echo "[fuzz] $t for ${SECONDS_PER_TARGET} s (max_len $max_len)"
  log="$ROOT/target/fuzz-corpus/$t.log"
  rc=0
  cargo +stable fuzz run "$t" "$work" "fuzz/seeds/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  # libFuzzer's progress lines stay in the log; the summary and any failure are shown.
  grep -E "^(stat::|Done|INFO: seed|==[0-9]+==|SUMMARY|Reproduce|thread '|panicked|Test unit written)" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log"
    echo "[fuzz] $t FAILED (exit $rc; input saved under crates/gqa-core/fuzz/artifacts/$t/)"
    exit 1
  fi
  echo "[fuzz] $t: corpus $(ls "$work" | wc -l) inputs"
done
echo "[fuzz] all targets ran ${SECONDS_PER_TARGET} s without a crash"
