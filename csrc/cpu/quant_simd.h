// Vector kernels of the quantized linear (interface and layout: quant_kernels.h), written once
// with 256-bit AVX2/FMA/F16C intrinsics. quant_avx2.cpp compiles them under a target pragma;
// quant_avx512.cpp compiles the same code with the AVX-512 flags (EVEX encodings, same 8-lane
// algorithm: decode is bound by memory, not by vector width). Include only from those files.
//
// Decode (few rows): per weight row and 8 blocks, the fp16 scales are converted by one vector
// instruction. Default, int16 activations: a block's 32 quants become two vectors of 16 int16
// (4-bit: bytes widened, then masked / shifted; 8-bit: sign-extended), multiplied exactly with
// the int16 activations (madd), and the block's integer sum is scaled by d * sx in one
// conversion and FMA. A row's block scales (times sx) are staged first, then one flat loop over
// its blocks; 8 rows' sums are reduced together. At K = 576 (18 blocks a row) the per-row work
// around the dots was about half the time; this layout took Q4_1 M=1 from ~9 to ~13 GB/s on one
// AVX2 core (benchmarks/results/linear_quant.md).
// Q4 offsets add m * sum(x' of the block). fp32 activations (set_quant_activations("fp32")):
// a block's 32 quants become 4 fp32 vectors, multiplied with x, and the block's sum is scaled by d.
// Prefill: 32 weight rows are dequantised to an fp32 [K][32] tile once (d * q + m by one FMA),
// then 6-row x 16-column register tiles stream it, as the fp32 gemm does.
#pragma once

#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/quant_kernels.h"

namespace radixserve::quant {
namespace {

inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 32 quants of a block as two vectors of 16 int16: weights 0..15 and 16..31.
// Byte j of a 4-bit block holds weight j (low nibble) and weight j + 16 (high nibble).
template <QType T>
inline void block_words(const uint8_t* qs, __m256i* lo, __m256i* hi) {
  if (T == kQ8_0) {
    *lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    *hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16)));
  } else {
    const __m256i bytes =
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    *lo = _mm256_and_si256(bytes, _mm256_set1_epi16(0xf));
    *hi = _mm256_srli_epi16(bytes, 4);
  }
}

// Exact integer dot of a block's quants with 32 int16 activations, as 8 fp32 partial sums
// (madd: int16 pairs summed into int32; |sum| <= 32 * 128 * 32767 fits).
inline __m256 block_dot_i16(__m256i lo, __m256i hi, const int16_t* x) {
  const __m256i* xv = reinterpret_cast<const __m256i*>(x);
  const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(xv)),
                                     _mm256_madd_epi16(hi, _mm256_loadu_si256(xv + 1)));
  return _mm256_cvtepi32_ps(s);
}

// The 32 quants of a block as 4 fp32 vectors (weights 0-7, 8-15, 16-23, 24-31). 4-bit: bytes
// 0-7 widened to 32-bit lanes hold weights 0-7 (low nibbles) and 16-23 (high nibbles).
template <QType T>
inline void block_q(const uint8_t* qs, __m256* q) {
  if (T == kQ8_0) {
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * j))));
    return;
  }
  const __m256i mask = _mm256_set1_epi32(0xf);
  for (int h = 0; h < 2; ++h) {
    const __m256i v =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * h)));
    q[h] = _mm256_cvtepi32_ps(_mm256_and_si256(v, mask));
    q[h + 2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
  }
}

