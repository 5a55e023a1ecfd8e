#!/usr/bin/env bash
# Fill build/wheelhouse with the wheels tools/gpu_check.sh installs on a GPU machine that has no
# network. Its Python 3.12 has a CUDA torch, pybind11, scikit-build-core, cmake, ninja, nvcc,
# transformers, tokenizers, numpy, pytest and the rest of what the GPU checks import, but not
# msgspec, pyzmq or gguf (the device tool's KINDS.md lists its packages): only those three are
# fetched, without their dependencies, so that the transfer keeps room for the default model.
# Run it here, then hand the folder to the device run:
#
#   bash tools/gpu_wheelhouse.sh                 # -> build/wheelhouse (cp312, manylinux x86_64)
#   run(command="bash tools/gpu_check.sh", carry=["build/wheelhouse"])
#
# torch is never downloaded (the machine's CUDA torch is used), nor xgrammar (it depends on
# torch; the GPU checks run with --grammar-backend none). The device transfer carries 64 MiB at
# most, so the default model's GGUF (94 MiB) is cut in two: build/gpu_model_a goes with a first
# call, build/gpu_model_b with the next one while the machine is still warm, and gpu_check.sh
# joins them (checking the SHA-256); with one part only, the default-model checks skip:
#
#   run(command="bash tools/gpu_check.sh", carry=["build/wheelhouse", "build/gpu_model_a"])
#   run(command="GPU_CHECK_STEPS='wheels build engine bench' bash tools/gpu_check.sh",
#       carry=["build/wheelhouse", "build/gpu_model_b"])
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/build/wheelhouse}"
mkdir -p "$dest"
packages=(msgspec pyzmq "gguf>=0.10")
python -m pip download -q --no-deps --dest "$dest" --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "${packages[@]}"
# Anything that pulled torch or CUDA libraries in as a dependency is dropped again.
rm -f "$dest"/torch-*.whl "$dest"/nvidia_*.whl "$dest"/triton-*.whl
# The default model needs two transfers (above); its tokenizer fits in one: the tiny test models and the benchmark's
# SmolLM2-shaped random model use it (RADIXSERVE_TEST_TOKENIZER in tools/gpu_check.sh).
PYTHONPATH="$root/python" python -c "
import sys
from radixserve.models.tokenizer import load_tokenizer
load_tokenizer(None).save_pretrained(sys.argv[1])
" "$dest/smollm2-tokenizer" >/dev/null
echo "gpu_wheelhouse: $(ls "$dest" | wc -l) wheels, $(du -sh "$dest" | cut -f1) in $dest"
gguf="$(PYTHONPATH="$root/python" python -c \
  'from radixserve.models.default_model import default_model_path as p; print(p())' 2>/dev/null || true)"
if [ -n "$gguf" ]; then
  half=$((50 * 1024 * 1024))
  rm -rf "$root/build/gpu_model_a" "$root/build/gpu_model_b"
  mkdir -p "$root/build/gpu_model_a" "$root/build/gpu_model_b"
  head -c "$half" "$gguf" >"$root/build/gpu_model_a/part"
  tail -c +$((half + 1)) "$gguf" >"$root/build/gpu_model_b/part"
  (cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") >"$root/build/gpu_model_b/SHA256SUMS"
  echo "gpu_wheelhouse: default model in two parts: build/gpu_model_a ($(du -sh "$root/build/gpu_model_a" | cut -f1)), build/gpu_model_b ($(du -sh "$root/build/gpu_model_b" | cut -f1))"
else
  echo "gpu_wheelhouse: the default model is not installed here: its GPU checks will skip"
fi
