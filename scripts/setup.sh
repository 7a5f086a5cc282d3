#!/usr/bin/env bash
# Idempotent setup and build of gqa. Safe to run again: each step checks a stamp first and says
# what it skips, so a second run takes seconds.
#
#   bash scripts/setup.sh          what the main job (`npm run main`) needs, ~5 min on a bare 2-core
#                                  machine: npm ci, the native addon, dist/
#   bash scripts/setup.sh --all    everything the tests need besides (`npm test` runs this):
#                                  apt toolchain and chromium, cargo tools, Python environment, the
#                                  four wasm modules, the demo
#
# Steps (the default run does 3, 4 and 6):
#  1. Debian's wasm toolchain (rustc-web, cargo-web, rust-web-src, rust-web-llvm, lld-22) and chromium (apt)
#  2. wasm-bindgen-cli 0.2.130, wasm-pack 0.15.1 and cargo-fuzz 0.13.2 (cargo install from crates.io)
#  3. npm ci (package-lock.json)
#  3b. Python environment .venv (scripts/requirements-python.txt; python/ editable): GQA_SKIP_PYTHON=1 skips
#  4. native addon: napi build --platform --release (rustup toolchain)  -> bindings/node/gqa.<triple>.node + index.js
#  5. wasm packages: wasm-pack build --target web (Debian toolchain, -Zbuild-std): +simd128 -> bindings/wasm/pkg/,
#     threaded (+atomics, shared memory, wasm-bindgen-rayon) -> bindings/wasm/pkg-threads/, and both
#     again with +relaxed-simd -> bindings/wasm/pkg-relaxed/, bindings/wasm/pkg-threads-relaxed/
#  6. TypeScript: tsc -> dist/
#  7. browser demo: vite build --config demo/vite.config.ts -> demo/dist/ (static files)
#
# Environment: GQA_WASM_OPT (wasm-opt level, default -O1, `none` to skip); GQA_BUILD_ONLY=1 skips the
# installs (steps 1-3b) and builds all the rest (implies --all; `npm run build`);
# GQA_SKIP_NATIVE=1 / GQA_SKIP_WASM=1 skip a build; GQA_FORCE_BUILD=1 ignores the stamps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
START=$SECONDS
log() { printf '[setup %3ds] %s\n' "$((SECONDS - START))" "$*"; }
STAMPS="$ROOT/target/stamps"
mkdir -p "$STAMPS"
# GQA_BUILD_ONLY=1 (`npm run build`) builds every output without installing anything: it implies --all.
ALL=0; [ "${GQA_BUILD_ONLY:-0}" = 1 ] && ALL=1
for arg in "$@"; do
  case "$arg" in
    --all) ALL=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "scripts/setup.sh: unknown argument '$arg' (expected --all or nothing)" >&2; exit 2 ;;
  esac
done
# step <what> <expected time on a bare 2-core machine>: one progress line per step.
step() { log "== $1 (first run ~$2; seconds once built)"; }

WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1
CARGO_FUZZ_VERSION=0.13.2
export PATH="$HOME/.cargo/bin:$PATH"

if [ "${GQA_BUILD_ONLY:-0}" != 1 ] && [ "$ALL" = 1 ]; then
# --- 1. apt packages --------------------------------------------------------------------------
step "apt: Debian's wasm toolchain and chromium" "1 min"
APT_PKGS=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  log "apt packages present: ${APT_PKGS[*]}"
fi

# --- 2. cargo-installed tools -------------------------------------------------------------------
step "cargo install: wasm-bindgen-cli, wasm-pack, cargo-fuzz" "6 min"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  # Not --locked: a version pinned in wasm-bindgen-cli's lockfile is no longer on the registry here.
  log "cargo install wasm-bindgen-cli --version =$WASM_BINDGEN_VERSION"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
else
  log "wasm-bindgen $WASM_BINDGEN_VERSION present"
