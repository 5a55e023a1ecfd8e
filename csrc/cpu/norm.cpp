// torch-facing RMSNorm: checks, row-parallel loop, portable row kernels.
#include "cpu/norm.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

template <typename T>
void rms_row(T* out, const T* x, const float* w, int64_t h, float eps) {
  float ss = 0.0f;
  for (int64_t i = 0; i < h; ++i) ss += to_f32(x[i]) * to_f32(x[i]);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(h) + eps);
  for (int64_t i = 0; i < h; ++i) store_f32(out + i, to_f32(x[i]) * inv * w[i]);
}

template <typename T>
void add_rms_row(T* x, T* residual, const float* w, int64_t h, float eps) {
  for (int64_t i = 0; i < h; ++i) store_f32(residual + i, to_f32(x[i]) + to_f32(residual[i]));
  rms_row(x, static_cast<const T*>(residual), w, h, eps);
}

NormKernels kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return norm_kernels_avx512();
    case Isa::kAvx2:
      return norm_kernels_avx2();
    default:
      return {&rms_row<float>, &rms_row<uint16_t>, &add_rms_row<float>, &add_rms_row<uint16_t>};
  }
}

// The weight as fp32 [H] (it may be kept in the activation dtype or in fp32).
at::Tensor check_weight(const at::Tensor& weight, int64_t h, double eps) {
  check_tensor(weight, "weight", 1);
  check_float_dtype(weight, "weight");
  check_size(weight, "weight", 0, h);
  RS_CHECK(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
  return weight.to(at::kFloat).contiguous();
}

}  // namespace

void rms_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_tensor(x, "x", 2);
  check_tensor(out, "out", 2);
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ",
           out.sizes());
  const int64_t n = x.size(0), h = x.size(1);
  RS_CHECK(h > 0, "the hidden size must be positive");
  const at::Tensor w = check_weight(weight, h, eps);
  const float* wp = w.data_ptr<float>();
  const NormKernels k = kernels();
  const float e = static_cast<float>(eps);
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  at::parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (f32) {
        k.rms_f32(static_cast<float*>(op) + r * h, static_cast<const float*>(xp) + r * h, wp, h, e);
      } else {
        k.rms_bf16(static_cast<uint16_t*>(op) + r * h, static_cast<const uint16_t*>(xp) + r * h,
                   wp, h, e);
      }
    }
  });
}

void fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps) {
  check_tensor(x, "x", 2);
  check_tensor(residual, "residual", 2);
  check_float_dtype(x, "x");
  check_same_dtype(residual, x, "residual", "x");
  RS_CHECK(residual.sizes() == x.sizes(), "residual must have the shape of x ", x.sizes(),
           ", got ", residual.sizes());
  RS_CHECK(!x.is_same(residual) && x.data_ptr() != residual.data_ptr(),
           "x and residual must be different tensors");
  const int64_t n = x.size(0), h = x.size(1);
  RS_CHECK(h > 0, "the hidden size must be positive");
  const at::Tensor w = check_weight(weight, h, eps);
  const float* wp = w.data_ptr<float>();
  const NormKernels k = kernels();
  const float e = static_cast<float>(eps);
  const bool f32 = x.scalar_type() == at::kFloat;
  void* xp = x.data_ptr();
  void* rp = residual.data_ptr();
  at::parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (f32) {
        k.add_rms_f32(static_cast<float*>(xp) + r * h, static_cast<float*>(rp) + r * h, wp, h, e);
      } else {
        k.add_rms_bf16(static_cast<uint16_t*>(xp) + r * h, static_cast<uint16_t*>(rp) + r * h, wp,
                       h, e);
      }
    }
  });
}

}  // namespace radixserve::cpu
