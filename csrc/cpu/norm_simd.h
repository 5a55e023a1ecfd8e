// Vectorised RMSNorm rows over simd.h; compiled by norm_avx2.cpp and norm_avx512.cpp.
#pragma once

#include "cpu/norm.h"

namespace {

template <typename T>
float sum_squares(const T* x, int64_t h, int64_t* done) {
  VF a0 = vzero(), a1 = vzero();
  int64_t i = 0;
  for (; i + 2 * kLanes <= h; i += 2 * kLanes) {
    const VF v0 = vload(x + i), v1 = vload(x + i + kLanes);
    a0 = vfma(v0, v0, a0);
    a1 = vfma(v1, v1, a1);
  }
  for (; i + kLanes <= h; i += kLanes) {
    const VF v = vload(x + i);
    a0 = vfma(v, v, a0);
  }
  float s = vsum(vadd(a0, a1));
  *done = i;
  for (; i < h; ++i) s += to_f32(x[i]) * to_f32(x[i]);
  return s;
}

template <typename T>
void scale_row(T* out, const T* x, const float* w, int64_t h, float inv) {
  const VF vi = vset1(inv);
  int64_t i = 0;
  for (; i + kLanes <= h; i += kLanes) vstore(out + i, vmul(vmul(vload(x + i), vi), vload(w + i)));
  for (; i < h; ++i) store_f32(out + i, to_f32(x[i]) * inv * w[i]);
}

template <typename T>
void rms_row(T* out, const T* x, const float* w, int64_t h, float eps) {
  int64_t done;
  const float inv = 1.0f / std::sqrt(sum_squares(x, h, &done) / static_cast<float>(h) + eps);
  scale_row(out, x, w, h, inv);
}

template <typename T>
void add_rms_row(T* x, T* residual, const float* w, int64_t h, float eps) {
  int64_t i = 0;
  for (; i + kLanes <= h; i += kLanes) vstore(residual + i, vadd(vload(x + i), vload(residual + i)));
  for (; i < h; ++i) store_f32(residual + i, to_f32(x[i]) + to_f32(residual[i]));
  // The norm reads the stored (rounded) sum, like the unfused x + residual then rms_norm.
  rms_row(x, static_cast<const T*>(residual), w, h, eps);
}

radixserve::cpu::NormKernels simd_norm_kernels() {
  return {&rms_row<float>, &rms_row<uint16_t>, &add_rms_row<float>, &add_rms_row<uint16_t>};
}

}  // namespace