fi
if [ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  log "cargo install wasm-pack --version =$WASM_PACK_VERSION --locked"
  cargo install wasm-pack --version "=$WASM_PACK_VERSION" --locked
else
  log "wasm-pack $WASM_PACK_VERSION present"
fi
# cargo-fuzz runs the libFuzzer targets of crates/gqa-core/fuzz (scripts/fuzz.sh; AddressSanitizer
# with rustup's stable toolchain, which ships the sanitizer runtime).
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "cargo install cargo-fuzz --version =$CARGO_FUZZ_VERSION --locked"
  cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
else
  log "cargo-fuzz $CARGO_FUZZ_VERSION present"
fi

fi # --all installs

if [ "${GQA_BUILD_ONLY:-0}" != 1 ]; then
# --- 3. npm packages --------------------------------------------------------------------------
step "npm ci: TypeScript, test tools and bench peers" "30 s"
lock_sum="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ -d node_modules ] && [ "$(cat node_modules/.gqa-stamp 2>/dev/null)" = "$lock_sum" ]; then
  log "node_modules up to date with package-lock.json"
else
  log "npm ci"
  # onnxruntime-node (a bench peer) would try to download CUDA binaries in a postinstall script:
  # package.json's allowScripts blocks it on npm >= 11.16, this variable on older npm.
  ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.gqa-stamp
fi

fi # npm

if [ "${GQA_BUILD_ONLY:-0}" != 1 ] && [ "$ALL" = 1 ]; then
# --- 3b. Python environment (.venv) ---------------------------------------------------------------
step "Python environment for the PyTorch/ONNX cross-checks" "5 min"
# torch, numpy, safetensors and onnx (scripts/requirements-python.txt) for the PyTorch twin in
# python/ (installed editable when present), the tests that cross between gqa and PyTorch / ONNX,
# and the bench's PyTorch peer. GQA_SKIP_PYTHON=1 skips it; those tests then say they were skipped.
if [ "${GQA_SKIP_PYTHON:-0}" = 1 ]; then
  log "Python environment skipped (GQA_SKIP_PYTHON=1)"
else
  py_sum="$(cat scripts/requirements-python.txt $(ls python/pyproject.toml 2>/dev/null) | sha256sum | cut -d' ' -f1)"
  # torch's Linux wheel comes with its CUDA libraries: the environment takes ~5.4 GB, and pip holds
  # the downloaded wheels (~3.5 GB) beside it until the install ends. Where the disk has less than
  # GQA_PYTHON_MIN_FREE_GB (default 10) free, the environment is skipped, not left half installed
  # (ENOSPC), and the tests that need it report themselves skipped with that reason.
  free_gb=$(( $(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }') / 1048576 ))
  rm -f "$STAMPS/python-skipped"
  if [ -x .venv/bin/python ] && [ "$(cat .venv/.gqa-stamp 2>/dev/null)" = "$py_sum" ]; then
    log "Python environment (.venv) up to date"
  elif [ "$free_gb" -lt "${GQA_PYTHON_MIN_FREE_GB:-10}" ]; then
    why="only ${free_gb} GB free on $(df -P "$ROOT" | awk 'NR == 2 { print $6 }'); torch with its CUDA libraries needs ~9 GB while installing (GQA_PYTHON_MIN_FREE_GB=${GQA_PYTHON_MIN_FREE_GB:-10})"
    log "WARNING: Python environment skipped: $why; the PyTorch and ONNX-checker tests will report skipped"
    rm -rf .venv
    echo "$why" > "$STAMPS/python-skipped"
  else
    log "Python environment (${free_gb} GB free): python3 -m venv .venv; pip install -r scripts/requirements-python.txt"
    python3 -m venv .venv
    # --no-cache-dir: the wheels (torch with its CUDA libraries, ~3.5 GB) are not kept a second
    # time in ~/.cache/pip. TMPDIR on this disk: pip unpacks there, and /tmp may be a small tmpfs.
    mkdir -p target/pip-tmp
    pip_install() { TMPDIR="$ROOT/target/pip-tmp" .venv/bin/python -m pip install -q --no-cache-dir "$@"; }
    pip_install --upgrade pip
    pip_install -r scripts/requirements-python.txt
    if [ -f python/pyproject.toml ]; then
      pip_install --no-deps -e python/
    fi
    rm -rf target/pip-tmp
    echo "$py_sum" > .venv/.gqa-stamp
  fi
fi
fi # --all Python
export PATH="$ROOT/node_modules/.bin:$PATH"

# Digest of everything a binding's library build depends on: library sources (src/, build.rs),
# manifests, the lockfile and this script's flags (tests and benches of the core do not count).
rust_sum() {
  { find crates/*/src bindings/"$1"/src -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum Cargo.toml Cargo.lock crates/*/Cargo.toml bindings/"$1"/Cargo.toml
    for f in crates/*/build.rs bindings/"$1"/build.rs bindings/"$1"/package.json; do [ -f "$f" ] && sha256sum "$f"; done
    echo "$2"
  } | sha256sum | cut -d' ' -f1
}

# --- 4. native addon (napi-rs, rustup toolchain) ----------------------------------------------
step "native addon (Rust, release)" "4 min"
if [ "${GQA_SKIP_NATIVE:-0}" = 1 ]; then
  log "native addon: skipped (GQA_SKIP_NATIVE=1)"
else
  native_sum="$(rust_sum node "napi build --platform --release")"
  if [ "${GQA_FORCE_BUILD:-0}" != 1 ] && [ -f bindings/node/index.js ] && compgen -G 'bindings/node/*.node' >/dev/null \
      && [ "$(cat "$STAMPS/native" 2>/dev/null)" = "$native_sum" ]; then
    log "native addon up to date ($(ls bindings/node/*.node))"
  else
    log "native addon: napi build --platform --release (bindings/node)"
    (cd bindings/node && napi build --platform --release)
    echo "$native_sum" > "$STAMPS/native"
    log "native addon built: $(ls bindings/node/*.node)"
  fi
  # napi build regenerates bindings/node/index.d.ts, which is committed: ts/backend.ts is typed by
  # it. A build that changes it changed the binding's surface: the new declarations are to be
  # reviewed and committed with that change (in a checkout; an unpacked package has no git).
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && ! git diff --quiet -- bindings/node/index.d.ts; then
    log "ERROR: bindings/node/index.d.ts differs from the committed declarations (git diff bindings/node/index.d.ts): commit them"
    exit 1
  fi
fi

# --- 5. wasm packages (wasm-pack, Debian toolchain) ---------------------------------------------
# Four modules from the same crate:
#   pkg/          single-threaded (+simd128): runs everywhere;
#   pkg-threads/  threaded (+atomics, shared memory, feature `threads`): rayon on Web Workers /
#                 worker_threads; the TypeScript layer loads it where the host allows threads;
#   pkg-relaxed/, pkg-threads-relaxed/: the same with +relaxed-simd, where the engine has it.
WASM_RUSTFLAGS='-C target-feature=+simd128 --cfg getrandom_backend="wasm_js"'
# rustc adds no shared-memory link arguments for +atomics: without them the module would be
# silently single-threaded. --max-memory: 4 GiB, the wasm32 maximum.
WASM_MT_RUSTFLAGS='-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 --cfg getrandom_backend="wasm_js"'
WASM_MT_RUSTFLAGS+=' -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296'
WASM_MT_RUSTFLAGS+=' -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size'
WASM_MT_RUSTFLAGS+=' -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base'

# build_wasm <stamp name> <out dir> <RUSTFLAGS> [cargo args...]
build_wasm() {
  local name="$1" out="$2" flags="$3"; shift 3
  local sum
  sum="$(rust_sum wasm "wasm-pack web release $flags $* wasm-opt ${GQA_WASM_OPT:--O1}")"
  if [ "${GQA_FORCE_BUILD:-0}" != 1 ] && [ -f "bindings/wasm/$out/gqa_wasm_bg.wasm" ] && [ -f "bindings/wasm/$out/gqa_wasm.js" ] \
      && [ "$(cat "$STAMPS/$name" 2>/dev/null)" = "$sum" ]; then
    log "wasm package up to date (bindings/wasm/$out)"
    return
  fi
  log "wasm package: wasm-pack build --release --target web --mode force --no-opt $* (bindings/wasm/$out)"
  # Debian's rustc/cargo first on PATH (rustup's proxies in ~/.cargo/bin would shadow them);
  # wasm-bindgen from ~/.cargo/bin. panic=abort for wasm only (the workspace release profile
  # keeps unwind for the napi addon). Each module has its own target dir (different RUSTFLAGS).
  # (Fat LTO with one codegen unit was tried: workload (a) 410-413 ms vs 410-417 ms single-threaded,
  # +1 min of build per module; not kept.)
  PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" CARGO_TARGET_DIR="$ROOT/target/$name" \
    wasm-pack --log-level warn build bindings/wasm --release --target web --mode force --out-dir "$out" --no-opt \
    -- -Zbuild-std=std,panic_abort --config 'profile.release.panic="abort"' "$@"
  # wasm-opt from node_modules/.bin (npm binaryen), run here so the level is ours to choose:
  # it is binaryen compiled to wasm (slow): -O1 takes 12-90 s here depending on load, -O3 several
  # times that for a module ~4 % smaller. GQA_WASM_OPT=none skips it.
  if [ "${GQA_WASM_OPT:-}" = none ]; then
    log "wasm-opt skipped (GQA_WASM_OPT=none)"
  elif command -v wasm-opt >/dev/null; then
    log "wasm-opt ${GQA_WASM_OPT:--O1} bindings/wasm/$out/gqa_wasm_bg.wasm"
    wasm-opt "${GQA_WASM_OPT:--O1}" --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-threads \
      "bindings/wasm/$out/gqa_wasm_bg.wasm" -o "bindings/wasm/$out/gqa_wasm_bg.wasm"
  else
    log "wasm-opt not found: module left unoptimised by binaryen"
  fi
  # wasm-pack writes <out>/.gitignore ("*"), which would also keep it out of `npm pack`; the
  # repository's own .gitignore already ignores pkg/ and pkg-threads/.
  rm -f "bindings/wasm/$out/.gitignore"
  echo "$sum" > "$STAMPS/$name"
  log "wasm package built: $(du -h "bindings/wasm/$out/gqa_wasm_bg.wasm" | cut -f1) bindings/wasm/$out/gqa_wasm_bg.wasm"
}

if [ "$ALL" != 1 ]; then
  log "wasm packages: not needed by the main job (bash scripts/setup.sh --all or npm test builds them)"
elif [ "${GQA_SKIP_WASM:-0}" = 1 ]; then
  log "wasm packages: skipped (GQA_SKIP_WASM=1)"
else
  # Each module also comes with +relaxed-simd (its GEMM's multiply-add is f32x4.relaxed_madd,
  # a fused multiply-add where the engine has one), loaded where WebAssembly.validate accepts it.
  step "four wasm modules (single/threaded, with/without relaxed SIMD)" "20 min"
  RELAXED=',+relaxed-simd'
  build_wasm wasm pkg "$WASM_RUSTFLAGS"
  # ts/backend.ts is typed by a committed copy of the declarations wasm-bindgen generates
  # (bindings/wasm/gqa_wasm.d.ts): the module just built must declare the same surface.
  if ! cmp -s bindings/wasm/pkg/gqa_wasm.d.ts bindings/wasm/gqa_wasm.d.ts; then
    log "ERROR: bindings/wasm/pkg/gqa_wasm.d.ts differs from bindings/wasm/gqa_wasm.d.ts: copy it there and commit it"
    exit 1
  fi
  build_wasm wasm-threads pkg-threads "$WASM_MT_RUSTFLAGS" --features threads
  build_wasm wasm-relaxed pkg-relaxed "${WASM_RUSTFLAGS/+simd128/+simd128$RELAXED}"
  build_wasm wasm-threads-relaxed pkg-threads-relaxed "${WASM_MT_RUSTFLAGS/+simd128/+simd128$RELAXED}" --features threads
  # The threaded packages' worker pool: the project's own startWorkers (Node worker_threads,
  # inline Web Worker source) inlined into the glue in place of wasm-bindgen-rayon's helper file.
  node scripts/inline-worker-helper.mjs bindings/wasm/pkg-threads
  node scripts/inline-worker-helper.mjs bindings/wasm/pkg-threads-relaxed
fi

# --- 6. TypeScript -> dist/ ---------------------------------------------------------------------
step "TypeScript -> dist/" "10 s"
log "tsc -p tsconfig.build.json -> dist/"
rm -rf dist
tsc -p tsconfig.build.json
[ -f dist/cli/index.js ] && chmod +x dist/cli/index.js

# --- 7. browser demo -> demo/dist/ (static; ~2 s) -------------------------------------------------
if [ "$ALL" = 1 ]; then
  step "browser demo -> demo/dist/" "5 s"
  log "vite build --config demo/vite.config.ts -> demo/dist/"
  vite build --config demo/vite.config.ts --logLevel error
fi
log "done in $((SECONDS - START)) s"
