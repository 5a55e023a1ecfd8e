// AVX-512 row primitives of the sampler (see sampling_simd.h). No torch headers here.
#include "cpu/sampling_simd.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace radixserve::cpu::sampling_avx512 {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp for x <= 0 (Cephes polynomial, ~1-2 ulp); scalef gives exact underflow to 0, and the
// clamp maps -inf (masked tokens) to an input whose result is exactly 0.
inline __m512 exp_nonpos(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

}  // namespace

float row_max(const float* x, int64_t n) {
  __m512 m0 = _mm512_set1_ps(kNegInf), m1 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(_mm512_set1_ps(kNegInf), k, x + i));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

int64_t row_argmax(const float* x, int64_t n) {
  const float m = row_max(x, n);
  const __m512 mv = _mm512_set1_ps(m);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __mmask16 eq = _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, x + i), mv, _CMP_EQ_OQ);
    if (eq) return i + __builtin_ctz(static_cast<unsigned>(eq));
  }
  return 0;  // only when no value equals the max (NaN rows): token 0, as a defined answer
}

void row_div(const float* x, float t, float* out, int64_t n) {
  const __m512 tv = _mm512_set1_ps(t);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), tv));
  }
}

double row_exp_sum(const float* z, float m, float* e, int64_t n) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 x = _mm512_sub_ps(_mm512_mask_loadu_ps(mv, k, z + i), mv);
    const __m512 ev = _mm512_maskz_mov_ps(k, exp_nonpos(x));
    _mm512_mask_storeu_ps(e + i, k, ev);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(ev)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ev), 1))));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

int64_t row_gather_ge(const float* z, int64_t n, float thr, int32_t* ids, float* next_max) {
  const __m512 tv = _mm512_set1_ps(thr);
  __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  __m512 below = _mm512_set1_ps(kNegInf);
  int64_t count = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(kNegInf), k, z + i);
    const __mmask16 ge = _mm512_mask_cmp_ps_mask(k, v, tv, _CMP_GE_OQ);
    _mm512_mask_compressstoreu_epi32(ids + count, ge, idx);
    count += __builtin_popcount(static_cast<unsigned>(ge));
    below = _mm512_mask_max_ps(below, static_cast<__mmask16>(k & ~ge), below, v);
    idx = _mm512_add_epi32(idx, step);
  }
  *next_max = _mm512_reduce_max_ps(below);
  return count;
}

void block_sums(const float* w, int64_t n, int64_t block, double* sums) {
  // Lane i of 8 sums the block's elements j with j % 8 == i sequentially (lanes past n add 0).
  for (int64_t b = 0; b * block < n; ++b) {
    __m512d acc = _mm512_setzero_pd();
    const int64_t end = std::min(n, (b + 1) * block);
    for (int64_t i = b * block; i < end; i += 8) {
      const int64_t left = end - i;
      const __mmask8 k = left >= 8 ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << left) - 1u);
      acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, w + i)));
    }
    alignas(64) double l[8];
    _mm512_store_pd(l, acc);
    sums[b] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
}

void row_apply_bitmask(const float* x, const int32_t* mask, float* out, int64_t n) {
  // Sixteen tokens per step: their 16 mask bits are the lane mask of a load that fills -inf.
  const __m512 ninf = _mm512_set1_ps(kNegInf);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 in_row = tail_mask(n - i);
    const auto keep = static_cast<__mmask16>(static_cast<uint32_t>(mask[i >> 5]) >> (i & 31));
    _mm512_mask_storeu_ps(out + i, in_row, _mm512_mask_loadu_ps(ninf, in_row & keep, x + i));
  }
}

}  // namespace radixserve::cpu::sampling_avx512
