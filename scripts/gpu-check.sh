#!/usr/bin/env bash
# The CUDA backend's proof on a GPU machine, prepared here (`npm run gpu-check`).
#
#   bash scripts/gpu-check.sh          here (no GPU needed): builds what must travel, packs it into
#                                      .gpu/, checks that it fits the 64 MiB a device call carries,
#                                      dry-runs the Node check on the CPU addon, then runs the GPU
#                                      part, which stops at "no GPU here" on a machine without one,
#                                      and prints the one command for the GPU machine
#   bash scripts/gpu-check.sh --run    the GPU part (what that command runs; < 5 min on an H100):
#                                      1. nvidia-smi; 2. the Rust CUDA tests (crates/gqa-core/tests/
#                                      cuda.rs: PyTorch fixtures, forwards f32/bf16 vs the CPU,
#                                      sessions, 20 training steps); 3. scripts/gpu-check.mjs: the
#                                      TypeScript API on the GPU vs the CPU addon, and the bench
#                                      against PyTorch on the same GPU (ratios, TFLOP/s)
#
# What travels (.gpu/, git-ignored, plus dist/ and the CPU addon): the CUDA addon and the CUDA
# test executable (xz), and a Node binary (xz; the GPU machine's image has Python and PyTorch but
# no Node). On the GPU machine the CUDA 13 libraries (cublas, curand) come from PyTorch's
# pip wheels, found through python3; libcuda.so.1 from the driver.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
PACK="$ROOT/.gpu"
CARRY=(.gpu dist bindings/node/gqa.linux-x64-gnu.node bindings/node/index.js)
LIMIT=$((64 * 1024 * 1024))
log() { printf '[gpu-check] %s\n' "$*"; }

# ---- the GPU part -------------------------------------------------------------------------------
gpu_part() {
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    log "no NVIDIA GPU here (nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'lists none' || echo 'not found')): the GPU part stops here"
    return 0
  fi
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  local work=/tmp/gqa-gpu
  mkdir -p "$work"
  for f in gqa-cuda.linux-x64-gnu.node cuda-tests node; do
    xz -dc "$PACK/$f.xz" >"$work/$f"
  done
  chmod +x "$work/cuda-tests" "$work/node"
  cp "$work/gqa-cuda.linux-x64-gnu.node" bindings/node/
  # The CUDA 13 libraries of PyTorch's wheels (nvidia/cu13/lib, or one lib/ per package).
  local libs
  libs=$(python3 -c 'import glob, os, nvidia
roots = list(nvidia.__path__)
dirs = [d for r in roots for d in glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "cu*", "lib"))]
print(":".join(sorted(set(dirs))))' 2>/dev/null || true)
  [ -n "$libs" ] || log "python3 has no nvidia.* CUDA wheels: the CUDA libraries must be on LD_LIBRARY_PATH already"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Both parts run even when the first fails: one GPU call should bring back everything.
  local status=0
  log "1/2 Rust CUDA tests (crates/gqa-core/tests/cuda.rs)"
  GQA_FIXTURES_DIR="$ROOT/fixtures" timeout 240 "$work/cuda-tests" --test-threads=1 --nocapture || status=1
  log "2/2 the TypeScript API on the GPU, and the bench against PyTorch"
  PATH="$work:$PATH" timeout 300 "$work/node" scripts/gpu-check.mjs --backend cuda --out "${OUT:-$work}" || status=1
  log "GPU part $([ $status = 0 ] && echo passed || echo FAILED)"
  return $status
}

if [ "${1:-}" = "--run" ]; then
  # On the device machine $OUT comes back: keep the whole log there too.
  if [ -n "${OUT:-}" ]; then gpu_part 2>&1 | tee "$OUT/gpu-check.log"; exit "${PIPESTATUS[0]}"; fi
  gpu_part
  exit $?
fi
[ $# -eq 0 ] || { echo "scripts/gpu-check.sh: unknown argument '$1' (expected --run or nothing)" >&2; exit 2; }

# ---- here: build, pack, size, dry run -----------------------------------------------------------
[ -f dist/index.js ] && [ -f bindings/node/gqa.linux-x64-gnu.node ] || {
  echo "gpu-check: dist/ or the CPU addon is missing: run \`bash scripts/setup.sh\` first" >&2; exit 1; }
bash scripts/build-cuda.sh --tests
exe=$(cat target/cuda/cuda-test-exe)
mkdir -p "$PACK"
log "packing into .gpu/ (xz)"
xz -T0 -6 -c bindings/node/gqa-cuda.linux-x64-gnu.node >"$PACK/gqa-cuda.linux-x64-gnu.node.xz"
xz -T0 -6 -c "$exe" >"$PACK/cuda-tests.xz"
node_bin=$(command -v node)
if [ ! -f "$PACK/node.xz" ] || [ "$node_bin" -nt "$PACK/node.xz" ]; then
  xz -T0 -6 -c "$node_bin" >"$PACK/node.xz"
fi
# Size of one device call: the working tree (tracked and untracked, not ignored) plus the carry.
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb "${CARRY[@]}" | tail -1 | cut -f1)
total=$((tree + carried))
du -h "$PACK"/*.xz
log "one device call carries $((total / 1048576)) MiB (working tree $((tree / 1048576)) MiB + ${CARRY[*]}); limit 64 MiB"
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu-check: $((total / 1048576)) MiB does not fit in 64 MiB" >&2
  exit 1
fi
# The dry run's PyTorch peer: the checkout's .venv (`bash scripts/setup.sh --all`), else python3.
py=${GQA_BENCH_PYTHON:-$([ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3)}
if "$py" -c "import torch, safetensors" 2>/dev/null; then
  log "dry run of scripts/gpu-check.mjs on the CPU addon (--backend native --quick; PyTorch from $py)"
  GQA_BENCH_PYTHON="$py" node scripts/gpu-check.mjs --backend native --quick --out /tmp/gqa-gpu-dry
else
  log "dry run of scripts/gpu-check.mjs on the CPU addon without the bench ($py has no torch: \`bash scripts/setup.sh --all\` installs it)"
  node scripts/gpu-check.mjs --backend native --quick --no-bench --out /tmp/gqa-gpu-dry
fi
gpu_part
cat <<EOF

[gpu-check] ready. On the GPU machine (the device tool's run), from the repository root:
  command: bash scripts/gpu-check.sh --run
  carry:   $(printf '"%s" ' "${CARRY[@]}")
  timeout: 420 s (the run takes < 5 min; the first CUDA call loads candle's PTX)
EOF
