// AVX2+FMA row primitives of the sampler (see sampling_simd.h). No torch headers here; the
// target pragma confines the ISA to this file, callers check the CPU first (sampling.cpp).
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/sampling_simd.h"

namespace radixserve::cpu::sampling_avx2 {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Eight lanes from x[i:], lanes past n filled with `fill` (so tails use the vector code too).
inline __m256 load8(const float* x, int64_t left, float fill) {
  if (left >= 8) return _mm256_loadu_ps(x);
  alignas(32) float buf[8];
  for (int j = 0; j < 8; ++j) buf[j] = j < left ? x[j] : fill;
  return _mm256_load_ps(buf);
}

inline void store8(float* out, __m256 v, int64_t left) {
  if (left >= 8) return _mm256_storeu_ps(out, v);
  alignas(32) float buf[8];
  _mm256_store_ps(buf, v);
  for (int j = 0; j < left; ++j) out[j] = buf[j];
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// exp for x <= 0 (Cephes polynomial, ~1-2 ulp). Results below FLT_MIN (x < -87.33, and -inf)
// are flushed to 0: those weights are < 1e-38 of the largest and never matter.
inline __m256 exp_nonpos(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.33f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-126, 0]: the exponent field directly.
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  return _mm256_andnot_ps(tiny, res);
}

}  // namespace

float row_max(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(kNegInf), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < n; i += 8) m0 = _mm256_max_ps(m0, load8(x + i, n - i, kNegInf));
  return hmax(_mm256_max_ps(m0, m1));
}

int64_t row_argmax(const float* x, int64_t n) {
  const float m = row_max(x, n);
  const __m256 mv = _mm256_set1_ps(m);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int eq = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mv, _CMP_EQ_OQ));
    if (eq) return i + __builtin_ctz(static_cast<unsigned>(eq));
  }
  for (; i < n; ++i)
    if (x[i] == m) return i;
  return 0;  // only when no value equals the max (NaN rows): token 0, as a defined answer
}

void row_div(const float* x, float t, float* out, int64_t n) {
  const __m256 tv = _mm256_set1_ps(t);
  for (int64_t i = 0; i < n; i += 8)
    store8(out + i, _mm256_div_ps(load8(x + i, n - i, 0.0f), tv), n - i);
}

double row_exp_sum(const float* z, float m, float* e, int64_t n) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    // Lanes past n load -inf, so they add exp(-inf) = 0.
    const __m256 ev = exp_nonpos(_mm256_sub_ps(load8(z + i, n - i, kNegInf), mv));
    store8(e + i, ev, n - i);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(ev)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

int64_t row_gather_ge(const float* z, int64_t n, float thr, int32_t* ids, float* next_max) {
  const __m256 tv = _mm256_set1_ps(thr);
  const __m256 ninf = _mm256_set1_ps(kNegInf);
  __m256 below = ninf;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 v = load8(z + i, n - i, kNegInf);
    const __m256 ge = _mm256_cmp_ps(v, tv, _CMP_GE_OQ);
    unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(ge));
    if (n - i < 8) mask &= (1u << (n - i)) - 1u;  // padding lanes are never candidates
    while (mask) {
      ids[count++] = static_cast<int32_t>(i + __builtin_ctz(mask));
      mask &= mask - 1;
    }
    below = _mm256_max_ps(below, _mm256_blendv_ps(v, ninf, ge));
  }
  *next_max = hmax(below);
  return count;
}

void block_sums(const float* w, int64_t n, int64_t block, double* sums) {
  // Lane i of 8 sums the block's elements j with j % 8 == i sequentially (lanes past n add 0).
  for (int64_t b = 0; b * block < n; ++b) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    const int64_t end = std::min(n, (b + 1) * block);
    for (int64_t i = b * block; i < end; i += 8) {
      const __m256 v = load8(w + i, end - i, 0.0f);
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    alignas(32) double l[8];
    _mm256_store_pd(l, lo);
    _mm256_store_pd(l + 4, hi);
    sums[b] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
}

void row_apply_bitmask(const float* x, const int32_t* mask, float* out, int64_t n) {
  // Eight tokens per step take one byte of their mask word; lane j keeps x when bit j is set.
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 ninf = _mm256_set1_ps(kNegInf);
  for (int64_t i = 0; i < n; i += 8) {
    const uint32_t byte = (static_cast<uint32_t>(mask[i >> 5]) >> (i & 31)) & 0xffu;
    const __m256i sel = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(byte)), lane_bits);
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sel, lane_bits));
    store8(out + i, _mm256_blendv_ps(ninf, load8(x + i, n - i, 0.0f), keep), n - i);
  }
}

}  // namespace radixserve::cpu::sampling_avx2
