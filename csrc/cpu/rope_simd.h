// Vectorised neox-style rotary rows over simd.h; compiled by rope_avx2.cpp and rope_avx512.cpp.
#pragma once

#include "cpu/rope.h"

namespace {

template <typename T>
void neox_row(T* x, int64_t heads, int64_t head_size, const float* cos, const float* sin,
              int64_t half) {
  for (int64_t h = 0; h < heads; ++h) {
    T* x1 = x + h * head_size;
    T* x2 = x1 + half;
    int64_t i = 0;
    for (; i + kLanes <= half; i += kLanes) {
      const VF a = vload(x1 + i), b = vload(x2 + i), c = vload(cos + i), s = vload(sin + i);
      vstore(x1 + i, vsub(vmul(a, c), vmul(b, s)));
      vstore(x2 + i, vfma(a, s, vmul(b, c)));
    }
    for (; i < half; ++i) {
      const float a = to_f32(x1[i]), b = to_f32(x2[i]);
      store_f32(x1 + i, a * cos[i] - b * sin[i]);
      store_f32(x2 + i, b * cos[i] + a * sin[i]);
    }
  }
}

radixserve::cpu::RopeKernels simd_rope_kernels() { return {&neox_row<float>, &neox_row<uint16_t>}; }

}  // namespace
