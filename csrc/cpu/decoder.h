// The decode step of a Llama-family decoder stack in one native call: for every layer,
// fused add + RMSNorm, qkv projection, rope, KV store, decode attention, o projection, fused
// add + RMSNorm, gate_up projection, SiLU-and-mul, down projection. It calls the same
// torch-facing kernels, in the same order and on the same values, as the per-op Python layers
// (models/llama.py), so its hidden states equal theirs; what it saves is the Python dispatch
// and small-tensor bookkeeping of ~30 ops per layer (a third of a 1-user step of the default
// model measured at the Python level).
#pragma once

#include <torch/extension.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/split_call.h"

namespace radixserve::cpu {

// One projection: a packed weight of pack_quant_weight (quant) or pack_linear_weight.
struct PackedLinear {
  torch::Tensor packed;
  bool quant = false;
  std::optional<torch::Tensor> bias;

  torch::Tensor operator()(const torch::Tensor& x) const;
  SplitCall prepare(const torch::Tensor& x) const;
};

class StepRunner;  // decoder.cpp

struct DecoderLayerWeights {
  torch::Tensor input_norm, post_attention_norm;  // RMSNorm weights [H]
  PackedLinear qkv, o, gate_up, down;
  int64_t sliding_window = -1;
};

class DecoderStack {
 public:
  DecoderStack(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, double rms_eps,
               torch::Tensor cos_sin_cache, bool is_neox);

  // Appends a layer (layers run in the order added).
  void add_layer(torch::Tensor input_norm, torch::Tensor post_attention_norm,
                 torch::Tensor qkv, bool qkv_quant, std::optional<torch::Tensor> qkv_bias,
                 torch::Tensor o, bool o_quant, torch::Tensor gate_up, bool gate_up_quant,
                 torch::Tensor down, bool down_quant, int64_t sliding_window);

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // Layers [layer_begin, layer_end) (layer_end -1: to the last) of a decode step, one token
  // per request -> (h, residual) after them, as the per-op loop returns them (the final norm
  // is the caller's). From layer 0, h is the token embeddings and residual is none; from a
  // later layer, both are what the range before it returned (a step run in pieces, so that
  // the scheduler can pause a background step between them). k_caches[i] / v_caches[i] are
  // the pools of the range's i-th layer; the other arguments as in store_kv / decode_attention.
  std::tuple<torch::Tensor, torch::Tensor> decode(
      torch::Tensor h, const torch::Tensor& positions, const std::vector<torch::Tensor>& k_caches,
      const std::vector<torch::Tensor>& v_caches, const torch::Tensor& out_cache_loc,
      const torch::Tensor& req_to_token, const torch::Tensor& req_pool_indices,
      const torch::Tensor& seq_lens, std::optional<torch::Tensor> residual, int64_t layer_begin,
      int64_t layer_end) const;

 private:
  // The layer loop of decode(), on every thread of its region (or without one).
  void run_layers(StepRunner& step, torch::Tensor& h, torch::Tensor& residual,
                  const torch::Tensor& positions, const std::vector<torch::Tensor>& k_caches,
                  const std::vector<torch::Tensor>& v_caches, const torch::Tensor& out_cache_loc,
                  const torch::Tensor& req_to_token, const torch::Tensor& req_pool_indices,
                  const torch::Tensor& seq_lens, int64_t layer_begin, int64_t layer_end) const;

  int64_t num_heads_, num_kv_heads_, head_dim_;
  double eps_, scale_;
  torch::Tensor cos_sin_cache_;
  bool is_neox_;
  std::vector<DecoderLayerWeights> layers_;
};

// How DecoderStack.decode uses the OpenMP threads (process-wide): "step" (the default) opens
// one parallel region for the whole call; one thread runs the serial ops (norms, rope, KV
// store, SiLU, the projections' activation rounding) and every thread takes its share of each
// projection's and attention's work items, with a barrier between ops. "per_call" lets each
// kernel open its own region, as the per-op Python path does (the reference). Same items, same
// arithmetic: the outputs are bit-identical; "step" saves libgomp's start and join of the
// thread team, ~5 times per layer.
void set_decoder_threading(const std::string& mode);
std::string decoder_threading();

// One projection run `calls` times as DecoderStack.decode runs its projections (for the
// "as served" figures of benchmarks/kernels/bench_linear.py): with "step" threading and more
// than one thread, all calls inside ONE OpenMP region, each prepared on thread 0 and split over
// every thread with a barrier after it; otherwise each call opens its own region. Call i uses
// weights[i % size] (copies, so that the weights come from DRAM as in a real step). Returns the
// last call's output.
torch::Tensor run_projection_calls(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                                   bool quant, int64_t calls);

}  // namespace radixserve::cpu
