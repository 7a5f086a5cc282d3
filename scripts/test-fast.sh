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
# Release, as the benches and clippy; its build directory is target/release (the addon's napi build
# writes target/<triple>/release), so a first run compiles the dependencies once more.
cargo test --release
# Without the four wasm modules of the full build (`bash scripts/setup.sh --all`; `npm test` makes
# them before calling this): test/package-install.test.ts (it packs and installs them) is left out
# and GQA_NO_WASM=1 makes the native-vs-wasm comparisons skip, by name (test/helpers/expect.ts).
exclude=()
for pkg in pkg pkg-threads pkg-relaxed pkg-threads-relaxed; do
  if [ ! -f "bindings/wasm/$pkg/gqa_wasm_bg.wasm" ]; then
    exclude=(--exclude test/package-install.test.ts)
    export GQA_NO_WASM=1
    log "bindings/wasm/$pkg missing: test/package-install.test.ts and the native-vs-wasm comparisons left out (bash scripts/setup.sh --all builds the wasm modules; npm test runs them)"
    break
  fi
done
log "vitest, GQA_BACKEND=native"
GQA_BACKEND=native vitest run "${exclude[@]}"
log "fast lane passed in $((SECONDS - START)) s"