// One activation row rounded to int16 per block, as quantize_row_generic (quant.cpp) does it:
// sx = max|x| / 32767, xq = x * (32767 / max|x|) rounded half away from zero and clamped to
// +-32767, xsum = sx * sum(xq). The scalar loop cost ~1.7 ns per activation (2.6 us for
// K = 1536, serial before the parallel region); this one ~8x less.
inline void quantize_row(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum) {
  const __m256 sign = _mm256_set1_ps(-0.f), zero = _mm256_setzero_ps();
  const __m256 plus_half = _mm256_set1_ps(0.5f), minus_half = _mm256_set1_ps(-0.5f);
  const __m256i qmax = _mm256_set1_epi32(32767), qmin = _mm256_set1_epi32(-32767);
  for (int64_t b = 0; b < kb; ++b) {
    const float* xb = x + b * kQK;
    __m256 v[4];
    __m256 amax = zero;
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[j]), amax);  // NaN lanes keep amax
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float a = _mm_cvtss_f32(m);
    const float sx = a / 32767.f;
    const __m256 inv = _mm256_set1_ps(a > 0.f ? 32767.f / a : 0.f);
    __m256i q[4];
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      __m256 t = _mm256_mul_ps(v[j], inv);
      asm("" : "+x"(t));  // keep the product rounded: no FMA contraction with the add below
      const __m256 half = _mm256_blendv_ps(minus_half, plus_half, _mm256_cmp_ps(t, zero, _CMP_GE_OQ));
      q[j] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(_mm256_add_ps(t, half)), qmin),
                              qmax);
      sum = _mm256_add_epi32(sum, q[j]);
    }
    // packs interleaves the 128-bit halves; the permute restores the order.
    __m256i* dst = reinterpret_cast<__m256i*>(xq + b * kQK);
    _mm256_storeu_si256(dst, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8));
    _mm256_storeu_si256(dst + 1, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xd8));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    xscale[b] = sx;
    xsum[b] = sx * static_cast<float>(_mm_cvtsi128_si32(s4));
  }
}

// Scales d and offsets m (Q4_0: -8 d; Q8_0: 0) of blocks [b0, b0 + 8) of a row, zero past kb.
// One unaligned 16-byte load each, also for a last, partial group: the bytes past the row's d
// (or m) array are its m or qs bytes, still inside the row, and are masked off. (Gathering a tail
// through a stack array cost a failed store-to-load forward per row, a large part of the per-row
// cost at K = 576.)
template <QType T>
inline void load_scales(const uint8_t* row, int64_t kb, int64_t b0, __m256* d, __m256* m) {
  *d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * b0)));
  if (T == kQ4_1)
    *m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * (kb + b0))));
  if (b0 + kScaleVec > kb) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 keep = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kb - b0)), lane));
    *d = _mm256_and_ps(*d, keep);
    if (T == kQ4_1) *m = _mm256_and_ps(*m, keep);
  }
  if (T == kQ4_0) *m = _mm256_mul_ps(*d, _mm256_set1_ps(-8.f));
  if (T == kQ8_0) *m = _mm256_setzero_ps();
}

// fp32 activations: acc[r] += d * dot(q, x[r]) over block b (q converted to fp32 vectors).
template <int MR>
inline void block_dot_f32(const QuantProblem& p, const __m256* q, const float* d, int64_t b,
                          int64_t m0, __m256* acc) {
  const __m256 dv = _mm256_broadcast_ss(d);
  for (int r = 0; r < MR; ++r) {
    const float* x = p.x + (m0 + r) * p.ldx + b * kQK;
    __m256 s0 = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(q[2], _mm256_loadu_ps(x + 16));
    s0 = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x + 8), s0);
    s1 = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x + 24), s1);
    acc[r] = _mm256_fmadd_ps(dv, _mm256_add_ps(s0, s1), acc[r]);
  }
}

