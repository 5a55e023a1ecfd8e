// RMSNorm launchers (raw pointers, contiguous rows). Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * weight; out and x of `dtype`, weight of `dtype`
// or float32 (weight_dtype).
cudaError_t launch_rms_norm(DType dtype, DType weight_dtype, void* out, const void* x,
                            const void* weight, int64_t rows, int64_t hidden, float eps,
                            cudaStream_t stream);

// In place: residual = x + residual (rounded to dtype); x = rms_norm(residual) * weight.
cudaError_t launch_fused_add_rms_norm(DType dtype, DType weight_dtype, void* x, void* residual,
                                      const void* weight, int64_t rows, int64_t hidden, float eps,
                                      cudaStream_t stream);

}  // namespace radixserve::cuda
