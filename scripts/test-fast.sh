#!/usr/bin/env bash
# `npm run test:fast`: the fast lane on a built checkout (`bash scripts/setup.sh` done): lint, the
# core's Rust tests and every vitest suite on the native backend. `npm test` runs this first, then
# the wasm, browser, Deno, package, fuzz and PyTorch lanes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$(pwd)/node_modules/.bin:$HOME/.cargo/bin:$PATH"
START=$SECONDS
log() { printf '\n[test:fast %4ds] %s\n' "$((SECONDS - START))" "$*"; }
log "lint (scripts/lint.sh)"
bash scripts/lint.sh
log "cargo test --release (gqa-core)"
# --release reuses the dependencies the native addon's release build compiled (candle, gemm).
cargo test --release
# test/package-install.test.ts packs and installs the packages, which needs the four wasm modules
# of the full build (`bash scripts/setup.sh --all`; `npm test` makes them before calling this).
exclude=()
for pkg in pkg pkg-threads pkg-relaxed pkg-threads-relaxed; do
  if [ ! -f "bindings/wasm/$pkg/gqa_wasm_bg.wasm" ]; then
    exclude=(--exclude test/package-install.test.ts)
    log "test/package-install.test.ts left out: bindings/wasm/$pkg missing (bash scripts/setup.sh --all builds it; npm test runs the test)"
    break
  fi
done
log "vitest, GQA_BACKEND=native"
GQA_BACKEND=native vitest run "${exclude[@]}"
log "fast lane passed in $((SECONDS - START)) s"