// Output column n for activation rows [m0, m0 + MR), fp32 activations.
template <QType T, int MR>
inline void gemv_column_f32(const QuantProblem& p, int64_t n, int64_t m0) {
  constexpr int64_t kQs = T == kQ8_0 ? 32 : 16;
  const uint8_t* row = p.w + n * p.row_bytes;
  const uint8_t* qs = row + qs_offset(T, p.KB);
  __m256 acc0[MR], acc1[MR], macc[MR];
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = macc[r] = _mm256_setzero_ps();
  alignas(32) float ds[kScaleVec];
  for (int64_t b0 = 0; b0 < p.KB; b0 += kScaleVec) {
    __m256 dv, mv;
    load_scales<T>(row, p.KB, b0, &dv, &mv);
    _mm256_store_ps(ds, dv);
    if (T != kQ8_0)
      for (int r = 0; r < MR; ++r)
        macc[r] = _mm256_fmadd_ps(mv, _mm256_loadu_ps(p.xsum + (m0 + r) * p.ldxs + b0), macc[r]);
    const int64_t nb = p.KB - b0 < kScaleVec ? p.KB - b0 : kScaleVec;
    int64_t j = 0;
    for (; j + 1 < nb; j += 2) {
      __m256 q[4];
      block_q<T>(qs + (b0 + j) * kQs, q);
      block_dot_f32<MR>(p, q, ds + j, b0 + j, m0, acc0);
      block_q<T>(qs + (b0 + j + 1) * kQs, q);
      block_dot_f32<MR>(p, q, ds + j + 1, b0 + j + 1, m0, acc1);
    }
    if (j < nb) {
      __m256 q[4];
      block_q<T>(qs + (b0 + j) * kQs, q);
      block_dot_f32<MR>(p, q, ds + j, b0 + j, m0, acc0);
    }
  }
  const float bias = p.bias ? p.bias[n] : 0.f;
  for (int r = 0; r < MR; ++r)
    p.out[(m0 + r) * p.N + n] =
        hsum(_mm256_add_ps(acc0[r], acc1[r])) + (T != kQ8_0 ? hsum(macc[r]) : 0.f) + bias;
}

// Lane n of the result = sum of the lanes of a[n] (8 dot products reduced at once).
inline __m256 hsum8x8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// int16 decode: blocks whose scales d * sx are staged at once, and how far ahead of the block
// being multiplied the weight stream is prefetched (bytes; measured 5-10% faster from DRAM than
// the hardware prefetcher alone on the AVX2 EPYC, benchmarks/results/linear_quant.md).
constexpr int64_t kStageBlocks = 32;
constexpr int64_t kPrefetchBytes = 2048;

// int16 activations, block b of NR weight rows (quants at q[i] + b * kQs) against MR activation
// rows (x[r] + b * 32): acc[i * MR + r] += (d * sx_r) * dot(q_i, xq_r), with the scale at
// ds[(i * MR + r) * kStageBlocks + j]. Each activation vector is loaded once for the NR rows.
// (Row and activation pointers stay in registers: reloading p.xq and p.K for every block cost
// ~7% at M = 1.)
template <QType T, int MR, int NR>
inline void block_dot_rows(const uint8_t* const* q, const int16_t* const* x, int64_t b,
                           const float* ds, int64_t j, __m256* acc) {
  constexpr int64_t kQs = T == kQ8_0 ? 32 : 16;
  __m256i lo[NR], hi[NR];
  for (int i = 0; i < NR; ++i) block_words<T>(q[i] + b * kQs, &lo[i], &hi[i]);
  for (int r = 0; r < MR; ++r) {
    const __m256i* xv = reinterpret_cast<const __m256i*>(x[r] + b * kQK);
    const __m256i x0 = _mm256_loadu_si256(xv), x1 = _mm256_loadu_si256(xv + 1);
    for (int i = 0; i < NR; ++i) {
      const __m256 s = _mm256_cvtepi32_ps(
          _mm256_add_epi32(_mm256_madd_epi16(lo[i], x0), _mm256_madd_epi16(hi[i], x1)));
      const int a = i * MR + r;
      acc[a] = _mm256_fmadd_ps(s, _mm256_broadcast_ss(ds + a * kStageBlocks + j), acc[a]);
    }
  }
}

