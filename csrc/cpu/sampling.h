// The CPU sampler: penalties, logit bias, greedy / temperature + top-k + top-p + min-p sampling
// with a counter-based RNG keyed by (seed, step), and logprobs. Driven by layers/sampler.py;
// the exact definition (which the PyTorch reference `sample_ref` follows) is in sampling.cpp.
#pragma once
#include <torch/extension.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace radixserve::cpu {

// Block size of the two-level inverse-CDF walk (layers/sampler.py uses the same value).
constexpr int64_t kSampleBlock = 512;

// The uniform in [0, 1) of one (seed, step): splitmix64(splitmix64(seed) ^ step) >> 11, / 2^53.
double sampling_uniform(uint64_t seed, uint64_t step);

// Returns [next_token_ids int64 [bs]] or, when top_logprobs >= 0, also
// [logprobs float32 [bs], top_vals float32 [bs, top_logprobs], top_ids int64 [bs, top_logprobs]].
// token_bitmask: int32 [bs, ceil(vocab / 32)], bit t % 32 of word t / 32 set where the row's
// grammar allows token t; rows that allow every token (free requests) are not touched.
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

// logits[r, t] = -inf (in place) where token_bitmask[r] clears token t: the sampler's masking
// step on its own (same row kernels, same ISA choice).
void apply_token_bitmask_(const at::Tensor& logits, const at::Tensor& token_bitmask);

// The uniforms of a batch (float64 [bs]) - the same numbers sample() draws with.
at::Tensor sampling_uniforms(const at::Tensor& seeds, const at::Tensor& steps);

// Choose the row primitives: "auto" (the best this CPU has), "avx512", "avx2" or "generic";
// tests compare every path against the reference. Returns the ISA now in use.
std::string sampling_set_isa(const std::string& name);

}  // namespace radixserve::cpu
