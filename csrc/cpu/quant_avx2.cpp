// AVX2 + FMA (+ F16C, present on every AVX2 CPU) build of the quantized linear kernels
// (quant_simd.h). Compiled through a target pragma; only called when cpu_features reports AVX2.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include <new>

#include "cpu/quant_simd.h"

namespace radixserve::quant {

void quantize_row_avx2(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum) {
  quantize_row(x, kb, xq, xscale, xsum);
}

void quant_gemv_avx2(const QuantProblem& p, int64_t n0, int64_t n1) { gemv(p, n0, n1); }

void quant_gemm_avx2(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1) {
  gemm_tile(p, n0, m0, m1);
}

}  // namespace radixserve::quant

#pragma GCC pop_options