// int16 activations: weight rows [n, n + NR) against activation rows [m0, m0 + MR). tot[i * MR +
// r] gets 8 lanes whose sum is out[m0 + r][n + i] without the bias. Each row is read once, front
// to back: the scales of up to 32 blocks (times each activation row's sx) are staged first, then
// a flat loop over the blocks with two accumulator chains (even / odd blocks) hides the FMA
// latency. NR = 2 (M = 1, short rows) shares the activation loads and overlaps the two rows'
// fixed costs (staging, reduction): +10% for Q4_1 rows of 360 bytes; for rows of 600 bytes and
// more the two interleaved streams lost ~20% from DRAM (benchmarks/results/linear_quant.md).
template <QType T, int MR, int NR>
inline void gemv_rows_i16(const QuantProblem& p, int64_t n, int64_t m0, __m256* tot) {
  constexpr int64_t kQs = T == kQ8_0 ? 32 : 16;
  constexpr int kAcc = MR * NR;
  const int64_t kb = p.KB;
  const uint8_t* row[NR];
  const uint8_t* qs[NR];
  for (int i = 0; i < NR; ++i) {
    row[i] = p.w + (n + i) * p.row_bytes;
    qs[i] = row[i] + qs_offset(T, kb);
  }
  const int16_t* xrow[MR];
  for (int r = 0; r < MR; ++r) xrow[r] = p.xq + (m0 + r) * p.K;
  __m256 acc0[kAcc], acc1[kAcc], macc[kAcc];
  for (int a = 0; a < kAcc; ++a) acc0[a] = acc1[a] = macc[a] = _mm256_setzero_ps();
  alignas(32) float ds[kAcc * kStageBlocks];
  for (int64_t c0 = 0; c0 < kb; c0 += kStageBlocks) {
    const int64_t c1 = kb < c0 + kStageBlocks ? kb : c0 + kStageBlocks;
    for (int64_t b0 = c0; b0 < c1; b0 += kScaleVec) {
      for (int i = 0; i < NR; ++i) {
        __m256 dv, mv;
        load_scales<T>(row[i], kb, b0, &dv, &mv);
        for (int r = 0; r < MR; ++r) {
          const int64_t at = (m0 + r) * p.ldxs + b0;
          const int a = i * MR + r;
          _mm256_store_ps(ds + a * kStageBlocks + (b0 - c0),
                          _mm256_mul_ps(dv, _mm256_loadu_ps(p.xscale + at)));
          if (T != kQ8_0) macc[a] = _mm256_fmadd_ps(mv, _mm256_loadu_ps(p.xsum + at), macc[a]);
        }
      }
    }
    int64_t b = c0;
    for (; b + 2 <= c1; b += 2) {
      for (int i = 0; i < NR; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(qs[i] + b * kQs + kPrefetchBytes), _MM_HINT_T0);
      block_dot_rows<T, MR, NR>(qs, xrow, b, ds, b - c0, acc0);
      block_dot_rows<T, MR, NR>(qs, xrow, b + 1, ds, b + 1 - c0, acc1);
    }
    if (b < c1) block_dot_rows<T, MR, NR>(qs, xrow, b, ds, b - c0, acc0);
  }
  for (int a = 0; a < kAcc; ++a) tot[a] = _mm256_add_ps(_mm256_add_ps(acc0[a], acc1[a]), macc[a]);
}

// Columns [n0, n1) for activation rows [m0, m0 + MR), int16 activations, NR weight rows at a
// time; 8 rows' sums are reduced and stored together.
template <QType T, int MR, int NR>
inline void gemv_int16(const QuantProblem& p, int64_t n0, int64_t n1, int64_t m0) {
  __m256 tot[8][MR];
  int64_t n = n0;
  for (; n + 8 <= n1; n += 8) {
    for (int c = 0; c < 8; c += NR) gemv_rows_i16<T, MR, NR>(p, n + c, m0, tot[c]);
    for (int r = 0; r < MR; ++r) {
      __m256 col[8];
      for (int c = 0; c < 8; ++c) col[c] = tot[c][r];
      __m256 o = hsum8x8(col);
      if (p.bias) o = _mm256_add_ps(o, _mm256_loadu_ps(p.bias + n));
      _mm256_storeu_ps(p.out + (m0 + r) * p.N + n, o);
    }
  }
  for (; n < n1; ++n) {
    gemv_rows_i16<T, MR, 1>(p, n, m0, tot[0]);
    for (int r = 0; r < MR; ++r)
      p.out[(m0 + r) * p.N + n] = hsum(tot[0][r]) + (p.bias ? p.bias[n] : 0.f);
  }
}

