// Raw-pointer interface between the torch-facing int16 linear op (gemm_int16.cpp) and its
// per-ISA kernels (gemm_int16_avx2.cpp, gemm_int16_avx512.cpp, and the portable ones in
// gemm_int16.cpp). No torch headers here.
//
// Numbers: weights are rounded once at load per output channel, activations per row on every
// call, both to symmetric integers of `bits` bits (q = round_half_even(v * (Q / max|v|)),
// Q = 2^(bits-1) - 1, scale = max|v| / Q). The products are summed exactly in int32 over K
// blocks of `kblock` elements, chosen so that kblock * Qw * Qx < 2^31 (no overflow whatever the
// values), each block sum is converted to fp32 and added; the epilogue applies xscale * wscale
// and the bias. Every ISA build rounds the same way, so all give the same integers; only the
// fp32 addition order of the block sums can differ (not at all when K fits one block).
//
// Packed weight layout: output channels in blocks of kBlockN = 32 (zero-padded past N), each
// block one contiguous stream [Kp/2][32][2] int16: element (p, c, e) = Wq[32b + c][2p + e],
// Kp = K rounded up to even. One 32-bit lane holds a K pair of one channel, which is what
// vpmaddwd / vpdpwssd multiply against a broadcast K pair of one activation row.
#pragma once

#include <cmath>
#include <cstdint>

namespace radixserve::gemm_i16 {

constexpr int64_t kBlockN = 32;
// At most this many rows per call take the kernels' small-M order (K chunk outer, row groups
// inner, the next chunk prefetched): a short request's product is bound by reading the weights
// rather than by the multiply-adds. Measured on one AVX2 core over six MiniLM layers' weights:
// -30% at 9 rows, -5..8% at 24-64, no difference at 96 and 1024.
constexpr int64_t kSmallRows = 64;

struct Int16Problem {
  const int16_t* xq = nullptr;    // [M, ldx] rounded activations (zero from K to Kp)
  const float* xscale = nullptr;  // [M] their per-row scales
  int64_t ldx = 0;
  const int16_t* w = nullptr;     // packed blocks (layout above)
  const float* wscale = nullptr;  // [N] per-channel weight scales
  const float* bias = nullptr;    // [N] or null
  float* out = nullptr;           // [M, N] fp32
  int64_t M = 0, N = 0, Kp = 0;
  int64_t kblock = 0;  // even; int32 sums of this many products cannot overflow
};

// Computes rows [m0, m1) of output block nb (channels 32*nb .. 32*nb+31, clipped to N).
using Int16BlockFn = void (*)(const Int16Problem&, int64_t nb, int64_t m0, int64_t m1);
// Rounds one row x[0..k) to xq[0..kp) (zero past k) with qmax = Q; returns the row's scale.
using QuantizeRowFn = float (*)(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq);

void int16_block_generic(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1);
void int16_block_avx2(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1);
void int16_block_avx512(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1);
// AVX512-VNNI (vpdpwssd: multiply, pair-add and accumulate in one instruction).
void int16_block_avx512vnni(const Int16Problem& p, int64_t nb, int64_t m0, int64_t m1);
float quantize_row_generic(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq);
float quantize_row_avx2(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq);
float quantize_row_avx512(const float* x, int64_t k, int64_t kp, float qmax, int16_t* xq);

// Internal linkage on purpose (see gemm_kernels.h): the ISA sources compile these differently.
namespace detail {
namespace {

// The per-row (or per-channel) rule, shared by every build: scale and reciprocal of max|x|.
// A zero (or non-finite) row rounds to zeros with scale 0.
inline float row_scale(float amax, float qmax, float* inv) {
  const bool ok = amax > 0.f && std::isfinite(amax);
  *inv = ok ? qmax / amax : 0.f;
  return ok ? amax / qmax : 0.f;
}

// Rounds x[i..k) to int16 (half to even, as cvtps in the vector builds; clamped to +-qmax) and
// zero-pads xq[k..kp): the scalar part of every build's quantize_row.
inline void round_tail(const float* x, int64_t i, int64_t k, int64_t kp, float inv, float qmax,
                       int16_t* xq) {
  for (; i < k; ++i) {
    float q = std::nearbyint(x[i] * inv);
    q = q > qmax ? qmax : (q < -qmax ? -qmax : q);
    xq[i] = static_cast<int16_t>(q);
  }
  for (; i < kp; ++i) xq[i] = 0;
}

// Writes acc[rows][32] (fp32 sums of integer products) to output rows m0.. of block nb:
// out = acc * xscale[m] * wscale[n] + bias[n], dropping the padded channels past N.
inline void store_tile(const Int16Problem& p, const float* acc, int64_t rows, int64_t nb,
                       int64_t m0) {
  const int64_t n0 = nb * kBlockN;
  const int64_t cols = p.N - n0 < kBlockN ? p.N - n0 : kBlockN;
  for (int64_t r = 0; r < rows; ++r) {
    const float sx = p.xscale[m0 + r];
    const float* a = acc + r * kBlockN;
    float* o = p.out + (m0 + r) * p.N + n0;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = a[c] * (sx * p.wscale[n0 + c]);
      o[c] = p.bias ? v + p.bias[n0 + c] : v;
    }
  }
}

}  // namespace
}  // namespace detail
}  // namespace radixserve::gemm_i16
