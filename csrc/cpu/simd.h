// A minimal float-vector abstraction so each vectorised kernel is written once and compiled
// twice: in *_avx512.cpp (16 lanes, RS_SIMD_AVX512) and in *_avx2.cpp (8 lanes, RS_SIMD_AVX2,
// after `#pragma GCC target("avx2,fma")`). Include only from those files. Everything here has
// internal linkage so no AVX-512 instruction can leak into the portable build through the
// linker's choice between duplicate inline definitions. bfloat16 travels as uint16_t.
#pragma once

// GCC 12 reports a false "may be used uninitialized" inside its own AVX-512 headers (GCC bug
// 105593); it is not about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "cpu/bf16.h"

#if !defined(RS_SIMD_AVX512) && !defined(RS_SIMD_AVX2)
#error "define RS_SIMD_AVX512 or RS_SIMD_AVX2 before including simd.h"
#endif

namespace {

// 8 floats stored as bf16, rounded to nearest even as torch does; NaN stays NaN. Both builds
// (the AVX-512 one for its 8-wide tiles, too).
inline void store_bf16x8(uint16_t* p, __m256 a) {
  const __m256i u = _mm256_castps_si256(a);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
  r = _mm256_srli_epi32(r, 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  // Pack 8 x u32 (all < 2^16) to 8 x u16: packus works per 128-bit lane, then gather lanes.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Software prefetch of `bytes` from p into L1 (rows the hardware prefetcher cannot guess).
inline void prefetch_bytes(const void* p, int bytes) {
  const char* c = static_cast<const char*>(p);
  for (int o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

#if defined(RS_SIMD_AVX512)

constexpr int kLanes = 16;
using VF = __m512;

inline VF vzero() { return _mm512_setzero_ps(); }
inline VF vset1(float x) { return _mm512_set1_ps(x); }
inline VF vload(const float* p) { return _mm512_loadu_ps(p); }
inline VF vload(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void vstore(float* p, VF a) { _mm512_storeu_ps(p, a); }
inline void vstore(uint16_t* p, VF a) {
  // Round to nearest even, as torch does; NaN stays a quiet NaN.
  const __m512i u = _mm512_castps_si512(a);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  r = _mm512_srli_epi32(r, 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
inline VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
inline VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
inline VF vdiv(VF a, VF b) { return _mm512_div_ps(a, b); }
inline VF vmax(VF a, VF b) { return _mm512_max_ps(a, b); }
inline VF vmin(VF a, VF b) { return _mm512_min_ps(a, b); }
inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }  // a*b+c
inline VF vround(VF a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT); }
inline float vsum(VF a) { return _mm512_reduce_add_ps(a); }
inline float vhmax(VF a) { return _mm512_reduce_max_ps(a); }
// 2^n for integral n in [-126, 127].
inline VF vpow2i(VF n) {
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
inline VF vselect_lt(VF a, VF b, VF if_lt, VF otherwise) {  // a < b ? if_lt : otherwise
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), otherwise, if_lt);
}
inline __m256 hsum8x8(const __m256* a);  // defined with the AVX2 half below
// Lane n of the result = sum of the lanes of a[n], for n < 16.
inline VF vtranspose_sum(const VF* a) {
  __m256 h[16];
  for (int n = 0; n < 16; ++n) {
    h[n] = _mm256_add_ps(_mm512_castps512_ps256(a[n]), _mm512_extractf32x8_ps(a[n], 1));
  }
  return _mm512_insertf32x8(_mm512_castps256_ps512(hsum8x8(h)), hsum8x8(h + 8), 1);
}

#else  // RS_SIMD_AVX2

constexpr int kLanes = 8;
using VF = __m256;

inline VF vzero() { return _mm256_setzero_ps(); }
inline VF vset1(float x) { return _mm256_set1_ps(x); }
inline VF vload(const float* p) { return _mm256_loadu_ps(p); }
inline VF vload(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void vstore(float* p, VF a) { _mm256_storeu_ps(p, a); }
inline void vstore(uint16_t* p, VF a) { store_bf16x8(p, a); }
inline VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
inline VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
inline VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
inline VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
inline VF vmax(VF a, VF b) { return _mm256_max_ps(a, b); }
inline VF vmin(VF a, VF b) { return _mm256_min_ps(a, b); }
inline VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
inline VF vround(VF a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline float vsum(VF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float vhmax(VF a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline VF vpow2i(VF n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
inline VF vselect_lt(VF a, VF b, VF if_lt, VF otherwise) {
  return _mm256_blendv_ps(otherwise, if_lt, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
}
inline VF vtranspose_sum(const VF* a);

#endif

// Lane n of the result = sum of the 8 lanes of a[n]: three rounds of pairwise adds instead of
// eight separate horizontal reductions.
inline __m256 hsum8x8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
  const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
  const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);  // per 128-bit half: partial sums of a0..a3
  const __m256 u1 = _mm256_hadd_ps(t2, t3);  // and of a4..a7
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
#if defined(RS_SIMD_AVX2)
inline VF vtranspose_sum(const VF* a) { return hsum8x8(a); }
#endif

// e^xc for xc in [-87, 88.3]: xc = n*ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r,
// times 2^n (~2 ulp).
inline VF vexp_clamped(VF xc) {
  const VF n = vround(vmul(xc, vset1(1.44269504088896341f)));
  VF r = vfma(n, vset1(-0.693359375f), xc);  // ln2 split in two for an exact first step
  r = vfma(n, vset1(2.12194440e-4f), r);
  VF p = vset1(1.0f / 720.0f);
  p = vfma(p, r, vset1(1.0f / 120.0f));
  p = vfma(p, r, vset1(1.0f / 24.0f));
  p = vfma(p, r, vset1(1.0f / 6.0f));
  p = vfma(p, r, vset1(0.5f));
  p = vfma(p, r, vset1(1.0f));
  p = vfma(p, r, vset1(1.0f));
  return vmul(p, vpow2i(n));
}

// exp(x). Inputs below -87 (including -inf) give exactly 0, which is what masked softmax
// entries need.
inline VF vexp(VF x) {
  const VF lo = vset1(-87.0f);
  return vselect_lt(x, lo, vzero(), vexp_clamped(vmin(vmax(x, lo), vset1(88.3f))));
}

// 8 rows x 8 floats in, the 8 columns out (out[c][i] = in[i][c]). 256-bit in both builds: the
// AVX-512 one moves its 16-row vectors as two halves.
inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

}  // namespace