// Rows up to this size are paired at M = 1 (NR = 2, see gemv_rows_i16).
constexpr int64_t kPairRowBytes = 512;

template <QType T>
void gemv_typed(const QuantProblem& p, int64_t n0, int64_t n1) {
  for (int64_t m0 = 0; m0 < p.M; m0 += 4) {
    const int64_t rows = p.M - m0 < 4 ? p.M - m0 : 4;
    if (p.xq != nullptr) {
      switch (rows) {
        case 1:
          if (p.row_bytes <= kPairRowBytes)
            gemv_int16<T, 1, 2>(p, n0, n1, m0);
          else
            gemv_int16<T, 1, 1>(p, n0, n1, m0);
          break;
        case 2: gemv_int16<T, 2, 1>(p, n0, n1, m0); break;
        case 3: gemv_int16<T, 3, 1>(p, n0, n1, m0); break;
        default: gemv_int16<T, 4, 1>(p, n0, n1, m0); break;
      }
      continue;
    }
    for (int64_t n = n0; n < n1; ++n) {
      switch (rows) {
        case 1: gemv_column_f32<T, 1>(p, n, m0); break;
        case 2: gemv_column_f32<T, 2>(p, n, m0); break;
        case 3: gemv_column_f32<T, 3>(p, n, m0); break;
        default: gemv_column_f32<T, 4>(p, n, m0); break;
      }
    }
  }
}

// Per-thread fp32 tile. Internal linkage and no std containers: this code is built per ISA.
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

// In place 8x8 transpose: r[i] lane j <-> r[j] lane i.
inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Weight rows [n0, n0 + cols) -> wt[k][c] = W[n0 + c][k] in fp32, columns past cols zero.
// Eight rows at a time: each row's block is dequantised (d * q + m, one FMA) into tmp, then
// 8x8 transposes turn the rows into the tile's 32-column lines.
template <QType T>
void dequant_tile(const QuantProblem& p, int64_t n0, int64_t cols, float* wt) {
  constexpr int64_t kQs = T == kQ8_0 ? 32 : 16;
  alignas(32) float ds[8][kScaleVec], ms[8][kScaleVec], tmp[8][kQK];
  for (int64_t c0 = 0; c0 < kTileN; c0 += 8) {
    const int64_t rows = cols - c0 < 0 ? 0 : (cols - c0 < 8 ? cols - c0 : 8);
    for (int64_t r = rows; r < 8; ++r)
      for (int i = 0; i < kQK; ++i) tmp[r][i] = 0.f;  // padding columns stay zero
    for (int64_t b0 = 0; b0 < p.KB; b0 += kScaleVec) {
      for (int64_t r = 0; r < rows; ++r) {
        __m256 dv, mv;
        load_scales<T>(p.w + (n0 + c0 + r) * p.row_bytes, p.KB, b0, &dv, &mv);
        _mm256_store_ps(ds[r], dv);
        _mm256_store_ps(ms[r], mv);
      }
      const int64_t nb = p.KB - b0 < kScaleVec ? p.KB - b0 : kScaleVec;
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t b = b0 + j;
        for (int64_t r = 0; r < rows; ++r) {
          const uint8_t* row = p.w + (n0 + c0 + r) * p.row_bytes;
          __m256 q[4];
          block_q<T>(row + qs_offset(T, p.KB) + b * kQs, q);
          const __m256 d = _mm256_broadcast_ss(&ds[r][j]), m = _mm256_broadcast_ss(&ms[r][j]);
          for (int v = 0; v < 4; ++v) _mm256_store_ps(tmp[r] + 8 * v, _mm256_fmadd_ps(q[v], d, m));
        }
        for (int v = 0; v < 4; ++v) {
          __m256 t[8];
          for (int r = 0; r < 8; ++r) t[r] = _mm256_load_ps(tmp[r] + 8 * v);
          transpose8(t);
          float* dst = wt + (b * kQK + 8 * v) * kTileN + c0;
          for (int i = 0; i < 8; ++i) _mm256_store_ps(dst + i * kTileN, t[i]);
        }
      }
    }
  }
}

