#!/usr/bin/env bash
# Runs the AVX-512 kernel builds' tests on a CPU without AVX-512 (any AVX2 host): builds
# radixserve._C with its *_avx512.cpp sources on SIMDe's emulation (CMake option
# RADIXSERVE_AVX512_EMULATION; needs libsimde-dev), puts it into a copy of the package, and runs
# the ISA-parametrised tests' avx512 cases against it, then a few whole-model tests whose
# kernels all take the (emulated) AVX-512 build. On an AVX-512 host the normal test suite runs
# these cases natively; this check is for the hosts that never could.
# Usage: bash tools/avx512_emulation_check.sh [extra pytest args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/avx512emu"
if [ ! -f /usr/include/simde/x86/avx512.h ] && [ ! -f /usr/local/include/simde/x86/avx512.h ]; then
  echo "SIMDe headers not found: apt-get install libsimde-dev" >&2
  exit 2
fi
mkdir -p "$build"
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$root")}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
if [ ! -f "$build/build.ninja" ]; then
  # -O1 and no link-time optimisation: a build for tests (4 min instead of 8 on 2 cores; the
  # tests run as fast).
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
    -DRADIXSERVE_AVX512_EMULATION=ON -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF "${launcher[@]}" -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python)" >/dev/null
fi
echo "building radixserve._C with emulated AVX-512 kernels in $build"
cmake --build "$build" -j 2

pkg="$build/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$root/python/radixserve" "$pkg/"
rm -f "$pkg"/radixserve/_C*.so
cp "$build"/_C*.so "$pkg/radixserve/"
export PYTHONPATH="$pkg"
python - <<'EOF'
from radixserve import _C
f = _C.cpu_features()
assert f["avx512_emulated"] and f["best_isa"] == "avx512", f
print("emulated build loaded:", f)
EOF

cd "$root"
# Each kernel family's tests, AVX-512 cases only (their test ids name the build).
python -m pytest -q -p no:cacheprovider -k avx512 "$@" \
  tests/kernels tests/pooling/test_encoder_ops.py tests/pooling/test_encoder_stack.py \
  tests/engine/test_spec_sampling.py
# Whole models on the best build (now AVX-512): Llama against transformers, the fused decode
# step against the per-op path, the quantized GGUF model's greedy fidelity, and BERT against
# transformers and sentence-transformers.
python -m pytest -q -p no:cacheprovider "$@" tests/models/test_llama.py \
  tests/models/test_fused_decode.py tests/models/test_gguf_quantized.py tests/pooling/test_bert_model.py
