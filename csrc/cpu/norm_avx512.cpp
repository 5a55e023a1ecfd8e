// The avx512 build of the norm row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#define RS_SIMD_AVX512
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/norm_simd.h"

namespace radixserve::cpu {

NormKernels norm_kernels_avx512() { return simd_norm_kernels(); }

}  // namespace radixserve::cpu
