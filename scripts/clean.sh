#!/usr/bin/env bash
# `npm run clean`: removes everything the build and `npm test` leave in the checkout (about 11 GB
# after a full `npm test`: target/ with the native, wasm and test builds, the fuzz build, the
# Python environment, node_modules, the wasm modules, the native addon, dist/, the demo build and
# test artefacts), and prints what each took. Trained models under runs/ are kept: pass --runs to
# remove them too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
paths=(target crates/gqa-core/fuzz/target crates/gqa-core/fuzz/corpus crates/gqa-core/fuzz/artifacts .venv node_modules
  bindings/wasm/pkg bindings/wasm/pkg-threads bindings/wasm/pkg-relaxed bindings/wasm/pkg-threads-relaxed
  bindings/node/index.js bindings/node/index.d.ts dist demo/dist test-artifacts)
for arg in "$@"; do
  case "$arg" in
    --runs) paths+=(runs) ;;
    *) echo "scripts/clean.sh: unknown argument '$arg' (expected --runs or nothing)" >&2; exit 2 ;;
  esac
done
shopt -s nullglob
paths+=(bindings/node/*.node python/src/*.egg-info)
present=()
for p in "${paths[@]}"; do [ -e "$p" ] && present+=("$p"); done
if ((${#present[@]} == 0)); then echo "[clean] nothing to remove"; exit 0; fi
du -sh "${present[@]}" 2>/dev/null | sed 's/^/[clean] removing /'
echo "[clean] total $(du -sch "${present[@]}" 2>/dev/null | tail -1 | cut -f1)"
rm -rf "${present[@]}"
