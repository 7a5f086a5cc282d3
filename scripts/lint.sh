#!/usr/bin/env bash
# `npm run lint`: every check that needs no test run. Fails on the first finding.
#   rustfmt (rustfmt.toml) over the workspace and the fuzz crate; clippy with warnings as errors on
#   every crate and target; biome's linter (biome.json) over ts/, test/, bench/, scripts/, demo/ and
#   examples/; tsc --noEmit over ts/ and test/ (tsconfig.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$(pwd)/node_modules/.bin:$HOME/.cargo/bin:$PATH"
START=$SECONDS
log() { printf '[lint %3ds] %s\n' "$((SECONDS - START))" "$*"; }
log "cargo fmt --check"
cargo fmt --all -- --check
(cd crates/gqa-core/fuzz && cargo fmt -- --check)
log "cargo clippy --workspace --all-targets -D warnings (release profile: shares the test build)"
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
log "biome lint"
biome lint --error-on-warnings --reporter=summary
log "tsc --noEmit (ts/ and test/)"
tsc -p tsconfig.json --noEmit
log "lint clean in $((SECONDS - START)) s"
