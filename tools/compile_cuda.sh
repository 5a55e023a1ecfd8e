#!/usr/bin/env bash
# Compile check of the CUDA kernels: every csrc/cuda/*.cu on its own with nvcc for sm_80 and
# sm_90a, object files thrown away. No GPU is needed (none exists in this project's CI; a lent GPU
# machine runs tools/gpu_check.sh). Fails on any compiler error or warning in our sources.
#
#   bash tools/compile_cuda.sh            # uses ${CUDACXX:-/usr/local/cuda/bin/nvcc}
#   NVCC_THREADS=1 bash tools/compile_cuda.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

nvcc="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
if [ ! -x "$nvcc" ] && command -v nvcc >/dev/null; then nvcc="$(command -v nvcc)"; fi
if [ ! -x "$nvcc" ]; then
  echo "compile_cuda: nvcc not found (set CUDACXX or install the CUDA toolkit)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/radixserve_cuda.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The torch-facing sources (torch_*.cu) need torch's headers. A CPU-only torch wheel ships the
# c10/cuda headers but not the one CMake generates for CUDA builds; for this compile check a
# stand-in defines what a CUDA wheel's copy defines.
python="$(command -v python || command -v python3)"
torch_inc="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' 2>/dev/null || true)"
includes=(-I "$root/csrc")
if [ -n "$torch_inc" ] && [ -d "$torch_inc" ]; then
  includes+=(-isystem "$torch_inc" -isystem "$torch_inc/torch/csrc/api/include")
  if [ ! -f "$torch_inc/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    mkdir -p "$work/shim/c10/cuda/impl"
    printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' \
      >"$work/shim/c10/cuda/impl/cuda_cmake_macros.h"
    includes+=(-isystem "$work/shim")
    echo "compile_cuda: CPU-only torch at $torch_inc: using a stand-in c10/cuda/impl/cuda_cmake_macros.h"
  fi
else
  echo "compile_cuda: torch is not importable: the torch_*.cu sources will fail" >&2
fi

flags=(
  -gencode arch=compute_80,code=sm_80
  -gencode arch=compute_90a,code=sm_90a
  -std=c++17 -O3 --threads "${NVCC_THREADS:-2}"
  --Werror all-warnings -Xcompiler -Wall
  -DRADIXSERVE_WITH_CUDA=1
)

echo "compile_cuda: $("$nvcc" --version | tail -n 1) -> sm_80, sm_90a"
shopt -s nullglob
sources=("$root"/csrc/cuda/*.cu)
if [ ${#sources[@]} -eq 0 ]; then
  echo "compile_cuda: no csrc/cuda/*.cu sources" >&2
  exit 1
fi

failed=0
start_all=$SECONDS
for src in "${sources[@]}"; do
  name="${src#"$root"/}"
  obj="$work/$(basename "$src" .cu).o"
  start=$SECONDS
  if "$nvcc" "${flags[@]}" "${includes[@]}" -c "$src" -o "$obj" >"$work/log" 2>&1; then
    printf 'ok    %-36s %4ds\n' "$name" $((SECONDS - start))
  else
    printf 'FAIL  %-36s %4ds\n' "$name" $((SECONDS - start))
    sed 's/^/      /' "$work/log"
    failed=$((failed + 1))
  fi
done

total=${#sources[@]}
echo "compile_cuda: $((total - failed))/$total sources compiled for sm_80 and sm_90a in $((SECONDS - start_all))s"
[ "$failed" -eq 0 ]
