// AVX2 build of the int16 linear kernels (gemm_int16_kernels.h): vpmaddwd multiplies a broadcast
// K pair of one activation row by the K pairs of 8 channels and adds each pair (16 products per
// instruction, twice an fp32 FMA's 8); vpaddd accumulates in int32. Compiled through a target
// pragma (no global ISA flags); only called when cpu_features reports AVX2.
// Standard headers first, outside the target region, so that no inline library function is
// emitted as an AVX2 copy the linker could pick for other sources.
#include <cmath>
#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include <immintrin.h>

#include "cpu/gemm_int16_kernels.h"

namespace radixserve::gemm_i16 {
namespace {

inline int32_t load_pair(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// One register tile: MR rows x NV*8 channels (from vector v0 of the block) over the K pairs of
// one K chunk [k0, k1) (at most kblock products: the int32 sums cannot overflow), converted to
// fp32 and stored into acc_out (k0 == 0) or added to it. pf walks the weight stream a fixed
// distance ahead (two lines per K pair), so that the next chunk's weights are in flight while
// this one is multiplied.
template <int MR, int NV>
inline void tile(const Int16Problem& p, const int16_t* blk, int v0, int64_t m0, int64_t k0,
                 int64_t k1, const char* pf, float* acc_out) {
  const int16_t* x = p.xq + m0 * p.ldx;
  __m256i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_setzero_si256();
  for (int64_t k = k0; k < k1; k += 2, pf += 2 * kBlockN * 2) {
    _mm_prefetch(pf, _MM_HINT_T0);
    _mm_prefetch(pf + 64, _MM_HINT_T0);
    const __m256i* wk = reinterpret_cast<const __m256i*>(blk + k * kBlockN) + v0;
    __m256i w[NV];
    for (int j = 0; j < NV; ++j) w[j] = _mm256_loadu_si256(wk + j);
    for (int r = 0; r < MR; ++r) {
      const __m256i b = _mm256_set1_epi32(load_pair(x + r * p.ldx + k));
      for (int j = 0; j < NV; ++j)
        acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(w[j], b));
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NV; ++j) {
      float* o = acc_out + r * kBlockN + 8 * (v0 + j);
      const __m256 s = _mm256_cvtepi32_ps(acc[r][j]);
      _mm256_storeu_ps(o, k0 == 0 ? s : _mm256_add_ps(_mm256_loadu_ps(o), s));
    }
  }
}

// One K chunk of a whole 32-channel block for 1-2 rows: one pass with 4 vectors (3-6 rows take
// the assembly tiles below).
template <int MR>
inline void chunk_rows(const Int16Problem& p, const int16_t* blk, int64_t m0, int64_t k0,
                       int64_t k1, const char* pf, float* acc) {
  static_assert(MR >= 1 && MR <= 2, "chunk_rows has 1 or 2 rows");
  tile<MR, 4>(p, blk, 0, m0, k0, k1, pf, acc);
}

// The main tiles, R = 4..6 rows x 16 channels, in assembly: GCC's allocation of the intrinsics
// version spilled half of the 12 accumulators to the stack at 6 rows (measured: no faster than
// fp32) and copies every accumulator once per K pair at 4-5 rows. Registers: ymm0-11 the int32
// sums (row r, vector j in ymm(2r+j); the rows past R stay zero), ymm12-13 the weights of one K
// pair, ymm14 the broadcast activation pair, ymm15 the product. sums: int32 [6][16] (rows past
// R written as zeros).
#define RS_I16_ROW16(xaddr, a0, a1)                      \
  "vpbroadcastd " xaddr ", %%ymm14\n\t"                  \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"               \
  "vpaddd %%ymm15, %%ymm" #a0 ", %%ymm" #a0 "\n\t"       \
  "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"               \
  "vpaddd %%ymm15, %%ymm" #a1 ", %%ymm" #a1 "\n\t"
#define RS_I16_ROWS4                                     \
  RS_I16_ROW16("(%[x])", 0, 1)                           \
  RS_I16_ROW16("(%[x],%[s])", 2, 3)                      \
  RS_I16_ROW16("(%[x],%[s],2)", 4, 5)                    \
  RS_I16_ROW16("(%[x3])", 6, 7)
#define RS_I16_ROWS5 RS_I16_ROWS4 RS_I16_ROW16("(%[x3],%[s])", 8, 9)
#define RS_I16_ROWS6 RS_I16_ROWS5 RS_I16_ROW16("(%[x3],%[s],2)", 10, 11)
#define RS_I16_TILE16(ROWS)                                                                    \
  __asm__ volatile(                                                                            \
      "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"                                                       \
      "vpxor %%xmm1, %%xmm1, %%xmm1\n\t"                                                       \
      "vpxor %%xmm2, %%xmm2, %%xmm2\n\t"                                                       \
      "vpxor %%xmm3, %%xmm3, %%xmm3\n\t"                                                       \
      "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"                                                       \
      "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"                                                       \
      "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"                                                       \
      "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"                                                       \
      "vpxor %%xmm8, %%xmm8, %%xmm8\n\t"                                                       \
      "vpxor %%xmm9, %%xmm9, %%xmm9\n\t"                                                       \
      "vpxor %%xmm10, %%xmm10, %%xmm10\n\t"                                                    \
      "vpxor %%xmm11, %%xmm11, %%xmm11\n\t"                                                    \
      "1:\n\t"                                                                                 \
      "prefetcht0 (%[pf])\n\t"                                                                 \
      "prefetcht0 64(%[pf])\n\t"                                                               \
      "vmovdqu (%[w]), %%ymm12\n\t"                                                            \
      "vmovdqu 32(%[w]), %%ymm13\n\t"                                                          \
      ROWS                                                                                     \
      "add $4, %[x]\n\t"                                                                       \
      "add $4, %[x3]\n\t"                                                                      \
      "add $128, %[w]\n\t"                                                                     \
      "add $128, %[pf]\n\t"                                                                    \
      "dec %[n]\n\t"                                                                           \
      "jnz 1b\n\t"                                                                             \
      "vmovdqu %%ymm0, 0(%[out])\n\t"                                                          \
      "vmovdqu %%ymm1, 32(%[out])\n\t"                                                         \
      "vmovdqu %%ymm2, 64(%[out])\n\t"                                                         \
      "vmovdqu %%ymm3, 96(%[out])\n\t"                                                         \
      "vmovdqu %%ymm4, 128(%[out])\n\t"                                                        \
      "vmovdqu %%ymm5, 160(%[out])\n\t"                                                        \
      "vmovdqu %%ymm6, 192(%[out])\n\t"                                                        \
      "vmovdqu %%ymm7, 224(%[out])\n\t"                                                        \
      "vmovdqu %%ymm8, 256(%[out])\n\t"                                                        \
      "vmovdqu %%ymm9, 288(%[out])\n\t"                                                        \
      "vmovdqu %%ymm10, 320(%[out])\n\t"                                                       \
      "vmovdqu %%ymm11, 352(%[out])\n\t"                                                       \
      : [x] "+r"(x), [x3] "+r"(x3), [w] "+r"(w), [n] "+r"(pairs), [pf] "+r"(pf)                \
      : [s] "r"(s), [out] "r"(sums)                                                            \
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15")

template <int R>
inline void tile16(const int16_t* x, int64_t ldx, const int16_t* w, int64_t pairs,
                   const char* pf, int32_t* sums) {
  static_assert(R >= 4 && R <= 6, "tile16 has 4, 5 or 6 rows");
  const int64_t s = ldx * 2;
  const int16_t* x3 = x + 3 * ldx;
  if constexpr (R == 4) {
    RS_I16_TILE16(RS_I16_ROWS4);
  } else if constexpr (R == 5) {
    RS_I16_TILE16(RS_I16_ROWS5);
  } else {
    RS_I16_TILE16(RS_I16_ROWS6);
  }
}
#undef RS_I16_TILE16
#undef RS_I16_ROWS6
#undef RS_I16_ROWS5
#undef RS_I16_ROWS4
#undef RS_I16_ROW16

// Three rows x the whole 32-channel block, in assembly: GCC's code for tile<3, 2> copies every
// accumulator once per K pair (30 instructions for 6 multiply-adds: bound by the front end at
// ~60% of vpmaddwd's rate; M = 9 leaves 3 rows to it). Here the weights are memory operands
// (12 loads a K pair, from L1: the chunk is there), so 12 accumulators fit: ymm0-3 row 0,
// ymm4-7 row 1, ymm8-11 row 2; ymm14 the broadcast activation pair, ymm15 the product.
// sums: int32 [3][32].
#define RS_I16_ROW3(xaddr, a0, a1, a2, a3)                  \
  "vpbroadcastd " xaddr ", %%ymm14\n\t"                    \
  "vpmaddwd (%[w]), %%ymm14, %%ymm15\n\t"                  \
  "vpaddd %%ymm15, %%ymm" #a0 ", %%ymm" #a0 "\n\t"         \
  "vpmaddwd 32(%[w]), %%ymm14, %%ymm15\n\t"                \
  "vpaddd %%ymm15, %%ymm" #a1 ", %%ymm" #a1 "\n\t"         \
  "vpmaddwd 64(%[w]), %%ymm14, %%ymm15\n\t"                \
  "vpaddd %%ymm15, %%ymm" #a2 ", %%ymm" #a2 "\n\t"         \
  "vpmaddwd 96(%[w]), %%ymm14, %%ymm15\n\t"                \
  "vpaddd %%ymm15, %%ymm" #a3 ", %%ymm" #a3 "\n\t"

inline void tile3x32(const int16_t* x, int64_t ldx, const int16_t* w, int64_t pairs,
                     const char* pf, int32_t* sums) {
  const int64_t s = ldx * 2;
  __asm__ volatile(
      "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"
      "vpxor %%xmm1, %%xmm1, %%xmm1\n\t"
      "vpxor %%xmm2, %%xmm2, %%xmm2\n\t"
      "vpxor %%xmm3, %%xmm3, %%xmm3\n\t"
      "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"
      "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"
      "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"
      "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"
      "vpxor %%xmm8, %%xmm8, %%xmm8\n\t"
      "vpxor %%xmm9, %%xmm9, %%xmm9\n\t"
      "vpxor %%xmm10, %%xmm10, %%xmm10\n\t"
      "vpxor %%xmm11, %%xmm11, %%xmm11\n\t"
      "1:\n\t"
      "prefetcht0 (%[pf])\n\t"
      "prefetcht0 64(%[pf])\n\t"
      RS_I16_ROW3("(%[x])", 0, 1, 2, 3)
      RS_I16_ROW3("(%[x],%[s])", 4, 5, 6, 7)
      RS_I16_ROW3("(%[x],%[s],2)", 8, 9, 10, 11)
      "add $4, %[x]\n\t"
      "add $128, %[w]\n\t"
      "add $128, %[pf]\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vmovdqu %%ymm0, 0(%[out])\n\t"
      "vmovdqu %%ymm1, 32(%[out])\n\t"
      "vmovdqu %%ymm2, 64(%[out])\n\t"
      "vmovdqu %%ymm3, 96(%[out])\n\t"
      "vmovdqu %%ymm4, 128(%[out])\n\t"
      "vmovdqu %%ymm5, 160(%[out])\n\t"
      "vmovdqu %%ymm6, 192(%[out])\n\t"
      "vmovdqu %%ymm7, 224(%[out])\n\t"
      "vmovdqu %%ymm8, 256(%[out])\n\t"
      "vmovdqu %%ymm9, 288(%[out])\n\t"
      "vmovdqu %%ymm10, 320(%[out])\n\t"
      "vmovdqu %%ymm11, 352(%[out])\n\t"
      : [x] "+r"(x), [w] "+r"(w), [n] "+r"(pairs), [pf] "+r"(pf)
      : [s] "r"(s), [out] "r"(sums)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm14", "xmm15");
}
#undef RS_I16_ROW3

// Rows m0..m0+2 of one K chunk of a whole block through tile3x32.
inline void chunk3(const Int16Problem& p, const int16_t* blk, int64_t m0, int64_t k0, int64_t k1,
                   const char* pf, float* acc_out) {
  alignas(32) int32_t sums[3 * 32];
  tile3x32(p.xq + m0 * p.ldx + k0, p.ldx, blk + k0 * kBlockN, (k1 - k0) / 2, pf, sums);
  for (int i = 0; i < 3 * 32; i += 8) {
    float* o = acc_out + i;  // sums and acc_out are both [3][32]
    const __m256 v =
        _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sums + i)));
    _mm256_storeu_ps(o, k0 == 0 ? v : _mm256_add_ps(_mm256_loadu_ps(o), v));
  }
}

// Rows m0..m0+R-1 of one K chunk of a whole block through tile16<R> (two 16-channel halves).
template <int R>
inline void chunk16(const Int16Problem& p, const int16_t* blk, int64_t m0, int64_t k0,
                    int64_t k1, const char* pf, float* acc_out) {
  alignas(32) int32_t sums[6 * 16];
  const int16_t* x = p.xq + m0 * p.ldx;
  for (int half = 0; half < 2; ++half) {
    // Each K pair row holds 32 channels x 2 int16: the second half starts 32 int16 in.
    tile16<R>(x + k0, p.ldx, blk + k0 * kBlockN + 32 * half, (k1 - k0) / 2, pf, sums);
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < 2; ++j) {
        float* o = acc_out + r * kBlockN + 16 * half + 8 * j;
        const __m256 v = _mm256_cvtepi32_ps(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(sums + 16 * r + 8 * j)));
        _mm256_storeu_ps(o, k0 == 0 ? v : _mm256_add_ps(_mm256_loadu_ps(o), v));
      }
    }
  }
}

