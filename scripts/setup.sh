#!/usr/bin/env bash
# One-shot, idempotent setup and build of gqa. Safe to run again: each step checks first and says
# what it skips, so a second run takes seconds.
#
#  1. Debian's wasm toolchain (rustc-web, cargo-web, rust-web-src, rust-web-llvm, lld-22) and chromium (apt)
#  2. wasm-bindgen-cli 0.2.130 and wasm-pack 0.15.1 (cargo install from crates.io)
#  3. npm ci (package-lock.json)
#  4. native addon: napi build --platform --release (rustup toolchain)  -> bindings/node/gqa.<triple>.node + index.js
#  5. wasm package: wasm-pack build --target web (Debian toolchain, -Zbuild-std, +simd128) -> bindings/wasm/pkg/
#  6. TypeScript: tsc -> dist/
#  7. browser demo: vite build --config demo/vite.config.ts -> demo/dist/ (static files)
#
# Environment: GQA_WASM_OPT (wasm-opt level, default -O1, `none` to skip); GQA_BUILD_ONLY=1 skips steps 1-3 (`npm run build`); GQA_SKIP_NATIVE=1 / GQA_SKIP_WASM=1 skip a build; GQA_FORCE_BUILD=1 ignores the stamps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
START=$SECONDS
log() { printf '[setup %3ds] %s\n' "$((SECONDS - START))" "$*"; }
STAMPS="$ROOT/target/stamps"
mkdir -p "$STAMPS"

WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1
export PATH="$HOME/.cargo/bin:$PATH"

if [ "${GQA_BUILD_ONLY:-0}" != 1 ]; then
# --- 1. apt packages --------------------------------------------------------------------------
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

# --- 3. npm packages --------------------------------------------------------------------------
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
fi # GQA_BUILD_ONLY
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
fi

# --- 5. wasm package (wasm-pack, Debian toolchain) ----------------------------------------------
WASM_RUSTFLAGS='-C target-feature=+simd128 --cfg getrandom_backend="wasm_js"'
if [ "${GQA_SKIP_WASM:-0}" = 1 ]; then
  log "wasm package: skipped (GQA_SKIP_WASM=1)"
else
  wasm_sum="$(rust_sum wasm "wasm-pack web release $WASM_RUSTFLAGS wasm-opt ${GQA_WASM_OPT:--O1}")"
  if [ "${GQA_FORCE_BUILD:-0}" != 1 ] && [ -f bindings/wasm/pkg/gqa_wasm_bg.wasm ] && [ -f bindings/wasm/pkg/gqa_wasm.js ] \
      && [ "$(cat "$STAMPS/wasm" 2>/dev/null)" = "$wasm_sum" ]; then
    log "wasm package up to date (bindings/wasm/pkg)"
  else
    log "wasm package: wasm-pack build --release --target web --mode force --no-opt (bindings/wasm)"
    # Debian's rustc/cargo first on PATH (rustup's proxies in ~/.cargo/bin would shadow them);
    # wasm-bindgen from ~/.cargo/bin. panic=abort for wasm only (the workspace release profile
    # keeps unwind for the napi addon).
    PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTFLAGS="$WASM_RUSTFLAGS" CARGO_TARGET_DIR="$ROOT/target/wasm" \
      wasm-pack --log-level warn build bindings/wasm --release --target web --mode force --out-dir pkg --no-opt \
      -- -Zbuild-std=std,panic_abort --config 'profile.release.panic="abort"'
    # wasm-opt from node_modules/.bin (npm binaryen), run here so the level is ours to choose:
    # it is binaryen compiled to wasm (slow): -O1 takes 12-90 s here depending on load, -O3 several
    # times that for a module ~4 % smaller. GQA_WASM_OPT=none skips it.
    if [ "${GQA_WASM_OPT:-}" = none ]; then
      log "wasm-opt skipped (GQA_WASM_OPT=none)"
    elif command -v wasm-opt >/dev/null; then
      log "wasm-opt ${GQA_WASM_OPT:--O1} bindings/wasm/pkg/gqa_wasm_bg.wasm"
      wasm-opt "${GQA_WASM_OPT:--O1}" --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        bindings/wasm/pkg/gqa_wasm_bg.wasm -o bindings/wasm/pkg/gqa_wasm_bg.wasm
    else
      log "wasm-opt not found: module left unoptimised by binaryen"
    fi
    # wasm-pack writes pkg/.gitignore ("*"), which would also keep pkg/ out of `npm pack`; the
    # repository's own .gitignore already ignores pkg/.
    rm -f bindings/wasm/pkg/.gitignore
    echo "$wasm_sum" > "$STAMPS/wasm"
    log "wasm package built: $(du -h bindings/wasm/pkg/gqa_wasm_bg.wasm | cut -f1) bindings/wasm/pkg/gqa_wasm_bg.wasm"
  fi
fi

# --- 6. TypeScript -> dist/ ---------------------------------------------------------------------
log "tsc -p tsconfig.build.json -> dist/"
rm -rf dist
tsc -p tsconfig.build.json
[ -f dist/cli/index.js ] && chmod +x dist/cli/index.js

# --- 7. browser demo -> demo/dist/ (static; ~2 s) -------------------------------------------------
log "vite build --config demo/vite.config.ts -> demo/dist/"
vite build --config demo/vite.config.ts --logLevel error
log "done in $((SECONDS - START)) s"
