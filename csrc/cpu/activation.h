// SiLU-and-mul, the gated activation of Llama-family MLPs (docs/internals.md). Row kernels are
// built portable (activation.cpp), AVX2 and AVX-512 (activation_avx2.cpp, activation_avx512.cpp
// from activation_simd.h).
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

// out[0:n] = silu(x[0:n]) * x[n:2n] for one row.
struct ActivationKernels {
  void (*silu_mul_f32)(float* out, const float* x, int64_t n);
  void (*silu_mul_bf16)(uint16_t* out, const uint16_t* x, int64_t n);
};

ActivationKernels activation_kernels_avx2();
ActivationKernels activation_kernels_avx512();

void silu_and_mul(const at::Tensor& out, const at::Tensor& x);

}  // namespace radixserve::cpu
