// AVX2 + FMA linear kernels on the packed layout of gemm_kernels.h. Compiled through a target
// pragma (no global ISA flags); only called when cpu_features reports AVX2 and FMA.
#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include <immintrin.h>

#include <cstdlib>

#include "cpu/gemm_kernels.h"

namespace radixserve::gemm {
namespace {

// Decode tiles (all 4 vectors of a 128-byte bf16 K pair in one pass) prefetch the weight
// stream this far ahead: with ~22 instructions per 128 bytes the out-of-order window alone keeps
// too few DRAM reads in flight (fp32, with 9, reached the read loop's rate without it).
constexpr int64_t kBf16PrefetchBytes = 2048;

// One register tile: MR rows x NV*8 columns (starting at column 8*v0 of the block), full K.
// Weights are converted once per K step and shared by the MR rows; x comes as fp32 broadcasts.
template <int MR, int NV>
inline void tile_bf16(const GemmProblem& p, const uint16_t* blk, int v0, int64_t m0,
                      float* acc_out) {
  __m256 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_setzero_ps();
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  const float* x = p.xf + m0 * p.ldx;
  const int64_t pairs = p.Kp / 2;
  for (int64_t q = 0; q < pairs; ++q) {
    const __m256i* wq = reinterpret_cast<const __m256i*>(blk + q * 2 * kBlockN) + v0;
    if (NV == 4) {  // the block's stream runs on into the next block, this thread's next one
      const char* ahead = reinterpret_cast<const char*>(wq) + kBf16PrefetchBytes;
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);
    }
    __m256 w[NV];
    for (int j = 0; j < NV; ++j)  // even k of each pair: the low half of the 32-bit lane
      w[j] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256(wq + j), 16));
    for (int r = 0; r < MR; ++r) {
      const __m256 b = _mm256_broadcast_ss(x + r * p.ldx + 2 * q);
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_fmadd_ps(w[j], b, acc[r][j]);
    }
    for (int j = 0; j < NV; ++j)  // odd k: the high half
      w[j] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256(wq + j), hi_mask));
    for (int r = 0; r < MR; ++r) {
      const __m256 b = _mm256_broadcast_ss(x + r * p.ldx + 2 * q + 1);
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_fmadd_ps(w[j], b, acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(acc_out + r * kBlockN + 8 * (v0 + j), acc[r][j]);
}

template <int MR, int NV>
inline void tile_f32(const GemmProblem& p, const float* blk, int v0, int64_t m0, float* acc_out) {
  __m256 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_setzero_ps();
  const float* x = p.xf + m0 * p.ldx;
  for (int64_t k = 0; k < p.K; ++k) {
    const float* wk = blk + k * kBlockN + 8 * v0;
    __m256 w[NV];
    for (int j = 0; j < NV; ++j) w[j] = _mm256_loadu_ps(wk + 8 * j);
    for (int r = 0; r < MR; ++r) {
      const __m256 b = _mm256_broadcast_ss(x + r * p.ldx + k);
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_fmadd_ps(w[j], b, acc[r][j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(acc_out + r * kBlockN + 8 * (v0 + j), acc[r][j]);
}

// A whole 32-column block for MR rows: one pass with 4 vectors (few rows: the weight stream is
// read once per tile) or two half-block passes with 2 vectors (many rows: 16 registers hold
// MR*NV accumulators plus the weights).
template <int MR>
inline void block_rows(const GemmProblem& p, const void* blk, int64_t m0, float* acc) {
  if (p.w_bf16) {
    const auto* b = static_cast<const uint16_t*>(blk);
    if (MR <= 2) {
      tile_bf16<MR, 4>(p, b, 0, m0, acc);
    } else {
      tile_bf16<MR, 2>(p, b, 0, m0, acc);
      tile_bf16<MR, 2>(p, b, 2, m0, acc);
    }
  } else {
    const auto* b = static_cast<const float*>(blk);
    if (MR <= 2) {
      tile_f32<MR, 4>(p, b, 0, m0, acc);
    } else {
      tile_f32<MR, 2>(p, b, 0, m0, acc);
      tile_f32<MR, 2>(p, b, 2, m0, acc);
    }
  }
}

// Per-thread fp32 copy of one bf16 weight block, for tiles that reuse it across many rows.
// Internal linkage and no std containers: this TU is built for AVX2 (see the pragma).
struct Scratch {
  float* data = nullptr;
  int64_t size = 0;
  ~Scratch() { std::free(data); }
  float* get(int64_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(n) * 4));
      size = data ? n : 0;
    }
    return data;
  }
};

// bf16 [Kp/2][32][2] -> fp32 [Kp][32]: the even k of a pair is the low half of its lane.
void widen_block(const uint16_t* blk, int64_t kp, float* dst) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t q = 0; q < kp / 2; ++q) {
    const __m256i* wq = reinterpret_cast<const __m256i*>(blk + q * 2 * kBlockN);
    float* d0 = dst + 2 * q * kBlockN;
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_loadu_si256(wq + j);
      _mm256_storeu_ps(d0 + 8 * j, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      _mm256_storeu_ps(d0 + kBlockN + 8 * j, _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)));
    }
  }
}

void run_rows(const GemmProblem& p, const void* blk, int64_t nb, int64_t m0, int64_t m1) {
  constexpr int kMaxRows = 6;
  alignas(64) float acc[kMaxRows * kBlockN];
  // Small batches (decode) use 2-row full-block tiles; larger ones 6-row tiles.
  const int64_t step = (m1 - m0) >= kMaxRows ? kMaxRows : 2;
  for (int64_t m = m0; m < m1; m += step) {
    const int64_t rows = m1 - m < step ? m1 - m : step;
    switch (rows) {
      case 1: block_rows<1>(p, blk, m, acc); break;
      case 2: block_rows<2>(p, blk, m, acc); break;
      case 3: block_rows<3>(p, blk, m, acc); break;
      case 4: block_rows<4>(p, blk, m, acc); break;
      case 5: block_rows<5>(p, blk, m, acc); break;
      default: block_rows<6>(p, blk, m, acc); break;
    }
    detail::store_tile(p, acc, rows, nb, m);
  }
}

// Rows at or above this share one widened copy of the block instead of converting per tile.
constexpr int64_t kWidenRows = 12;

}  // namespace

void gemm_block_avx2(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1) {
  const int64_t esize = p.w_bf16 ? 2 : 4;
  const void* blk = static_cast<const char*>(p.w) + nb * p.Kp * kBlockN * esize;
  if (p.w_bf16 && m1 - m0 >= kWidenRows) {
    static thread_local Scratch scratch;
    float* wide = scratch.get(p.Kp * kBlockN);
    if (wide != nullptr) {
      widen_block(static_cast<const uint16_t*>(blk), p.Kp, wide);
      GemmProblem pf = p;  // same x (row stride Kp, zero-padded), output and bias
      pf.w_bf16 = false;
      pf.K = p.Kp;
      run_rows(pf, wide, nb, m0, m1);
      return;
    }
  }
  run_rows(p, blk, nb, m0, m1);
}

}  // namespace radixserve::gemm

#pragma GCC pop_options
