// Rotary position embedding, in place on q and k (docs/internals.md). Neox style rotates the two
// halves of the rotary dims, GPT-J style rotates adjacent pairs. Row kernels are built portable
// (rope.cpp), AVX2 and AVX-512 (rope_avx2.cpp, rope_avx512.cpp from rope_simd.h).
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

// Rotates the first 2*half dims of each of `heads` heads (head_size apart) of one token.
// cos and sin hold `half` values each.
struct RopeKernels {
  void (*f32)(float* x, int64_t heads, int64_t head_size, const float* cos, const float* sin,
                   int64_t half);
  void (*bf16)(uint16_t* x, int64_t heads, int64_t head_size, const float* cos,
                    const float* sin, int64_t half);
};

RopeKernels rope_kernels_avx2();
RopeKernels rope_kernels_avx512();

void rotary_embedding(const at::Tensor& positions, const at::Tensor& query, const at::Tensor& key,
                      int64_t head_size, const at::Tensor& cos_sin_cache, bool is_neox);

}  // namespace radixserve::cpu
