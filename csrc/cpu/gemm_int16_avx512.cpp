// AVX-512 build of the int16 linear kernels (gemm_int16_kernels.h): one zmm holds the K pairs of
// 16 channels, so two cover a 32-channel block; up to 8 rows share them. vpdpwssd (AVX512-VNNI)
// multiplies, pair-adds and accumulates in one instruction; without VNNI, vpmaddwd + vpaddd
// (AVX512BW). Compiled with AVX-512 flags; only called after cpu_features reports AVX-512 (and
// VNNI for the VNNI build).
// Note: the machines this project is developed on have no AVX-512, so this file is built and
// reviewed but not executed there; the AVX2 build of the same numbers is the tested one.
#include <immintrin.h>

#include <cstring>

#include "cpu/gemm_int16_kernels.h"

namespace radixserve::gemm_i16 {
namespace {

constexpr int kMaxRows = 8;  // 8 rows x 2 zmm accumulators + 2 weights + broadcasts: 32 registers

// MR rows x 32 channels over the K pairs of one K chunk [k0, k1), converted to fp32 and stored
// into acc_out (k0 == 0) or added to it; pf walks the weight stream ahead of the loads (as in
// the AVX2 build).
template <int MR, bool kVnni>
inline void tile(const Int16Problem& p, const int16_t* blk, int64_t m0, int64_t k0, int64_t k1,
                 const char* pf, float* acc_out) {
  const int16_t* x = p.xq + m0 * p.ldx;
  __m512i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int64_t k = k0; k < k1; k += 2, pf += 2 * kBlockN * 2) {
    _mm_prefetch(pf, _MM_HINT_T0);
    _mm_prefetch(pf + 64, _MM_HINT_T0);
    const int16_t* wk = blk + k * kBlockN;
    const __m512i w0 = _mm512_loadu_si512(wk);
    const __m512i w1 = _mm512_loadu_si512(wk + 32);
    for (int r = 0; r < MR; ++r) {
      int32_t pair;  // x[r][k], x[r][k+1] as one 32-bit lane (unaligned: memcpy)
      std::memcpy(&pair, x + r * p.ldx + k, 4);
      const __m512i b = _mm512_set1_epi32(pair);
      if (kVnni) {
        acc[r][0] = _mm512_dpwssd_epi32(acc[r][0], w0, b);
        acc[r][1] = _mm512_dpwssd_epi32(acc[r][1], w1, b);
      } else {
        acc[r][0] = _mm512_add_epi32(acc[r][0], _mm512_madd_epi16(w0, b));
        acc[r][1] = _mm512_add_epi32(acc[r][1], _mm512_madd_epi16(w1, b));
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < 2; ++j) {
      float* o = acc_out + r * kBlockN + 16 * j;
      const __m512 s = _mm512_cvtepi32_ps(acc[r][j]);
      _mm512_storeu_ps(o, k0 == 0 ? s : _mm512_add_ps(_mm512_loadu_ps(o), s));
    }
  }
}

template <bool kVnni>
inline void chunk_group(const Int16Problem& p, const int16_t* blk, int64_t m, int64_t rows,
                        int64_t k0, int64_t k1, const char* pf, float* acc) {
  switch (rows) {
    case 1: tile<1, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 2: tile<2, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 3: tile<3, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 4: tile<4, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 5: tile<5, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 6: tile<6, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    case 7: tile<7, kVnni>(p, blk, m, k0, k1, pf, acc); break;
    default: tile<8, kVnni>(p, blk, m, k0, k1, pf, acc); break;
  }
}

// Few rows: K chunk outer, row groups inner, the next chunk prefetched (gemm_int16_avx2.cpp's
// small-M order); else row groups outer, each over the whole K.
template <bool kVnni>
void run_block(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1) {
  const int16_t* blk = p.w + nb * p.Kp * kBlockN;
  const auto chunk_ptr = [&](int64_t k) { return reinterpret_cast<const char*>(blk + k * kBlockN); };
  if (m1 - m0 <= kSmallRows) {
    alignas(64) float acc[kSmallRows * kBlockN];
    for (int64_t k0 = 0; k0 < p.Kp; k0 += p.kblock) {
      const int64_t k1 = k0 + p.kblock < p.Kp ? k0 + p.kblock : p.Kp;
      const int64_t ahead = (k1 - k0) * kBlockN * 2;
      for (int64_t m = m0; m < m1; m += kMaxRows) {
        const int64_t rows = m1 - m < kMaxRows ? m1 - m : kMaxRows;
        const char* pf = chunk_ptr(k0) + (m == m0 ? ahead : 0);
        chunk_group<kVnni>(p, blk, m, rows, k0, k1, pf, acc + (m - m0) * kBlockN);
      }
    }
    detail::store_tile(p, acc, m1 - m0, nb, m0);
    return;
  }
  alignas(64) float acc[kMaxRows * kBlockN];
  for (int64_t m = m0; m < m1; m += kMaxRows) {
    const int64_t rows = m1 - m < kMaxRows ? m1 - m : kMaxRows;
    for (int64_t k0 = 0; k0 < p.Kp; k0 += p.kblock) {
      const int64_t k1 = k0 + p.kblock < p.Kp ? k0 + p.kblock : p.Kp;
      chunk_group<kVnni>(p, blk, m, rows, k0, k1, chunk_ptr(k0), acc);
    }
    detail::store_tile(p, acc, rows, nb, m);
  }
}

}  // namespace

void int16_block_avx512(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1) {
  run_block<false>(p, nb, m0, m1);
}

void int16_block_avx512vnni(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1) {
  run_block<true>(p, nb, m0, m1);
}

float quantize_row_avx512(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq) {
  __m512 amax = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), amax);
  float a = _mm512_reduce_max_ps(amax);
  for (; i < k; ++i) a = std::fabs(x[i]) > a ? std::fabs(x[i]) : a;
  float inv;
  const float scale = detail::row_scale(a, qmax, &inv);
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(qmax));
  const __m512i lo = _mm512_set1_epi32(-static_cast<int>(qmax));
  i = 0;
  for (; i + 16 <= k; i += 16) {  // cvtps rounds half to even (the default MXCSR), as nearbyint
    const __m512i q = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)), lo), hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + i), _mm512_cvtepi32_epi16(q));
  }
  detail::round_tail(x, i, k, kp, inv, qmax, xq);
  return scale;
}

}  // namespace radixserve::gemm_i16
