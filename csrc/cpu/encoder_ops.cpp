// torch-facing LayerNorm and GELU: checks, parallel loops, portable row kernels.
#include "cpu/encoder_ops.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

// Two passes over the (x + res) row kept in fp32: mean, then variance about the mean, which is
// what torch computes (no E[x^2] - E[x]^2 cancellation).
template <typename T>
void ln_row(T* out, const T* x, const T* res, const float* w, const float* b, int64_t h,
            float eps) {
  float mean = 0.0f;
  for (int64_t i = 0; i < h; ++i) mean += to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f);
  mean /= static_cast<float>(h);
  float var = 0.0f;
  for (int64_t i = 0; i < h; ++i) {
    const float d = to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f) - mean;
    var += d * d;
  }
  const float inv = 1.0f / std::sqrt(var / static_cast<float>(h) + eps);
  for (int64_t i = 0; i < h; ++i) {
    const float v = to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f);
    store_f32(out + i, (v - mean) * inv * w[i] + b[i]);
  }
}

template <typename T>
void gelu_row(T* out, const T* x, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = to_f32(x[i]);
    const float g = tanh_approx
                        ? 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v)))
                        : 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    store_f32(out + i, g);
  }
}

EncoderKernels kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return encoder_kernels_avx512();
    case Isa::kAvx2:
      return encoder_kernels_avx2();
    default:
      return {&ln_row<float>, &ln_row<uint16_t>, &gelu_row<float>, &gelu_row<uint16_t>};
  }
}

at::Tensor check_param(const at::Tensor& t, const char* name, int64_t h) {
  check_tensor(t, name, 1);
  check_float_dtype(t, name);
  check_size(t, name, 0, h);
  return t.to(at::kFloat).contiguous();
}

}  // namespace

void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_tensor(x, "x", 2);
  check_tensor(out, "out", 2);
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ",
           out.sizes());
  const bool has_res = residual.defined();
  if (has_res) {
    check_tensor(residual, "residual", 2);
    check_same_dtype(residual, x, "residual", "x");
    RS_CHECK(residual.sizes() == x.sizes(), "residual must have the shape of x ", x.sizes(),
             ", got ", residual.sizes());
  }
  const int64_t n = x.size(0), h = x.size(1);
  RS_CHECK(h > 0, "the hidden size must be positive");
  RS_CHECK(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
  const at::Tensor w = check_param(weight, "weight", h);
  const at::Tensor b = check_param(bias, "bias", h);
  const float* wp = w.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  const EncoderKernels k = kernels();
  const float e = static_cast<float>(eps);
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  const void* rp = has_res ? residual.data_ptr() : nullptr;
  at::parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (f32) {
        const float* rr = rp ? static_cast<const float*>(rp) + r * h : nullptr;
        k.ln_f32(static_cast<float*>(op) + r * h, static_cast<const float*>(xp) + r * h, rr, wp,
                 bp, h, e);
      } else {
        const uint16_t* rr = rp ? static_cast<const uint16_t*>(rp) + r * h : nullptr;
        k.ln_bf16(static_cast<uint16_t*>(op) + r * h, static_cast<const uint16_t*>(xp) + r * h,
                  rr, wp, bp, h, e);
      }
    }
  });
}

void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx) {
  RS_CHECK(x.defined() && out.defined(), "x and out must be tensors");
  RS_CHECK(x.device().is_cpu() && out.device().is_cpu(), "x and out must be on the CPU");
  RS_CHECK(x.is_contiguous() && out.is_contiguous(), "x and out must be contiguous");
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ",
           out.sizes());
  const int64_t total = x.numel();
  const EncoderKernels k = kernels();
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  constexpr int64_t kBlock = 4096;  // elements per task: large enough to amortise scheduling
  const int64_t blocks = (total + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t s = blk * kBlock, len = std::min(kBlock, total - s);
      if (f32) {
        k.gelu_f32(static_cast<float*>(op) + s, static_cast<const float*>(xp) + s, len,
                   tanh_approx);
      } else {
        k.gelu_bf16(static_cast<uint16_t*>(op) + s, static_cast<const uint16_t*>(xp) + s, len,
                    tanh_approx);
      }
    }
  });
}

}  // namespace radixserve::cpu
