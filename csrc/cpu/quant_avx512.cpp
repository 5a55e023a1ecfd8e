// AVX-512 build of the quantized linear kernels: the code of quant_simd.h compiled with the
// AVX-512 flags (CMakeLists.txt). Only called after cpu_features reports AVX-512. The machines
// this project is developed on have no AVX-512: the AVX2 build of the same source is the tested one.
#include <new>

#include "cpu/quant_simd.h"

namespace radixserve::quant {

void quantize_row_avx512(const float* x, int64_t kb, int16_t* xq, float* xscale, float* xsum) {
  quantize_row(x, kb, xq, xscale, xsum);
}

void quant_gemv_avx512(const QuantProblem& p, int64_t n0, int64_t n1) { gemv(p, n0, n1); }

void quant_gemm_avx512(const QuantProblem& p, int64_t n0, int64_t m0, int64_t m1) {
  gemm_tile(p, n0, m0, m1);
}

}  // namespace radixserve::quant
