// The avx2 build of the encoder row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#pragma GCC target("avx2,fma")
#define RS_SIMD_AVX2
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/encoder_ops_simd.h"

namespace radixserve::cpu {

EncoderKernels encoder_kernels_avx2() { return simd_encoder_kernels(); }

}  // namespace radixserve::cpu
