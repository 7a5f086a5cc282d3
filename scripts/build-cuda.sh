#!/usr/bin/env bash
# Builds the CUDA addon, bindings/node/gqa-cuda.linux-x64-gnu.node (`npm run build:cuda`): the
# Node binding with gqa-core on candle's CUDA backend (cargo feature `cuda`). Needs no GPU and no
# CUDA installation; never run by `npm test` or CI. With --tests it also builds the CUDA test
# executable (crates/gqa-core/tests/cuda.rs, `cargo test --no-run`) and prints its path.
#
# - nvcc: NVIDIA's PyPI wheels, CUDA 13.0, installed into .cuda/ (git-ignored). 13.0 because
#   candle's kernels ship as PTX, which a driver loads only when it knows the PTX version: PTX from
#   nvcc 13.0 loads on drivers of CUDA 13.0 and later (R580+), PTX from a newer nvcc does not.
# - sm_90 (H100/H200) by default: CUDA_COMPUTE_CAP=80 (A100), 89 (L4/RTX 40xx) ... to change.
# - Linking: candle links libcuda, libcublas, libcublasLt, libcurand, libnvrtc and libcudart. The
#   build links against stubs with their SONAMEs (.cuda/stubs); the real libraries are loaded when
#   the addon loads: the driver's libcuda.so.1, and the CUDA 13 libraries from LD_LIBRARY_PATH
#   (pip's nvidia-cublas and nvidia-curand, which PyTorch's CUDA wheels bring). The linker keeps
#   only the libraries the addon calls: libcuda, libcublas, libcurand.
# Time: ~15 min on a bare 2-core machine (candle's CUDA kernels), as much again for --tests (its
# dependencies resolve to other features, so candle's kernels build twice); seconds when nothing
# changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
TESTS=0
for arg in "$@"; do
  case "$arg" in
    --tests) TESTS=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "scripts/build-cuda.sh: unknown argument '$arg' (expected --tests or nothing)" >&2; exit 2 ;;
  esac
done
log() { printf '[build:cuda] %s\n' "$*"; }

# GQA_CUDA_TOOLCHAIN: where nvcc and the stubs go (default .cuda/ in the checkout).
TC="${GQA_CUDA_TOOLCHAIN:-$ROOT/.cuda}"
CU="$TC/py/nvidia/cu13"
# The wheels' versions must agree with each other (nvcc finds cicc, the headers and libcudart by
# relative paths) and be a CUDA version cudarc 0.19 knows.
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
if [ ! -x "$CU/bin/nvcc" ] || [ ! -f "$CU/include/nv/target" ]; then
  log "installing nvcc 13.0 (PyPI wheels) into .cuda/py"
  mkdir -p "$TC/wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$TC/wheels" "${WHEELS[@]}"
  # The wheels share the nvidia/cu13 tree: unpack them into one prefix.
  for w in "$TC"/wheels/*.whl; do python3 -m zipfile -e "$w" "$TC/py"; done
  chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2>/dev/null || true
fi
"$CU/bin/nvcc" --version | tail -1

# Link stubs: one shared library per CUDA library with the real one's SONAME, defining the
# functions cudarc declares for it (cudarc's `src/<lib>/sys` bindings), so that the linker records
# a dependency on it (DT_NEEDED) and the loader binds the real one's functions at load time.
STUBS="$TC/stubs"
if [ ! -f "$STUBS/libcudart.so" ]; then
  mkdir -p "$STUBS"
  cudarc=$(cargo metadata --format-version 1 --features gqa-node/cuda | python3 -c 'import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))')
  for lib in driver:cuda:1 cublas:cublas:13 cublaslt:cublasLt:13 curand:curand:10 nvrtc:nvrtc:13 runtime:cudart:13; do
    IFS=: read -r dir name major <<<"$lib"
    grep -ho 'pub unsafe fn [A-Za-z0-9_]*' "$cudarc/src/$dir/sys/"*.rs | sort -u \
      | awk '{ print "void " $4 "(void) {}" }' >"$STUBS/lib$name.c"
    gcc -shared -fPIC -Wl,-soname,"lib$name.so.$major" -o "$STUBS/lib$name.so" "$STUBS/lib$name.c"
  done
fi

export PATH="$CU/bin:$PATH" CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="$ROOT/target/cuda"
export RUSTFLAGS="-L native=$STUBS"
log "cargo build --release -p gqa-node --features cuda (sm_$CUDA_COMPUTE_CAP)"
cargo build --release -p gqa-node --features cuda
OUT=bindings/node/gqa-cuda.linux-x64-gnu.node
cp "$CARGO_TARGET_DIR/release/libgqa_node.so" "$OUT"
# The linker keeps the libraries whose functions the addon calls (cuBLASLt, NVRTC and the runtime
# are dropped with the kernels that use them); the driver must be among them.
needed=$(readelf -d "$OUT" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
case " $needed" in
  *" libcuda.so.1 "*) ;;
  *) echo "build:cuda: $OUT does not record libcuda.so.1 (needs: $needed)" >&2; exit 1 ;;
esac
log "$OUT needs: $needed"
log "$OUT ($(du -h "$OUT" | cut -f1))"

if [ "$TESTS" = 1 ]; then
  log "cargo test --release -p gqa-core --features cuda --test cuda --no-run"
  exe=$(cargo test --release -p gqa-core --features cuda --test cuda --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda" and m.get("executable"):
        print(m["executable"])')
  [ -n "$exe" ] || { echo "build:cuda: the cuda test executable was not built" >&2; exit 1; }
  log "test executable: $exe"
  echo "$exe" >"$CARGO_TARGET_DIR/cuda-test-exe"
fi
