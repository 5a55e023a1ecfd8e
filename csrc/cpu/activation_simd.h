// Vectorised SiLU-and-mul rows over simd.h; compiled by activation_avx2.cpp and _avx512.cpp.
#pragma once

#include "cpu/activation.h"

namespace {

template <typename T>
void silu_mul_row(T* out, const T* x, int64_t n) {
  const T* up = x + n;
  const VF one = vset1(1.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF gate = vload(x + i);
    const VF silu = vdiv(gate, vadd(one, vexp(vsub(vzero(), gate))));
    vstore(out + i, vmul(silu, vload(up + i)));
  }
  for (; i < n; ++i) {
    const float g = to_f32(x[i]);
    store_f32(out + i, g / (1.0f + std::exp(-g)) * to_f32(up[i]));
  }
}

radixserve::cpu::ActivationKernels simd_activation_kernels() {
  return {&silu_mul_row<float>, &silu_mul_row<uint16_t>};
}

}  // namespace
