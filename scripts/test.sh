#!/usr/bin/env bash
# The whole test suite (what `npm test` and .ci/run run). Brings the build up to date first
# (`scripts/setup.sh --all`, idempotent: on a fresh clone it builds everything), then:
#   1. cargo test --release  (gqa-core: unit, integration and fixture tests)
#   2. vitest with GQA_BACKEND=native, then GQA_BACKEND=wasm with GQA_THREADS=1 (single-threaded
#      module) and GQA_THREADS=2 (threaded module): every suite in test/ runs per backend/module
#   3. the built package: `import { GQA } from "gqa"` (package self-reference -> dist/) on both backends
#   3b. memory: 10,000 x (build, forward, dispose) per backend and wasm module leave RSS / wasm memory flat
#   4. the browser entry (dist/browser.js, wasm) in headless chromium, compared with Node
#   5. the demo (demo/dist) in chromium via playwright-core vs Node native, README worker snippet;
#      screenshot -> test-artifacts/demo.png
#   6. bench smoke: `npm run bench -- --quick` (tiny sizes: every peer runs, outputs agree <= 1e-4)
#   7. Deno: test/deno (wasm and, with --allow-ffi, the native addon) vs fixtures and Node native
#   8. fuzz smoke: scripts/fuzz.sh runs each cargo-fuzz target (safetensors loaders, option and
#      head/fit parsers) for 15 s under AddressSanitizer
#   9. the PyTorch twin's own tests (python/tests, unittest) against fixtures/, in .venv
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=$SECONDS
log() { printf '\n[test %4ds] %s\n' "$((SECONDS - START))" "$*"; }

log "setup --all (what command 1 built, plus the toolchains, wasm modules, Python environment and demo the tests need)"
bash scripts/setup.sh --all
export PATH="$(pwd)/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log "cargo test --release (gqa-core)"
# --release reuses the dependencies the native addon's release build just compiled (candle, gemm):
# a debug test build would compile them a second time (~10-20 min on 2 cores).
cargo test --release

for run in native wasm:1 wasm:2; do
  backend=${run%%:*} threads=${run#*:}
  if [ "$backend" = native ]; then
    log "vitest, GQA_BACKEND=native"
    GQA_BACKEND=native vitest run
  else
    log "vitest, GQA_BACKEND=wasm GQA_THREADS=$threads ($([ "$threads" = 1 ] && echo single-threaded || echo threaded) module)"
    GQA_BACKEND=wasm GQA_THREADS=$threads vitest run
  fi
done

log "package self-reference (dist/) on both backends"
for backend in native wasm; do
  GQA_BACKEND=$backend node scripts/smoke.mjs
done
log "memory: 10,000 x (build, forward, dispose) leave native RSS and wasm memory flat"
node --expose-gc scripts/leak-check.mjs native
GQA_THREADS=1 node --expose-gc scripts/leak-check.mjs wasm
GQA_THREADS=2 node --expose-gc scripts/leak-check.mjs wasm
log "browser entry (dist/browser.js) in headless chromium vs Node"
node scripts/browser-smoke.mjs
log "demo end-to-end (playwright-core + chromium) vs Node native"
node test/browser/demo-e2e.mjs
log "bench smoke: npm run bench -- --quick (tiny sizes, every peer and code path, outputs checked; not a measurement)"
node bench/run.mjs --quick --out test-artifacts/bench-quick.json

log "deno test (test/deno, npm deno binary $(deno --version | head -1 | cut -d' ' -f2))"
deno test --config test/deno/deno.json --allow-read --allow-write --allow-env --allow-run=node,deno --allow-ffi test/deno/

log "fuzz smoke: scripts/fuzz.sh, 15 s per target (libFuzzer + AddressSanitizer; the long run: GQA_FUZZ_SECONDS=600)"
bash scripts/fuzz.sh

if [ -x .venv/bin/python ]; then
  log "PyTorch twin (python/tests) vs fixtures/"
  OMP_NUM_THREADS=1 .venv/bin/python -m unittest discover -s python/tests
else
  log "PyTorch twin: skipped (no .venv: $(cat target/stamps/python-skipped 2>/dev/null || echo "GQA_SKIP_PYTHON=1 at setup"))"
fi

log "all tests passed in $((SECONDS - START)) s"
