// Test-only: lets the *_avx512.cpp sources build and run on a CPU without AVX-512, so their
// code runs in CI on any host (tools/avx512_emulation_check.sh). CMake force-includes this
// header into those sources when RADIXSERVE_AVX512_EMULATION is on; it is never part of a
// normal build.
//
// SIMDe (libsimde-dev) implements the AVX-512 intrinsics in portable C and AVX2; its "native
// aliases" redefine the _mm512_* names and __m512* types as macros for its own. The few
// intrinsics our kernels use that SIMDe 0.7.4 lacks are written below, lane by lane, with the
// semantics of Intel's reference (what the hardware computes, not what is fast).
#pragma once

#include <immintrin.h>  // first: its declarations must not see the alias macros

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cmath>
#include <cstdint>

// SIMDe 0.7.4 aliases the two-operand _mm512_madd_epi16 with the masked form's four operands.
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

namespace radixserve_avx512_emulation {

inline simde__m512 from_f32(const float* v) {
  simde__m512_private r;
  for (int i = 0; i < 16; ++i) r.f32[i] = v[i];  // f32 may be a vector type: no memcpy
  return simde__m512_from_private(r);
}

inline simde__m512 undefined_ps() { return simde_mm512_setzero_ps(); }

inline simde__m512 cvtepi32_ps(simde__m512i a) {
  const simde__m512i_private p = simde__m512i_to_private(a);
  float v[16];
  for (int i = 0; i < 16; ++i) v[i] = static_cast<float>(p.i32[i]);
  return from_f32(v);
}

// Round to nearest even (the default MXCSR mode); NaN and out-of-range give INT32_MIN.
inline simde__m512i cvtps_epi32(simde__m512 a) {
  const simde__m512_private p = simde__m512_to_private(a);
  simde__m512i_private r;
  for (int i = 0; i < 16; ++i) {
    const float x = std::nearbyint(p.f32[i]);
    r.i32[i] = (x >= -2147483648.0f && x < 2147483648.0f) ? static_cast<int32_t>(x) : INT32_MIN;
  }
  return simde__m512i_from_private(r);
}

// vpmovdw: each int32 lane truncated to its low 16 bits.
inline simde__m256i cvtepi32_epi16(simde__m512i a) {
  const simde__m512i_private p = simde__m512i_to_private(a);
  simde__m256i_private r;
  for (int i = 0; i < 16; ++i) r.i16[i] = static_cast<int16_t>(static_cast<uint32_t>(p.i32[i]));
  return simde__m256i_from_private(r);
}

inline simde__m512i cvtepu16_epi32(simde__m256i a) {
  const simde__m256i_private p = simde__m256i_to_private(a);
  simde__m512i_private r;
  for (int i = 0; i < 16; ++i) r.i32[i] = p.u16[i];
  return simde__m512i_from_private(r);
}

inline simde__m512d cvtps_pd(simde__m256 a) {
  const simde__m256_private p = simde__m256_to_private(a);
  simde__m512d_private r;
  for (int i = 0; i < 8; ++i) r.f64[i] = p.f32[i];
  return simde__m512d_from_private(r);
}

inline simde__m256 extractf32x8_ps(simde__m512 a, int imm) {
  const simde__m512_private p = simde__m512_to_private(a);
  simde__m256_private r;
  for (int i = 0; i < 8; ++i) r.f32[i] = p.f32[(imm & 1) * 8 + i];
  return simde__m256_from_private(r);
}

// Only the predicates the kernels use; any other stops the test run loudly.
inline simde__mmask16 mask_cmp_ps_mask(simde__mmask16 k, simde__m512 a, simde__m512 b, int pred) {
  const simde__m512_private pa = simde__m512_to_private(a), pb = simde__m512_to_private(b);
  unsigned r = 0;
  for (int i = 0; i < 16; ++i) {
    if (!((k >> i) & 1)) continue;
    const float x = pa.f32[i], y = pb.f32[i];
    bool hit;
    switch (pred) {
      case _CMP_EQ_OQ: hit = x == y; break;
      case _CMP_GE_OQ: hit = x >= y; break;
      case _CMP_GT_OQ: hit = x > y; break;
      case _CMP_LT_OQ: hit = x < y; break;
      case _CMP_LE_OQ: hit = x <= y; break;
      default: __builtin_trap();
    }
    r |= static_cast<unsigned>(hit) << i;
  }
  return static_cast<simde__mmask16>(r);
}

// Masked-off lanes are never read or written (a masked load at the end of a buffer must not
// touch memory past it).
inline simde__m512 mask_loadu_ps(simde__m512 src, simde__mmask16 k, const void* p) {
  simde__m512_private r = simde__m512_to_private(src);
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 16; ++i) {
    if ((k >> i) & 1) r.f32[i] = f[i];
  }
  return simde__m512_from_private(r);
}