// MR rows x 16 columns (from column 8 * v0) of the tile product, full K.
template <int MR>
inline void tile_half(const QuantProblem& p, const float* wt, int v0, int64_t m0, float* acc_out) {
  __m256 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const float* x = p.x + m0 * p.ldx;
  for (int64_t k = 0; k < p.K; ++k) {
    const float* wk = wt + k * kTileN + 8 * v0;
    const __m256 w0 = _mm256_load_ps(wk), w1 = _mm256_load_ps(wk + 8);
    for (int r = 0; r < MR; ++r) {
      const __m256 b = _mm256_broadcast_ss(x + r * p.ldx + k);
      acc[r][0] = _mm256_fmadd_ps(w0, b, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(w1, b, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(acc_out + r * kTileN + 8 * v0, acc[r][0]);
    _mm256_storeu_ps(acc_out + r * kTileN + 8 * v0 + 8, acc[r][1]);
  }
}

template <int MR>
inline void tile_rows(const QuantProblem& p, const float* wt, int64_t m0, float* acc) {
  tile_half<MR>(p, wt, 0, m0, acc);
  tile_half<MR>(p, wt, 2, m0, acc);
}

void gemm_tile(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1) {
  static thread_local Scratch scratch;
  const int64_t cols = p.N - n0 < kTileN ? p.N - n0 : kTileN;
  float* wt = scratch.get(p.K * kTileN);
  if (wt == nullptr) throw std::bad_alloc();
  switch (p.type) {
    case kQ4_0: dequant_tile<kQ4_0>(p, n0, cols, wt); break;
    case kQ4_1: dequant_tile<kQ4_1>(p, n0, cols, wt); break;
    default: dequant_tile<kQ8_0>(p, n0, cols, wt); break;
  }
  constexpr int64_t kRows = 6;
  alignas(64) float acc[kRows * kTileN];
  for (int64_t m = m0; m < m1; m += kRows) {
    const int64_t rows = m1 - m < kRows ? m1 - m : kRows;
    switch (rows) {
      case 1: tile_rows<1>(p, wt, m, acc); break;
      case 2: tile_rows<2>(p, wt, m, acc); break;
      case 3: tile_rows<3>(p, wt, m, acc); break;
      case 4: tile_rows<4>(p, wt, m, acc); break;
      case 5: tile_rows<5>(p, wt, m, acc); break;
      default: tile_rows<6>(p, wt, m, acc); break;
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* o = p.out + (m + r) * p.N + n0;
      for (int64_t c = 0; c < cols; ++c) o[c] = acc[r * kTileN + c] + (p.bias ? p.bias[n0 + c] : 0.f);
    }
  }
}

void gemv(const QuantProblem& p, int64_t n0, int64_t n1) {
  switch (p.type) {
    case kQ4_0: gemv_typed<kQ4_0>(p, n0, n1); break;
    case kQ4_1: gemv_typed<kQ4_1>(p, n0, n1); break;
    default: gemv_typed<kQ8_0>(p, n0, n1); break;
  }
}

}  // namespace
}  // namespace radixserve::quant
