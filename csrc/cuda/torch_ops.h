// Torch-facing CUDA ops, bound in csrc/bindings.cpp as `<name>_cuda` (only in builds with CUDA).
// Each checks devices, dtypes and shapes (ValueError on bad input), then calls a raw-pointer
// launcher of csrc/cuda/*.cuh on the current CUDA stream. Signatures follow the CPU ops in
// docs/internals.md. Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace radixserve::cuda {

// The head dims the attention ops accept (others: use another attention backend).
std::vector<int64_t> attention_head_dims();

void store_kv(const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& loc,
              const at::Tensor& k, const at::Tensor& v);
void decode_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      double scale, int64_t sliding_window);
// cascade_decode_attention of csrc/cpu/cascade_attention.h on CUDA tensors. Group ids, prefix
// lengths and slots are trusted on the device (the CPU op checks them; that needs the values).
void cascade_decode_attention(const at::Tensor& out, const at::Tensor& q,
                              const at::Tensor& k_cache, const at::Tensor& v_cache,
                              const at::Tensor& req_to_token, const at::Tensor& req_pool_indices,
                              const at::Tensor& seq_lens, const at::Tensor& group_ids,
                              const at::Tensor& group_prefix_lens, double scale,
                              int64_t sliding_window);
void extend_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k_cache,
                      const at::Tensor& v_cache, const at::Tensor& req_to_token,
                      const at::Tensor& req_pool_indices, const at::Tensor& seq_lens,
                      const at::Tensor& extend_seq_lens, const at::Tensor& extend_start_loc,
                      double scale, int64_t sliding_window);

void rms_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& weight, double eps);
void fused_add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps);
void rotary_embedding(const at::Tensor& positions, const at::Tensor& query,
                      const at::Tensor& key, int64_t head_size, const at::Tensor& cos_sin_cache,
                      bool is_neox);
void silu_and_mul(const at::Tensor& out, const at::Tensor& x);

// Encoder ops (torch_encoder_ops.cu), as radixserve::cpu's in csrc/cpu/encoder_ops.h;
// encoder_attention also takes float16/bfloat16 and head_dim <= 256. residual may be undefined.
void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps);
void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx);
void encoder_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& cu_seqlens, double scale);

// logits float32 [bs, vocab] -> int64 [bs], the first argmax of each row.
at::Tensor greedy_sample(const at::Tensor& logits);
// As radixserve::cpu::sample: [next_token_ids] or, when top_logprobs >= 0, also
// [logprobs [bs], top_vals [bs, top_logprobs], top_ids [bs, top_logprobs]].
std::vector<at::Tensor> sample(const at::Tensor& logits, const at::Tensor& temperatures,
                               const at::Tensor& top_ps, const at::Tensor& top_ks,
                               const at::Tensor& min_ps, const at::Tensor& seeds,
                               const at::Tensor& steps,
                               const std::optional<at::Tensor>& frequency_penalties,
                               const std::optional<at::Tensor>& presence_penalties,
                               const std::optional<at::Tensor>& repetition_penalties,
                               const std::optional<at::Tensor>& output_token_counts,
                               const std::optional<at::Tensor>& logit_bias, int64_t top_logprobs,
                               const std::optional<at::Tensor>& token_bitmask);
// In place: logits[r, t] = -inf where the packed int32 token_bitmask[r] clears bit t.
void apply_token_bitmask_(const at::Tensor& logits, const at::Tensor& token_bitmask);

}  // namespace radixserve::cuda
