#!/usr/bin/env bash
# `npm run lint`: every check that needs no test run. Fails on the first finding.
#   rustfmt (rustfmt.toml) over the workspace and the fuzz crate; biome's linter (biome.json) over
#   ts/, test/, bench/, scripts/, demo/ and examples/; tsc --noEmit over ts/ and test/
#   (tsconfig.json); Rust functions of at most 100 lines (scripts/long-fns.py); ts/generated/
#   against what scripts/gen-ts.mjs writes from the committed schema/ files (which
#   crates/gqa-core/tests/schema.rs checks against the Rust definitions); clippy with
#   warnings as errors on every workspace crate and target (`GQA_LINT_CLIPPY=0` skips it, e.g.
#   before a first build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$(pwd)/node_modules/.bin:$HOME/.cargo/bin:$PATH"
START=$SECONDS
log() { printf '[lint %3ds] %s\n' "$((SECONDS - START))" "$*"; }
log "cargo fmt --check"
cargo fmt --all -- --check
(cd crates/gqa-core/fuzz && cargo fmt -- --check)
if [ "${GQA_LINT_CLIPPY:-1}" = 1 ]; then
  log "cargo clippy --workspace --all-targets -D warnings (release profile: shares the test build)"
  cargo clippy --release --workspace --all-targets --quiet -- -D warnings
fi
log "Rust functions of at most 100 lines, comments and blank lines included (scripts/long-fns.py)"
python3 scripts/long-fns.py 100 crates bindings
log "generated TypeScript (ts/generated) up to date with schema/ (node scripts/gen-ts.mjs --check)"
node scripts/gen-ts.mjs --check
log "biome lint"
biome lint --error-on-warnings --reporter=summary
log "tsc --noEmit (ts/ and test/)"
tsc -p tsconfig.json --noEmit
log "lint clean in $((SECONDS - START)) s"
