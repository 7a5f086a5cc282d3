#!/usr/bin/env bash
# The whole test suite (what `npm test` and .ci/run run). Brings the build up to date first
# (`scripts/setup.sh --all`, idempotent: on a fresh clone it builds everything), then:
#   1. the fast lane (scripts/test-fast.sh, `npm run test:fast`): lint (rustfmt, clippy, biome,
#      tsc over ts/ and test/), cargo test --release (gqa-core), vitest with GQA_BACKEND=native
#   2. vitest with GQA_BACKEND=wasm, GQA_THREADS=1 (single-threaded module) and GQA_THREADS=2
#      (threaded module): every suite in test/ runs per backend/module
#   3. the built package: `import { GQA } from "gqa"` (package self-reference -> dist/) on both backends
#   3b. memory: 10,000 x (build, forward, dispose) per backend and wasm module leave RSS / wasm memory flat
#   4. the browser entry (dist/browser.js, wasm) in headless chromium, compared with Node
#   5. the demo (demo/dist) in chromium via playwright-core vs Node native, the worker snippet of docs/browser-and-deno.md;
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

log "fast lane (scripts/test-fast.sh): lint, cargo test --release, vitest on native"
bash scripts/test-fast.sh

for threads in 1 2; do
  log "vitest, GQA_BACKEND=wasm GQA_THREADS=$threads ($([ "$threads" = 1 ] && echo single-threaded || echo threaded) module)"
  GQA_BACKEND=wasm GQA_THREADS=$threads vitest run
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
