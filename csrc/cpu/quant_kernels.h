// Raw-pointer interface between the torch-facing quantized linear op (quant.cpp) and its per-ISA
// kernels (quant_avx2.cpp, quant_avx512.cpp via quant_simd.h, and the portable one in quant.cpp).
// No torch headers here.
//
// Packed layout: the GGUF blocks of 32 weights along K, regrouped per output row so that the
// scales of a row are contiguous (one vector load converts 8 of them):
//   Q4_0: d[KB] fp16 | qs[KB][16]              w = d * (q - 8),  q in 0..15
//   Q4_1: d[KB] fp16 | m[KB] fp16 | qs[KB][16]  w = d * q + m
//   Q8_0: d[KB] fp16 | qs[KB][32] int8          w = d * q
// with KB = K / 32, one row after the other (row n at n * row_bytes). The quants keep GGUF's
// order: byte j of a 4-bit block holds weight j (low nibble) and weight j + 16 (high nibble).
// The row sizes equal GGUF's (18, 20, 34 bytes per block): only the scales move.
//
// Activations (default, `int16`): quant_linear first rounds x per 32-block to int16
// (sx = max|x| / 32767, xq = round(x / sx): relative error <= 2^-16 of the block's largest value,
// 128x finer than bf16), and every kernel multiplies the same rounded values x' = sx * xq: the
// decode kernels exactly in integers (madd, one fp32 scale d * sx per block), the prefill and
// portable kernels in fp32 on x'. So decode and prefill of one token differ only in fp32
// summation order, as with fp32 activations. The Q4 offsets use the block sums of x'
// (sx * sum(xq)). With `fp32` activations (set_quant_activations) x is used as given and the
// offsets use its exact block sums. (int8 activations, as llama.cpp's q8 dot products, moved
// the default model's logits by up to 0.76 against the dequantised fp32 model; int16 by 1.6e-2.)
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace radixserve::quant {

constexpr int64_t kQK = 32;      // weights per block
constexpr int64_t kTileN = 32;   // output columns per prefill tile
constexpr int64_t kScaleVec = 8; // blocks whose scales are converted together

enum QType : int32_t { kQ4_0 = 0, kQ4_1 = 1, kQ8_0 = 2 };

inline int64_t qs_bytes(QType t) { return t == kQ8_0 ? 32 : 16; }
inline int64_t scale_bytes(QType t) { return t == kQ4_1 ? 4 : 2; }
inline int64_t row_bytes(QType t, int64_t kb) { return kb * (scale_bytes(t) + qs_bytes(t)); }
// Offset of qs[0] in a row.
inline int64_t qs_offset(QType t, int64_t kb) { return kb * scale_bytes(t); }

struct QuantProblem {
  const float* x = nullptr;  // [M, K] fp32 activations (x' in int16 mode), row stride ldx
  int64_t ldx = 0;
  const int16_t* xq = nullptr;  // [M, K] int16 activations (integer decode), or null
  const float* xscale = nullptr;  // [M, ldxs] their per-block scales sx (zero past KB)
  // [M, ldxs] per-block sums of x (of x' in int16 mode; zero past KB), for the Q4 offset term.
  const float* xsum = nullptr;
  int64_t ldxs = 0;
  const uint8_t* w = nullptr;  // packed rows (layout above)
  QType type = kQ4_0;
  int64_t row_bytes = 0;
  const float* bias = nullptr;  // [N] or null
  float* out = nullptr;         // [M, N] fp32
  int64_t M = 0, N = 0, K = 0, KB = 0;
};

// Decode: output columns [n0, n1) for all M rows; each weight row is read once and dequantised
// in registers (sum_b d_b * dot(q_b, x_b) + m_b * sum(x_b)); integer dots when xq is set.
using QuantGemvFn = void (*)(const QuantProblem&, int64_t n0, int64_t n1);
// Prefill: output columns [n0, n0 + 32) (clipped to N), rows [m0, m1): the 32 weight rows are
// dequantised to an fp32 [K][32] tile once, then multiplied like the fp32 gemm.
using QuantGemmFn = void (*)(const QuantProblem&, int64_t n0, int64_t m0, int64_t m1);

// Rounds one activation row of kb blocks to int16 (the rule above): xq[kb * 32], and per block
// its scale sx (xscale[b]) and the sum of x' = sx * xq (xsum[b]). Every ISA build gives the same
// bits (same fp32 operations in the same order, no FMA contraction).
using QuantizeRowFn = void (*)(const float* x, int64_t kb, int16_t* xq, float* xscale,
                               float* xsum);

void quantize_row_generic(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum);
void quantize_row_avx2(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum);
void quantize_row_avx512(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum);
void quant_gemv_generic(const QuantProblem& p, int64_t n0, int64_t n1);
void quant_gemm_generic(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1);
void quant_gemv_avx2(const QuantProblem& p, int64_t n0, int64_t n1);
void quant_gemm_avx2(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1);
void quant_gemv_avx512(const QuantProblem& p, int64_t n0, int64_t n1);
void quant_gemm_avx512(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1);

// Internal linkage on purpose (see gemm_kernels.h): the ISA sources compile these differently.
namespace detail {
namespace {

// IEEE half -> float, exact for every value (subnormals, inf, NaN).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    const float f = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Scale d and offset m of block b of a packed row (m already includes Q4_0's -8 d).
inline void block_scales(QType t, const uint8_t* row, int64_t kb, int64_t b, float* d,
                         float* m) {
  *d = f16_to_f32(load_u16(row + 2 * b));
  if (t == kQ4_1)
    *m = f16_to_f32(load_u16(row + 2 * kb + 2 * b));
  else
    *m = t == kQ4_0 ? -8.f * *d : 0.f;
}

// The 32 weights of block b, computed as GGUF's dequantize does (plain scalar code).
inline void dequant_block(QType t, const uint8_t* row, int64_t kb, int64_t b, float* out) {
  float d, m;
  block_scales(t, row, kb, b, &d, &m);
  const uint8_t* qs = row + qs_offset(t, kb) + b * qs_bytes(t);
  if (t == kQ8_0) {
    for (int i = 0; i < kQK; ++i) out[i] = d * static_cast<float>(static_cast<int8_t>(qs[i]));
  } else if (t == kQ4_0) {  // d * (q - 8) as GGUF computes it
    for (int j = 0; j < kQK / 2; ++j) {
      out[j] = d * static_cast<float>((qs[j] & 0xf) - 8);
      out[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  } else {
    for (int j = 0; j < kQK / 2; ++j) {
      out[j] = d * static_cast<float>(qs[j] & 0xf) + m;
      out[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

}  // namespace
}  // namespace detail
}  // namespace radixserve::quant
