#!/usr/bin/env bash
# Incremental developer build of radixserve._C into python/radixserve/ (for PYTHONPATH=python).
# A lock serialises concurrent builds of the same tree.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/dev"
mkdir -p "$build"
exec 9>"$build/.lock"
flock 9
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python)" >/dev/null
fi
cmake --build "$build" -j 2
# Copy then rename: replacing the file in place would crash processes that have it loaded.
for so in "$build"/_C*.so; do
  cp -f "$so" "$root/python/radixserve/.$(basename "$so").tmp"
  mv -f "$root/python/radixserve/.$(basename "$so").tmp" "$root/python/radixserve/$(basename "$so")"
done
