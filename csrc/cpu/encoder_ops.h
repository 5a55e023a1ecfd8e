// Encoder (BERT-family) elementwise kernels: LayerNorm with an optional fused residual add, and
// GELU (exact erf form, or the tanh approximation). Row kernels are built portable
// (encoder_ops.cpp), AVX2 and AVX-512 (encoder_ops_avx2.cpp, encoder_ops_avx512.cpp from
// encoder_ops_simd.h), like norm.* and activation.*.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

// One row each; weight and bias in fp32. `res` may be null (no residual add).
struct EncoderKernels {
  void (*ln_f32)(float* out, const float* x, const float* res, const float* w, const float* b,
                 int64_t h, float eps);
  void (*ln_bf16)(uint16_t* out, const uint16_t* x, const uint16_t* res, const float* w,
                  const float* b, int64_t h, float eps);
  void (*gelu_f32)(float* out, const float* x, int64_t n, bool tanh_approx);
  void (*gelu_bf16)(uint16_t* out, const uint16_t* x, int64_t n, bool tanh_approx);
};

EncoderKernels encoder_kernels_avx2();
EncoderKernels encoder_kernels_avx512();

// out = layer_norm(x + residual) * weight + bias per row of [N, H]; residual may be None.
void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps);
// out = gelu(x), elementwise over any contiguous shape.
void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx);

}  // namespace radixserve::cpu
