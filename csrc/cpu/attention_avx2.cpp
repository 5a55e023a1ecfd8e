// The avx2 build of the attend and extend kernels; callers check the CPU
// first (cpu_features.h).
#include <cmath>
#include <cstdint>

#pragma GCC target("avx2,fma")
#define RS_SIMD_AVX2
#include "cpu/simd.h"
// simd.h must come first.
#include "cpu/attention_simd.h"
#include "cpu/attention_extend_simd.h"

namespace radixserve::cpu {

AttendKernels attend_kernels_avx2() {
  return {&attend_simd<float, float>, &attend_simd<uint16_t, uint16_t>,
          &attend_simd<float, uint16_t>, kLanes};
}

ExtendKernels extend_kernels_avx2() {
  return {&extend_simd<float, float>, &extend_simd<uint16_t, uint16_t>,
          &extend_simd<float, uint16_t>, kLanes};
}

}  // namespace radixserve::cpu
