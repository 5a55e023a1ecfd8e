// Vectorised LayerNorm, GELU and encoder attention over simd.h; compiled by encoder_ops_avx2.cpp
// and _avx512.cpp.
#pragma once

#include <algorithm>

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

// Query rows scored and accumulated together: each K (or V) vector loaded serves kRows queries.
constexpr int64_t kRows = 4;
static_assert(radixserve::cpu::kEncoderQueryBlock % kRows == 0, "score rows stay in the scratch");

// Scores of query rows [i, i + kRows) of the block against all np (padded) keys, vectorised over
// keys against the transposed keys: no horizontal sums. Rows past the block's end repeat its last
// query (their scores are never read).
inline void score_rows(const radixserve::cpu::EncoderAttendWork& w, int64_t i0, int64_t i,
                       int64_t nq, int64_t np) {
  const float* qr[kRows];
  float* sr[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    qr[r] = w.q + (i0 + std::min(i + r, nq - 1)) * w.q_stride;
    sr[r] = w.scores + (i + r) * np;
  }
  int64_t j = 0;
  for (; j + 2 * kLanes <= np; j += 2 * kLanes) {
    VF a[kRows], b[kRows];
    for (int64_t r = 0; r < kRows; ++r) a[r] = b[r] = vzero();
    for (int64_t d = 0; d < w.head_dim; ++d) {
      const VF k0 = vload(w.kt + d * np + j), k1 = vload(w.kt + d * np + j + kLanes);
      for (int64_t r = 0; r < kRows; ++r) {
        const VF qd = vset1(qr[r][d]);
        a[r] = vfma(qd, k0, a[r]);
        b[r] = vfma(qd, k1, b[r]);
      }
    }
    for (int64_t r = 0; r < kRows; ++r) {
      vstore(sr[r] + j, a[r]);
      vstore(sr[r] + j + kLanes, b[r]);
    }
  }
  for (; j < np; j += kLanes) {
    VF a[kRows];
    for (int64_t r = 0; r < kRows; ++r) a[r] = vzero();
    for (int64_t d = 0; d < w.head_dim; ++d) {
      const VF k0 = vload(w.kt + d * np + j);
      for (int64_t r = 0; r < kRows; ++r) a[r] = vfma(vset1(qr[r][d]), k0, a[r]);
    }
    for (int64_t r = 0; r < kRows; ++r) vstore(sr[r] + j, a[r]);
  }
}

// In place: s[0, n) = exp(s - max(s)), s[n, np) = 0; returns 1 / sum.
inline float softmax_row(float* s, int64_t n, int64_t np) {
  const int64_t nv = n / kLanes * kLanes;
  VF vm = vset1(-INFINITY);
  for (int64_t j = 0; j < nv; j += kLanes) vm = vmax(vm, vload(s + j));
  float m = vhmax(vm);
  for (int64_t j = nv; j < n; ++j) m = std::max(m, s[j]);
  const VF vmx = vset1(m);
  VF acc = vzero();
  for (int64_t j = 0; j < nv; j += kLanes) {
    const VF e = vexp(vsub(vload(s + j), vmx));
    vstore(s + j, e);
    acc = vadd(acc, e);
  }
  float l = vsum(acc);
  for (int64_t j = nv; j < n; ++j) {
    s[j] = std::exp(s[j] - m);
    l += s[j];
  }
  for (int64_t j = n; j < np; ++j) s[j] = 0.0f;
  return 1.0f / l;
}

// out rows [i0 + i, i0 + i + kRows) (those < nq) = probabilities @ V, vectorised over head_dim.
inline void weigh_values(const radixserve::cpu::EncoderAttendWork& w, int64_t i0, int64_t i,
                         int64_t nq, int64_t np, const float* inv_l) {
  const int64_t rows = std::min(kRows, nq - i);
  const float* pr[kRows];
  for (int64_t r = 0; r < kRows; ++r) pr[r] = w.scores + (i + std::min(r, rows - 1)) * np;
  const int64_t hv = w.head_dim / kLanes * kLanes;
  for (int64_t d0 = 0; d0 < hv; d0 += kLanes) {
    VF o[kRows];
    for (int64_t r = 0; r < kRows; ++r) o[r] = vzero();
    for (int64_t j = 0; j < w.n; ++j) {
      const VF vv = vload(w.v + j * w.v_stride + d0);
      for (int64_t r = 0; r < kRows; ++r) o[r] = vfma(vset1(pr[r][j]), vv, o[r]);
    }
    for (int64_t r = 0; r < rows; ++r) {
      vstore(w.out + (i0 + i + r) * w.out_stride + d0, vmul(o[r], vset1(inv_l[i + r])));
    }
  }
  for (int64_t d = hv; d < w.head_dim; ++d) {
    for (int64_t r = 0; r < rows; ++r) {
      float acc = 0.0f;
      for (int64_t j = 0; j < w.n; ++j) acc += pr[r][j] * w.v[j * w.v_stride + d];
      w.out[(i0 + i + r) * w.out_stride + d] = acc * inv_l[i + r];
    }
  }
}

