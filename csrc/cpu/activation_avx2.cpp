// The avx2 build of the activation row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#pragma GCC target("avx2,fma")
#define RS_SIMD_AVX2
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/activation_simd.h"

namespace radixserve::cpu {

ActivationKernels activation_kernels_avx2() { return simd_activation_kernels(); }

}  // namespace radixserve::cpu
