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

// Seed salt of the accept test of speculative verification (engine/speculative/rejection.py
// ACCEPT_SALT): the test at step s uses the uniform of (seed ^ kAcceptSalt, s).
constexpr uint64_t kAcceptSalt = 0x5DEECE66D2545F49ULL;

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

// Speculative verification of point-mass (n-gram) drafts, every position of every request in
// one call. Request i owns 1 + num_drafts[i] consecutive logits rows (the target logits after
// its last token and after each of its drafts) and one row of every parameter (the
// per-request values sample() takes; steps[i] = the request's step at its first row, and row
// j draws with step steps[i] + j). Row j's distribution p is the sampler's (steps 1-3 of
// sampling.cpp), with drafts 0..j-1 counted as generated for the penalties. Draft j is
// accepted when uniform(seed ^ kAcceptSalt, step + j) < p(draft) (greedy rows: when it is the
// argmax); the first rejected position draws from p without the draft, renormalised (the
// residual max(0, p - q) of a point mass q), with the sampler's uniform of (seed, step + j);
// when every draft is accepted, the next token is the sampler's own draw at the last row.
// Returns [accepted int64 [n], next_token int64 [n]].
std::vector<at::Tensor> verify_drafts(const at::Tensor& logits, const at::Tensor& temperatures,
                                      const at::Tensor& top_ps, const at::Tensor& top_ks,
                                      const at::Tensor& min_ps, const at::Tensor& seeds,
                                      const at::Tensor& steps, const at::Tensor& draft_ids,
                                      const at::Tensor& num_drafts,
                                      const std::optional<at::Tensor>& frequency_penalties,
                                      const std::optional<at::Tensor>& presence_penalties,
                                      const std::optional<at::Tensor>& repetition_penalties,
                                      const std::optional<at::Tensor>& output_token_counts,
                                      const std::optional<at::Tensor>& logit_bias);

// logits[r, t] = -inf (in place) where token_bitmask[r] clears token t: the sampler's masking
// step on its own (same row kernels, same ISA choice).
void apply_token_bitmask_(const at::Tensor& logits, const at::Tensor& token_bitmask);

// The uniforms of a batch (float64 [bs]) - the same numbers sample() draws with.
at::Tensor sampling_uniforms(const at::Tensor& seeds, const at::Tensor& steps);

// Choose the row primitives: "auto" (the best this CPU has), "avx512", "avx2" or "generic";
// tests compare every path against the reference. Returns the ISA now in use.
std::string sampling_set_isa(const std::string& name);

}  // namespace radixserve::cpu