constexpr int kMaxRows = 6;  // the tallest tile

// One K chunk of `rows` (1..6) rows of a block, into acc (rows x 32 fp32).
inline void chunk_group(const Int16Problem& p, const int16_t* blk, int64_t m, int64_t rows,
                        int64_t k0, int64_t k1, const char* pf, float* acc) {
  switch (rows) {
    case 1: chunk_rows<1>(p, blk, m, k0, k1, pf, acc); break;
    case 2: chunk_rows<2>(p, blk, m, k0, k1, pf, acc); break;
    case 3: chunk3(p, blk, m, k0, k1, pf, acc); break;
    case 4: chunk16<4>(p, blk, m, k0, k1, pf, acc); break;
    case 5: chunk16<5>(p, blk, m, k0, k1, pf, acc); break;
    default: chunk16<6>(p, blk, m, k0, k1, pf, acc); break;
  }
}

}  // namespace

void int16_block_avx2(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1) {
  const int16_t* blk = p.w + nb * p.Kp * kBlockN;
  const auto chunk_ptr = [&](int64_t k) { return reinterpret_cast<const char*>(blk + k * kBlockN); };
  if (m1 - m0 <= kSmallRows) {
    // Few rows (a short request): the product is bound by reading the weights (a 9-token MiniLM
    // forward streams 21 MB of them past L2), not by vpmaddwd. So K chunk by K chunk: every row
    // group uses a chunk while it is in L1, and the first group's pass prefetches the next
    // chunk (the next block's first one at the end: blocks are contiguous).
    alignas(64) float acc[kSmallRows * kBlockN];
    for (int64_t k0 = 0; k0 < p.Kp; k0 += p.kblock) {
      const int64_t k1 = k0 + p.kblock < p.Kp ? k0 + p.kblock : p.Kp;
      const int64_t ahead = (k1 - k0) * kBlockN * 2;  // bytes: one chunk
      for (int64_t m = m0; m < m1; m += kMaxRows) {
        const int64_t rows = m1 - m < kMaxRows ? m1 - m : kMaxRows;
        const char* pf = chunk_ptr(k0) + (m == m0 ? ahead : 0);
        chunk_group(p, blk, m, rows, k0, k1, pf, acc + (m - m0) * kBlockN);
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
      chunk_group(p, blk, m, rows, k0, k1, chunk_ptr(k0), acc);
    }
    detail::store_tile(p, acc, rows, nb, m);
  }
}

float quantize_row_avx2(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 amax = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) amax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), amax);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  float a = _mm_cvtss_f32(m);
  for (; i < k; ++i) a = std::fabs(x[i]) > a ? std::fabs(x[i]) : a;
  float inv;
  const float scale = detail::row_scale(a, qmax, &inv);
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(qmax)), lo = _mm256_set1_epi32(-static_cast<int>(qmax));
  i = 0;
  for (; i + 16 <= k; i += 16) {  // cvtps rounds half to even (the default MXCSR), as nearbyint
    const __m256i q0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)), lo), hi);
    const __m256i q1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv)), lo), hi);
    // packs interleaves the 128-bit halves; the permute restores the order.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + i),
                        _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8));
  }
  detail::round_tail(x, i, k, kp, inv, qmax, xq);
  return scale;
}

}  // namespace radixserve::gemm_i16

#pragma GCC pop_options
