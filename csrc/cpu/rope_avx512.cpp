// The avx512 build of the rope row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#define RS_SIMD_AVX512
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/rope_simd.h"

namespace radixserve::cpu {

RopeKernels rope_kernels_avx512() { return simd_rope_kernels(); }

}  // namespace radixserve::cpu
