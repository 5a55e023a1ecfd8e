#!/usr/bin/env bash
# Incremental developer build of radixserve._C into python/radixserve/ (for PYTHONPATH=python).
# A lock serialises concurrent builds of the same tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/dev"
mkdir -p "$build"
exec 9>"$build/.lock"
flock 9
# ccache (when installed) lets a new worktree reuse another tree's objects: paths are hashed
# relative to CCACHE_BASEDIR.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$root")}"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python)" >/dev/null
fi
cmake --build "$build" -j 2
# Copy then rename: replacing the file in place would crash processes that have it loaded.
for so in "$build"/_C*.so; do
  cp -f "$so" "$root/python/radixserve/.$(basename "$so").tmp"
  mv -f "$root/python/radixserve/.$(basename "$so").tmp" "$root/python/radixserve/$(basename "$so")"
done