// As weigh_values when head_dim is NV (<= 4) whole vectors: 2 query rows x every vector of a V
// row per key, so each V load serves 2 FMAs and each broadcast NV (instead of 1 and 1).
template <int NV>
inline void weigh_values_wide(const radixserve::cpu::EncoderAttendWork& w, int64_t i0, int64_t i,
                              int64_t nq, int64_t np, const float* inv_l) {
  const int64_t end = std::min(i + kRows, nq);
  for (int64_t r0 = i; r0 < end; r0 += 2) {
    const bool two = r0 + 1 < end;
    const float* p0 = w.scores + r0 * np;
    const float* p1 = two ? p0 + np : p0;
    VF a[NV], b[NV];
    for (int c = 0; c < NV; ++c) a[c] = b[c] = vzero();
    for (int64_t j = 0; j < w.n; ++j) {
      const float* vr = w.v + j * w.v_stride;
      const VF s0 = vset1(p0[j]), s1 = vset1(p1[j]);
      for (int c = 0; c < NV; ++c) {
        const VF vv = vload(vr + c * kLanes);
        a[c] = vfma(s0, vv, a[c]);
        b[c] = vfma(s1, vv, b[c]);
      }
    }
    float* o0 = w.out + (i0 + r0) * w.out_stride;
    for (int c = 0; c < NV; ++c) vstore(o0 + c * kLanes, vmul(a[c], vset1(inv_l[r0])));
    if (two) {
      float* o1 = o0 + w.out_stride;
      for (int c = 0; c < NV; ++c) vstore(o1 + c * kLanes, vmul(b[c], vset1(inv_l[r0 + 1])));
    }
  }
}

// One (sequence, head): K transposed and pre-scaled once, then per block of queries the full
// score rows, an exact softmax (max, exp, sum) and the weighted sum of V.
void encoder_attend(const radixserve::cpu::EncoderAttendWork& w) {
  using radixserve::cpu::kEncoderQueryBlock;
  const int64_t n = w.n, np = radixserve::cpu::encoder_padded_len(n);
  for (int64_t j = 0; j < np; ++j) {
    for (int64_t d = 0; d < w.head_dim; ++d) {
      w.kt[d * np + j] = j < n ? w.k[j * w.k_stride + d] * w.scale : 0.0f;
    }
  }
  float inv_l[kEncoderQueryBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kEncoderQueryBlock) {
    const int64_t nq = std::min(kEncoderQueryBlock, n - i0);
    for (int64_t i = 0; i < nq; i += kRows) score_rows(w, i0, i, nq, np);
    for (int64_t i = 0; i < nq; ++i) inv_l[i] = softmax_row(w.scores + i * np, n, np);
    const int64_t vecs = w.head_dim % kLanes == 0 ? w.head_dim / kLanes : 0;
    for (int64_t i = 0; i < nq; i += kRows) {
      switch (vecs) {
        case 1: weigh_values_wide<1>(w, i0, i, nq, np, inv_l); break;
        case 2: weigh_values_wide<2>(w, i0, i, nq, np, inv_l); break;
        case 3: weigh_values_wide<3>(w, i0, i, nq, np, inv_l); break;
        case 4: weigh_values_wide<4>(w, i0, i, nq, np, inv_l); break;
        default: weigh_values(w, i0, i, nq, np, inv_l);
      }
    }
  }
}

radixserve::cpu::EncoderKernels simd_encoder_kernels() {
  return {&ln_row<float>, &ln_row<uint16_t>, &gelu_row<float>, &gelu_row<uint16_t>,
          &encoder_attend};
}

}  // namespace
