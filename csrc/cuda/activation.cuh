// Gated activation launcher (raw pointers, contiguous rows). Tested on an H200 (gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// out[r, i] = silu(x[r, i]) * x[r, inter + i] for i < inter; out [rows, inter], x [rows, 2*inter].
cudaError_t launch_silu_and_mul(DType dtype, void* out, const void* x, int64_t rows, int64_t inter,
                                cudaStream_t stream);

}  // namespace radixserve::cuda
