// Paged attention launchers over the token KV pool (raw pointers, contiguous tensors).
// Semantics are those of the CPU kernels in docs/internals.md. Tested on an H200
// by tests/kernels/test_cuda_kernels.py (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// k_cache[loc[t]] = k[t], v_cache[loc[t]] = v[t]; caches [num_slots, row_elems], k/v
// [num_tokens, row_elems] with row_elems = num_kv_heads * head_dim. Slots are not range-checked
// on the device.
cudaError_t launch_store_kv(DType dtype, void* k_cache, void* v_cache, const int64_t* loc,
                            const void* k, const void* v, int64_t num_tokens, int64_t row_elems,
                            cudaStream_t stream);

// The tensors of one attention call. Query and output are [num_tokens, num_q_heads, head_dim];
// caches [num_slots, num_kv_heads, head_dim]; all of one dtype. Request b reads its keys through
// req_to_token[req_pool_indices[b] * max_context + pos]; the slot values and index tensors live
// on the device and are trusted (checking them would need a host sync).
struct AttentionArgs {
  void* out = nullptr;
  const void* q = nullptr;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const int32_t* req_to_token = nullptr;
  int64_t max_context = 0;
  const int64_t* req_pool_indices = nullptr;
  const int64_t* seq_lens = nullptr;
  // Extend only (null for decode, where request b has one query, row b, at seq_len - 1).
  const int64_t* extend_seq_lens = nullptr;
  const int64_t* extend_start_loc = nullptr;
  int64_t batch = 0;
  int64_t num_tokens = 0;  // rows of q (for extend: an upper bound of every extend length)
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // one of 32, 64, 96, 128, 256 (see is_supported_head_dim)
  float scale = 1.0f;
  int sliding_window = -1;  // keys at positions > pos - window are visible when positive
  // Decode only: split each request's keys into num_splits ranges run by separate blocks
  // (flash-decoding), when batch x kv heads alone would leave most SMs idle. The partial
  // results go to partial_acc [B, Hq, num_splits, head_dim] and partial_ml [B, Hq, num_splits,
  // 2] (running max, sum) and a second kernel combines them.
  int num_splits = 1;
  float* partial_acc = nullptr;
  float* partial_ml = nullptr;
  // Decode with partial results only (launch_decode_partials): slots per (query, head) in the
  // partial buffers, >= num_splits (split s writes slot s; the cascade prefix pass fills the
  // others); 0 means num_splits.
  int partial_stride = 0;
  // Decode only: request b attends the keys from key_begin[b] on (null: from 0). The cascade
  // suffix pass starts after the shared prefix that its prefix pass attends.
  const int64_t* key_begin = nullptr;
};

// A split count for decode: enough blocks for about two per SM, at most 16 splits, and no split
// shorter than 256 keys of the longest possible context.
int choose_decode_splits(int64_t batch, int num_kv_heads, int group, int64_t max_context,
                         int sm_count);

// The head dims the attention kernels are instantiated for.
constexpr int kAttentionHeadDims[] = {32, 64, 96, 128, 256};

inline bool is_supported_head_dim(int head_dim) {
  for (int d : kAttentionHeadDims) {
    if (d == head_dim) return true;
  }
  return false;
}

cudaError_t launch_decode_attention(DType dtype, const AttentionArgs& args, cudaStream_t stream);

// The split decode pass alone: unnormalised partial states (max, sum, acc) of split s into slot
// s of partial_ml / partial_acc (partial_stride slots per query head, both pointers required).
cudaError_t launch_decode_partials(DType dtype, const AttentionArgs& args, cudaStream_t stream);

// out[row] = merge of the num_parts partial states of each of `rows` query heads: sum_s w_s
// acc_s / sum_s w_s l_s, w_s = exp(m_s - max m); a state with m = -inf (no key) weighs 0.
cudaError_t launch_combine_partials(DType dtype, void* out, const float* partial_acc,
                                    const float* partial_ml, int64_t rows, int num_parts,
                                    int head_dim, cudaStream_t stream);
cudaError_t launch_extend_attention(DType dtype, const AttentionArgs& args, cudaStream_t stream);

}  // namespace radixserve::cuda
