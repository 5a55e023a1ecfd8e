// Raw-pointer interface between the torch-facing linear op (gemm.cpp) and its per-ISA kernels
// (gemm_avx2.cpp, gemm_avx512.cpp, and the portable one in gemm.cpp). No torch headers here.
//
// Packed weight layout: output rows are grouped in blocks of kBlockN = 32 (zero-padded past N).
// Block b is one contiguous stream, read front to back by the kernels:
//   fp32: [K][32]           element (k, c)      = W[32b + c][k]
//   bf16: [Kp/2][32][2]     element (p, c, e)   = W[32b + c][2p + e], Kp = K rounded up to even
// so each step along K reads whole 64-byte cache lines, and a bf16 K pair of one column is one
// 32-bit lane (what _mm512_dpbf16_ps consumes; AVX2 splits it with a shift and a mask).
#pragma once

#include <cstdint>
#include <cstring>

namespace radixserve::gemm {

constexpr int64_t kBlockN = 32;

struct GemmProblem {
  const float* xf = nullptr;     // [M, ldx] fp32 activations (zero-padded to Kp), or null
  const uint16_t* xb = nullptr;  // [M, ldx] bf16 activations (zero-padded to Kp), or null
  int64_t ldx = 0;
  const void* w = nullptr;  // packed blocks (layout above)
  bool w_bf16 = false;
  const float* bias = nullptr;  // [N] or null
  void* out = nullptr;          // [M, N] fp32 or bf16
  bool out_bf16 = false;
  int64_t M = 0, N = 0, K = 0, Kp = 0;
};

// Computes rows [m0, m1) of output block nb (columns 32*nb .. 32*nb+31, clipped to N).
using GemmBlockFn = void (*)(const GemmProblem&, int64_t nb, int64_t m0, int64_t m1);

void gemm_block_generic(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1);
void gemm_block_avx2(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1);
void gemm_block_avx512(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1);
// Needs AVX512-BF16 and p.xb (bf16 activations) with bf16 weights.
void gemm_block_avx512bf16(const GemmProblem& p, int64_t nb, int64_t m0, int64_t m1);

// Internal linkage on purpose: the ISA sources compile these with different target flags, and
// one shared (COMDAT) copy built with AVX-512 could be picked for every caller.
namespace detail {
namespace {

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch does; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Writes a tile acc[rows][32] (fp32 sums) to output rows m0.. of block nb, adding the bias and
// dropping the padded columns past N.
inline void store_tile(const GemmProblem& p, const float* acc, int64_t rows, int64_t nb,
                       int64_t m0) {
  const int64_t n0 = nb * kBlockN;
  const int64_t cols = p.N - n0 < kBlockN ? p.N - n0 : kBlockN;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = acc + r * kBlockN;
    if (p.out_bf16) {
      uint16_t* o = static_cast<uint16_t*>(p.out) + (m0 + r) * p.N + n0;
      for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_bf16(a[c] + (p.bias ? p.bias[n0 + c] : 0.f));
    } else {
      float* o = static_cast<float*>(p.out) + (m0 + r) * p.N + n0;
      for (int64_t c = 0; c < cols; ++c) o[c] = a[c] + (p.bias ? p.bias[n0 + c] : 0.f);
    }
  }
}

}  // namespace
}  // namespace detail
}  // namespace radixserve::gemm
