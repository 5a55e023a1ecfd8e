// Rotary embedding launcher (raw pointers). Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// In place on query [T, num_q_heads*head_size] and key [T, num_kv_heads*head_size] whose token
// rows start q_stride / k_stride elements apart (views of a fused qkv tensor work); key may be
// null when num_kv_heads is 0. cos_sin_cache is float32 [max_pos, rot_dim]: cos[rot_dim/2] then
// sin[rot_dim/2] per position. Only the first rot_dim dims of each head rotate. is_neox rotates
// the two halves (i, i + rot_dim/2); otherwise adjacent pairs (2i, 2i+1) rotate (GPT-J style).
// Positions must lie in [0, max_pos): they are read on the device and not checked there.
cudaError_t launch_rotary_embedding(DType dtype, const int64_t* positions, void* query,
                                    int64_t q_stride, void* key, int64_t k_stride,
                                    int64_t num_tokens, int num_q_heads, int num_kv_heads,
                                    int head_size, const float* cos_sin_cache, int rot_dim,
                                    bool is_neox, cudaStream_t stream);

}  // namespace radixserve::cuda
