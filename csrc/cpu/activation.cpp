// torch-facing SiLU-and-mul: checks, row-parallel loop, portable row kernel.
#include "cpu/activation.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"

namespace radixserve::cpu {
namespace {

template <typename T>
void silu_mul_row(T* out, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = to_f32(x[i]);
    store_f32(out + i, g / (1.0f + std::exp(-g)) * to_f32(x[n + i]));
  }
}

ActivationKernels kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return activation_kernels_avx512();
    case Isa::kAvx2:
      return activation_kernels_avx2();
    default:
      return {&silu_mul_row<float>, &silu_mul_row<uint16_t>};
  }
}

}  // namespace

void silu_and_mul(const at::Tensor& out, const at::Tensor& x) {
  check_tensor(x, "x", 2);
  check_tensor(out, "out", 2);
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(x.size(1) % 2 == 0, "x.size(1) must be even (gate then up), got ", x.size(1));
  check_size(out, "out", 0, x.size(0));
  check_size(out, "out", 1, x.size(1) / 2);
  const int64_t rows = x.size(0), n = out.size(1);
  const ActivationKernels k = kernels();
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (f32) {
        k.silu_mul_f32(static_cast<float*>(op) + r * n, static_cast<const float*>(xp) + r * 2 * n,
                       n);
      } else {
        k.silu_mul_bf16(static_cast<uint16_t*>(op) + r * n,
                        static_cast<const uint16_t*>(xp) + r * 2 * n, n);
      }
    }
  });
}

}  // namespace radixserve::cpu
