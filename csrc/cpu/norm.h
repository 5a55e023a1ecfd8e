// RMSNorm and its fused residual-add variant (docs/internals.md). The torch-facing functions
// check arguments and run rows in parallel; each row is one call of a row kernel, built portable
// (norm.cpp), AVX2 (norm_avx2.cpp) and AVX-512 (norm_avx512.cpp) from norm_simd.h.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

// One row each; `w` is the weight in fp32. bfloat16 travels as uint16_t.
struct NormKernels {
  void (*rms_f32)(float* out, const float* x, const float* w, int64_t h, float eps);
  void (*rms_bf16)(uint16_t* out, const uint16_t* x, const float* w, int64_t h, float eps);
  // residual = x + residual (rounded to the dtype); x = rms_norm(residual) * w.
  void (*add_rms_f32)(float* x, float* residual, const float* w, int64_t h, float eps);
  void (*add_rms_bf16)(uint16_t* x, uint16_t* residual, const float* w, int64_t h, float eps);
};

NormKernels norm_kernels_avx2();
NormKernels norm_kernels_avx512();

void rms_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps);
void fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps);

}  // namespace radixserve::cpu
