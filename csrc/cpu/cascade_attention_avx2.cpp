// The avx2 build of the cascade kernels; callers check the CPU first (cpu_features.h).
#include <cmath>
#include <cstdint>

#pragma GCC target("avx2,fma")
#define RS_SIMD_AVX2
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/cascade_attention_simd.h"

namespace radixserve::cpu {

CascadeKernels cascade_kernels_avx2() {
  return {&prefix_simd<float, float>, &prefix_simd<uint16_t, uint16_t>,
          &prefix_simd<float, uint16_t>, nullptr,
          &suffix_simd<uint16_t, uint16_t>, &suffix_simd<float, uint16_t>, kLanes};
}

}  // namespace radixserve::cpu
