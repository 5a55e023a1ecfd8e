// The avx512 build of the activation row kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#define RS_SIMD_AVX512
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/activation_simd.h"

namespace radixserve::cpu {

ActivationKernels activation_kernels_avx512() { return simd_activation_kernels(); }

}  // namespace radixserve::cpu
