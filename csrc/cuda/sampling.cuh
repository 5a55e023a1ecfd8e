// Sampling launchers: greedy argmax and temperature / top-k / top-p / min-p sampling with
// penalties and logit bias, the same definition as the CPU sampler (csrc/cpu/sampling.cpp) and
// its uniform u = splitmix64(splitmix64(seed) ^ step) >> 11, / 2^53 per row.
// Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// Row r of a batch of float32 logits [batch, vocab]. Nullable pointers are optional features.
struct SamplingArgs {
  const float* logits = nullptr;
  int64_t batch = 0;
  int64_t vocab = 0;
  const float* temperatures = nullptr;  // [batch]; 0 is greedy
  const float* top_ps = nullptr;        // [batch] in (0, 1]
  const int32_t* top_ks = nullptr;      // [batch] >= 1 (clamped to vocab)
  const float* min_ps = nullptr;        // [batch] in [0, 1]
  const int64_t* seeds = nullptr;       // [batch]
  const int64_t* steps = nullptr;       // [batch]
  const float* frequency_penalties = nullptr;   // [batch] or null
  const float* presence_penalties = nullptr;    // [batch] or null
  const float* repetition_penalties = nullptr;  // [batch] or null
  const int32_t* output_token_counts = nullptr;  // [batch, vocab]; needed by any penalty
  const float* logit_bias = nullptr;             // [batch, vocab] or null
  // [batch, ceil(vocab / 32)] or null: packed grammar masks, bit t % 32 of word t / 32 set where
  // token t is allowed; a cleared token's logit becomes -inf after the penalties and the bias.
  const int32_t* token_bitmask = nullptr;
  // [batch, vocab]: the penalised, biased, masked logits (needed with counts, bias or bitmask)
  float* workspace = nullptr;
  int64_t* next_token_ids = nullptr;  // [batch] out
};

// next_token_ids[r] = first index of the maximum of logits[r] (NaN ignored).
cudaError_t launch_greedy_sample(const float* logits, int64_t batch, int64_t vocab,
                                 int64_t* next_token_ids, cudaStream_t stream);

cudaError_t launch_sample(const SamplingArgs& args, cudaStream_t stream);

// In place: logits[r, t] = -inf where token_bitmask[r] ([batch, ceil(vocab / 32)]) clears t.
cudaError_t launch_apply_token_bitmask(float* logits, const int32_t* token_bitmask, int64_t batch,
                                       int64_t vocab, cudaStream_t stream);

}  // namespace radixserve::cuda
