// AVX-512 linear kernels on the packed layout of gemm_kernels.h: _mm512_dpbf16_ps on bf16 K
// pairs where AVX512-BF16 exists, else bf16 -> fp32 by shift/mask and FMA; fp32 weights by FMA.
// Compiled with AVX-512 flags; only called after cpu_features reports AVX-512 (and BF16).
// Note: the machines this project is developed on have no AVX-512, so this file is built and
// reviewed but not executed there; the AVX2 build of the same tiling is the tested one.
#include <immintrin.h>

#include "cpu/gemm_kernels.h"

namespace radixserve::gemm {
namespace {

constexpr int kMaxRows = 8;  // 8 rows x 2 zmm accumulators + weights fit 32 registers

template <int MR>
inline void tile_dpbf16(const GemmProblem& p, const uint16_t* blk, int64_t m0, float* acc_out) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const uint16_t* x = p.xb + m0 * p.ldx;
  const int64_t pairs = p.Kp / 2;
  for (int64_t q = 0; q < pairs; ++q) {
    const uint16_t* wq = blk + q * 2 * kBlockN;
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(wq);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(wq + 32);
    for (int r = 0; r < MR; ++r) {
      int32_t pair;  // x[r][2q], x[r][2q+1] as one 32-bit lane (unaligned: memcpy)
      std::memcpy(&pair, x + r * p.ldx + 2 * q, 4);
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], w0, b);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], w1, b);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(acc_out + r * kBlockN, acc[r][0]);
    _mm512_storeu_ps(acc_out + r * kBlockN + 16, acc[r][1]);
  }
}

template <int MR>
inline void tile_bf16_fma(const GemmProblem& p, const uint16_t* blk, int64_t m0,
                          float* acc_out) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const float* x = p.xf + m0 * p.ldx;
  const int64_t pairs = p.Kp / 2;
  for (int64_t q = 0; q < pairs; ++q) {
    const uint16_t* wq = blk + q * 2 * kBlockN;
    const __m512i v0 = _mm512_loadu_si512(wq);
    const __m512i v1 = _mm512_loadu_si512(wq + 32);
    __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16));  // even k (low halves)
    __m512 w1 = _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16));
    for (int r = 0; r < MR; ++r) {
      const __m512 b = _mm512_set1_ps(x[r * p.ldx + 2 * q]);
      acc[r][0] = _mm512_fmadd_ps(w0, b, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w1, b, acc[r][1]);
    }
    w0 = _mm512_castsi512_ps(_mm512_and_si512(v0, hi_mask));  // odd k (high halves)
    w1 = _mm512_castsi512_ps(_mm512_and_si512(v1, hi_mask));
    for (int r = 0; r < MR; ++r) {
      const __m512 b = _mm512_set1_ps(x[r * p.ldx + 2 * q + 1]);
      acc[r][0] = _mm512_fmadd_ps(w0, b, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w1, b, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(acc_out + r * kBlockN, acc[r][0]);
    _mm512_storeu_ps(acc_out + r * kBlockN + 16, acc[r][1]);
  }
}

template <int MR>
inline void tile_f32(const GemmProblem& p, const float* blk, int64_t m0, float* acc_out) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const float* x = p.xf + m0 * p.ldx;
  for (int64_t k = 0; k < p.K; ++k) {
    const __m512 w0 = _mm512_loadu_ps(blk + k * kBlockN);
    const __m512 w1 = _mm512_loadu_ps(blk + k * kBlockN + 16);
    for (int r = 0; r < MR; ++r) {
      const __m512 b = _mm512_set1_ps(x[r * p.ldx + k]);
      acc[r][0] = _mm512_fmadd_ps(w0, b, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w1, b, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(acc_out + r * kBlockN, acc[r][0]);
    _mm512_storeu_ps(acc_out + r * kBlockN + 16, acc[r][1]);
  }
}

template <int MR>
inline void block_rows(const GemmProblem& p, const void* blk, int64_t m0, float* acc,
                       bool dpbf16) {
  if (!p.w_bf16) {
    tile_f32<MR>(p, static_cast<const float*>(blk), m0, acc);
  } else if (dpbf16) {
    tile_dpbf16<MR>(p, static_cast<const uint16_t*>(blk), m0, acc);
  } else {
    tile_bf16_fma<MR>(p, static_cast<const uint16_t*>(blk), m0, acc);
  }
}

void run_block(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1, bool dpbf16) {
  alignas(64) float acc[kMaxRows * kBlockN];
  const int64_t esize = p.w_bf16 ? 2 : 4;
  const void* blk = static_cast<const char*>(p.w) + nb * p.Kp * kBlockN * esize;
  for (int64_t m = m0; m < m1; m += kMaxRows) {
    const int64_t rows = m1 - m < kMaxRows ? m1 - m : kMaxRows;
    switch (rows) {
      case 1: block_rows<1>(p, blk, m, acc, dpbf16); break;
      case 2: block_rows<2>(p, blk, m, acc, dpbf16); break;
      case 3: block_rows<3>(p, blk, m, acc, dpbf16); break;
      case 4: block_rows<4>(p, blk, m, acc, dpbf16); break;
      case 5: block_rows<5>(p, blk, m, acc, dpbf16); break;
      case 6: block_rows<6>(p, blk, m, acc, dpbf16); break;
      case 7: block_rows<7>(p, blk, m, acc, dpbf16); break;
      default: block_rows<8>(p, blk, m, acc, dpbf16); break;
    }
    detail::store_tile(p, acc, rows, nb, m);
  }
}

}  // namespace

void gemm_block_avx512(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1) {
  run_block(p, nb, m0, m1, false);
}

void gemm_block_avx512bf16(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1) {
  run_block(p, nb, m0, m1, true);
}

}  // namespace radixserve::gemm
