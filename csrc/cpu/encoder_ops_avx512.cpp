// The avx512 build of the encoder row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#define RS_SIMD_AVX512
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/encoder_ops_simd.h"

namespace radixserve::cpu {

EncoderKernels encoder_kernels_avx512() { return simd_encoder_kernels(); }

}  // namespace radixserve::cpu