inline simde__m512 maskz_loadu_ps(simde__mmask16 k, const void* p) {
  return mask_loadu_ps(simde_mm512_setzero_ps(), k, p);
}

inline simde__m256 maskz_loadu_ps256(simde__mmask8 k, const void* p) {
  simde__m256_private r = simde__m256_to_private(simde_mm256_setzero_ps());
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 8; ++i) {
    if ((k >> i) & 1) r.f32[i] = f[i];
  }
  return simde__m256_from_private(r);
}

inline void mask_storeu_ps(void* p, simde__mmask16 k, simde__m512 a) {
  const simde__m512_private s = simde__m512_to_private(a);
  float* f = static_cast<float*>(p);
  for (int i = 0; i < 16; ++i) {
    if ((k >> i) & 1) f[i] = s.f32[i];
  }
}

// Reductions in GCC's order: halves added pairwise (lane i with lane i + n/2) until one is left.
template <typename T, int N>
inline T reduce_tree(T* v, bool max) {
  for (int n = N / 2; n >= 1; n /= 2) {
    for (int i = 0; i < n; ++i) v[i] = max ? (v[i] > v[i + n] ? v[i] : v[i + n]) : v[i] + v[i + n];
  }
  return v[0];
}

inline float reduce_ps(simde__m512 a, bool max) {
  const simde__m512_private p = simde__m512_to_private(a);
  float v[16];
  for (int i = 0; i < 16; ++i) v[i] = p.f32[i];
  return reduce_tree<float, 16>(v, max);
}

inline double reduce_add_pd(simde__m512d a) {
  const simde__m512d_private p = simde__m512d_to_private(a);
  double v[8];
  for (int i = 0; i < 8; ++i) v[i] = p.f64[i];
  return reduce_tree<double, 8>(v, false);
}

}  // namespace radixserve_avx512_emulation

#define _mm512_undefined_ps() radixserve_avx512_emulation::undefined_ps()
#define _mm512_cvtepi32_ps(a) radixserve_avx512_emulation::cvtepi32_ps(a)
#define _mm512_cvtps_epi32(a) radixserve_avx512_emulation::cvtps_epi32(a)
#define _mm512_cvtepi32_epi16(a) radixserve_avx512_emulation::cvtepi32_epi16(a)
#define _mm512_cvtepu16_epi32(a) radixserve_avx512_emulation::cvtepu16_epi32(a)
#define _mm512_cvtps_pd(a) radixserve_avx512_emulation::cvtps_pd(a)
#define _mm512_extractf32x8_ps(a, imm) radixserve_avx512_emulation::extractf32x8_ps(a, imm)
#define _mm512_mask_cmp_ps_mask(k, a, b, pred) \
  radixserve_avx512_emulation::mask_cmp_ps_mask(k, a, b, pred)
#define _mm512_mask_loadu_ps(src, k, p) radixserve_avx512_emulation::mask_loadu_ps(src, k, p)
#define _mm512_maskz_loadu_ps(k, p) radixserve_avx512_emulation::maskz_loadu_ps(k, p)
#define _mm256_maskz_loadu_ps(k, p) radixserve_avx512_emulation::maskz_loadu_ps256(k, p)
#define _mm512_mask_storeu_ps(p, k, a) radixserve_avx512_emulation::mask_storeu_ps(p, k, a)
#define _mm512_reduce_add_ps(a) radixserve_avx512_emulation::reduce_ps(a, false)
#define _mm512_reduce_max_ps(a) radixserve_avx512_emulation::reduce_ps(a, true)
#define _mm512_reduce_add_pd(a) radixserve_avx512_emulation::reduce_add_pd(a)
