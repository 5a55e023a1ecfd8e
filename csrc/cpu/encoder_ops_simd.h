// Vectorised LayerNorm and GELU rows over simd.h; compiled by encoder_ops_avx2.cpp and _avx512.cpp.
#pragma once

#include "cpu/encoder_ops.h"

namespace {

template <typename T>
inline VF load_sum(const T* x, const T* res, int64_t i) {
  return res ? vadd(vload(x + i), vload(res + i)) : vload(x + i);
}
template <typename T>
inline float scalar_sum(const T* x, const T* res, int64_t i) {
  return to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f);
}

template <typename T>
void ln_row(T* out, const T* x, const T* res, const float* w, const float* b, int64_t h,
            float eps) {
  VF acc = vzero();
  int64_t i = 0;
  for (; i + kLanes <= h; i += kLanes) acc = vadd(acc, load_sum(x, res, i));
  float mean = vsum(acc);
  for (; i < h; ++i) mean += scalar_sum(x, res, i);
  mean /= static_cast<float>(h);
  const VF vm = vset1(mean);
  acc = vzero();
  i = 0;
  for (; i + kLanes <= h; i += kLanes) {
    const VF d = vsub(load_sum(x, res, i), vm);
    acc = vfma(d, d, acc);
  }
  float var = vsum(acc);
  for (; i < h; ++i) {
    const float d = scalar_sum(x, res, i) - mean;
    var += d * d;
  }
  const float inv = 1.0f / std::sqrt(var / static_cast<float>(h) + eps);
  const VF vi = vset1(inv);
  i = 0;
  for (; i + kLanes <= h; i += kLanes) {
    const VF n = vmul(vsub(load_sum(x, res, i), vm), vi);
    vstore(out + i, vfma(n, vload(w + i), vload(b + i)));
  }
  for (; i < h; ++i) store_f32(out + i, (scalar_sum(x, res, i) - mean) * inv * w[i] + b[i]);
}

// erf(x) by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd-extended: t = 1/(1 + p|x|),
// erf = 1 - poly(t) * exp(-x^2).
inline VF verf(VF x) {
  const VF ax = vmax(x, vsub(vzero(), x));
  const VF one = vset1(1.0f);
  const VF t = vdiv(one, vfma(vset1(0.3275911f), ax, one));
  VF p = vset1(1.061405429f);
  p = vfma(p, t, vset1(-1.453152027f));
  p = vfma(p, t, vset1(1.421413741f));
  p = vfma(p, t, vset1(-0.284496736f));
  p = vfma(p, t, vset1(0.254829592f));
  p = vmul(p, t);
  const VF y = vsub(one, vmul(p, vexp(vsub(vzero(), vmul(ax, ax)))));
  return vselect_lt(x, vzero(), vsub(vzero(), y), y);
}

// tanh(u) = 1 - 2 / (exp(2u) + 1); exp saturates cleanly at both ends.
inline VF vtanh(VF u) {
  const VF one = vset1(1.0f);
  return vsub(one, vdiv(vset1(2.0f), vadd(vexp(vadd(u, u)), one)));
}

template <typename T>
void gelu_row(T* out, const T* x, int64_t n, bool tanh_approx) {
  const VF half = vset1(0.5f), one = vset1(1.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF v = vload(x + i);
    VF inner;
    if (tanh_approx) {
      const VF cube = vmul(vmul(v, v), v);
      inner = vtanh(vmul(vset1(0.7978845608f), vfma(vset1(0.044715f), cube, v)));
    } else {
      inner = verf(vmul(v, vset1(0.70710678118654752f)));
    }
    vstore(out + i, vmul(vmul(half, v), vadd(one, inner)));
  }
  for (; i < n; ++i) {
    const float v = to_f32(x[i]);
    const float g = tanh_approx
                        ? 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v)))
                        : 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    store_f32(out + i, g);
  }
}

radixserve::cpu::EncoderKernels simd_encoder_kernels() {
  return {&ln_row<float>, &ln_row<uint16_t>, &gelu_row<float>, &gelu_row<uint16_t>};
}

}  // namespace
