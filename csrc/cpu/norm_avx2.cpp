// The avx2 build of the norm row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#pragma GCC target("avx2,fma")
#define RS_SIMD_AVX2
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/norm_simd.h"

namespace radixserve::cpu {

NormKernels norm_kernels_avx2() { return simd_norm_kernels(); }

}  // namespace radixserve::cpu
