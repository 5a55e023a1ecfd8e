// The forward of a BERT-family encoder (embeddings + every layer) in one native call: token,
// position and token-type embeddings, LayerNorm, then per layer the fused qkv projection,
// bidirectional attention, output projection, LayerNorm(+residual), intermediate projection,
// GELU, down projection, LayerNorm(+residual). It calls the same torch-facing kernels
// (int16_linear, encoder_attention, layer_norm, gelu), in the same order and on the same
// values, as the per-op Python modules (models/bert.py), so its hidden states equal theirs bit
// for bit; what it saves is ~15 Python-level ops per layer (dispatch, views, allocations) and
// all but one OpenMP region: the layers' projections and attention run as prepared calls
// (split_call.h) in one region, with a spin-then-sleep barrier between ops (step_runner.h), so a
// short sentence does not wake the other threads ~30 times. `serial` runs every kernel on the
// calling thread instead (benchmarks/results/embeddings.md compares the two).
#pragma once

#include <torch/extension.h>

#include <atomic>
#include <optional>
#include <vector>

#include "cpu/step_runner.h"

namespace radixserve::cpu {


// Rows (whole sequences) a layer runs at a time. Every op of a layer is per row or per sequence,
// so the passes give the same values as one pass over the batch; what they save is memory: a
// 32 x 128-token batch's 25 MB intermediate activations became 3 MB, reused pass after pass
// while the layer's weights stay in cache, instead of ~100 MB of fresh pages per layer (which
// the scheduler's heap trim after each burst hands back, to be faulted in again).
constexpr int64_t kEncoderPassRows = 512;

// The rows of one pass of a layer: whole sequences, their cu_seqlens counted from first_row.
struct RowPass {
  int64_t first_row, rows;
  torch::Tensor cu_seqlens;  // int64 [sequences + 1], 0 first
};

struct EncoderLayerWeights {
  torch::Tensor qkv, qkv_bias;  // packed by pack_int16_weight; bias float32 [N]
  torch::Tensor out, out_bias;
  torch::Tensor attn_norm_weight, attn_norm_bias;  // LayerNorm after attention [H]
  torch::Tensor inter, inter_bias;
  torch::Tensor down, down_bias;
  torch::Tensor out_norm_weight, out_norm_bias;  // LayerNorm after the MLP [H]
};

class EncoderStack {
 public:
  // Embedding tables float32 [rows, H]; `scale` is the attention's softmax scale (the caller's
  // value, so that both paths round the same double).
  EncoderStack(torch::Tensor word_embeddings, torch::Tensor position_embeddings,
               torch::Tensor token_type_embeddings, torch::Tensor embed_norm_weight,
               torch::Tensor embed_norm_bias, int64_t num_heads, int64_t head_dim, double eps,
               double scale, bool tanh_gelu);

  // Appends a layer (layers run in the order added); projections packed by pack_int16_weight.
  void add_layer(torch::Tensor qkv, torch::Tensor qkv_bias, torch::Tensor out,
                 torch::Tensor out_bias, torch::Tensor attn_norm_weight,
                 torch::Tensor attn_norm_bias, torch::Tensor inter, torch::Tensor inter_bias,
                 torch::Tensor down, torch::Tensor down_bias, torch::Tensor out_norm_weight,
                 torch::Tensor out_norm_bias);

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  // Forwards run in one OpenMP region so far (not serial, more than one thread).
  int64_t region_forwards() const { return region_forwards_.load(); }

  // Packed whole sequences: input_ids, positions (and token_type_ids, or None for type 0)
  // int64 [T]; cu_seqlens int64 [B + 1] as encoder_attention takes it -> hidden states
  // float32 [T, H] after the last layer. serial: every kernel on the calling thread (no
  // OpenMP region); otherwise each kernel splits its work as on the per-op path, all of the
  // layers' kernels inside one region.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& positions,
                        const std::optional<torch::Tensor>& token_type_ids,
                        const torch::Tensor& cu_seqlens, bool serial) const;

 private:
  torch::Tensor word_, position_, token_type_, embed_norm_weight_, embed_norm_bias_;
  int64_t num_heads_, head_dim_, hidden_;
  double eps_, scale_;
  bool tanh_gelu_;
  std::vector<EncoderLayerWeights> layers_;
  // Inputs up to this many tokens run serial while the host is busy (BusyFallback).
  static constexpr int64_t kAdaptiveMaxTokens = 64;
  mutable BusyFallback busy_;
  mutable std::atomic<int64_t> region_forwards_{0};

  // Every layer's ops on `step`, pass by pass, each pass's output written back into its rows
  // of h.
  void run_layers(StepRunner& step, const torch::Tensor& h,
                  const std::vector<RowPass>& passes) const;
};

}  // namespace radixserve::cpu
