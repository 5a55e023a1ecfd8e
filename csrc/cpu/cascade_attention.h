// Cascade (shared-prefix) decode attention on CPU (docs/internals.md).
//
// Requests of a group share the KV slots of their first P positions (e.g. one cached system
// prompt). Instead of reading that prefix once per request, the kernel attends all the group's
// queries (members x query heads of one kv head) to the prefix in one pass over its K/V blocks
// (each block converted to fp32 once and multiplied with every query: a small GEMM per block),
// attends each request to its own suffix [P, seq_len) as decode_attention does, and merges
// the partial softmax states (max, sum, weighted values) exactly. The prefix pass has three
// builds like the attend kernel: AVX-512 and AVX2 (cascade_attention_simd.h) and the portable
// attend kernel itself (every query sees every prefix key, so no mask applies).
#pragma once

#include <cstdint>

#include "cpu/attention.h"

namespace radixserve::cpu {

// The prefix kernel: AttendWork with the promise that every query sees every key in
// [key_begin, key_end) (pos0 and window are ignored). kvbuf must hold 2 * kAttendKeyBlock *
// head_dim floats and qbuf n_q * G * head_dim floats, as for the attend kernel.
struct PrefixKernels {
  void (*f32)(const AttendWork<float>&);
  void (*bf16)(const AttendWork<uint16_t>&);
  void (*f32_bf16kv)(const AttendWork<float, uint16_t>&);
  int lanes;  // head_dim % lanes == 0 is required
};

PrefixKernels cascade_prefix_kernels_avx2();
PrefixKernels cascade_prefix_kernels_avx512();

// out[B,Hq,D] = decode_attention(...) computed with shared prefixes: group_ids int64 [B] names
// each request's group (-1: none, attends alone), group_prefix_lens int64 [num_groups] the
// shared length P of each group (0 <= P <= every member's seq_len). Every member's
// req_to_token row must hold the group's first member's slots in [0, P) (checked: a wrong
// grouping raises ValueError instead of reading another request's KV). With a sliding window
// (> 0) the whole batch falls back to decode_attention.
void cascade_decode_attention(const at::Tensor& out, const at::Tensor& q,
                              const at::Tensor& k_cache, const at::Tensor& v_cache,
                              const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                              const at::Tensor& seq_lens, const at::Tensor& group_ids,
                              const at::Tensor& group_prefix_lens, double scale,
                              int64_t sliding_window);

}  // namespace radixserve::cpu
