// Scalar float32 <-> bfloat16 (carried as uint16_t) conversions shared by the portable and the
// vectorised kernels. Internal linkage on purpose: see simd.h.
#pragma once

#include <cmath>
#include <cstdint>

namespace {

// Round to nearest even, as torch does.
inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  if (__builtin_isnan(f)) return 0x7FC0;
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t x) { return bf16_to_f32(x); }
inline void store_f32(float* p, float x) { *p = x; }
inline void store_f32(uint16_t* p, float x) { *p = f32_to_bf16(x); }

}  // namespace
