// DecoderStack: the per-op decode layer loop of models/llama.py, transcribed op for op.
#include "cpu/decoder.h"

#include <atomic>
#include <cmath>

#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/kernel_checks.h"
#include "cpu/norm.h"
#include "cpu/quant.h"
#include "cpu/rope.h"
#include "cpu/step_runner.h"

namespace radixserve::cpu {

torch::Tensor PackedLinear::operator()(const torch::Tensor& x) const {
  return run_split_call(prepare(x));
}

SplitCall PackedLinear::prepare(const torch::Tensor& x) const {
  return quant ? prepare_quant_linear(x, packed, bias) : prepare_linear(x, packed, bias);
}

namespace {
std::atomic<bool> g_one_region{true};  // set_decoder_threading
}  // namespace

void set_decoder_threading(const std::string& mode) {
  RS_CHECK(mode == "step" || mode == "per_call",
           "set_decoder_threading: mode must be 'step' or 'per_call', got '", mode, "'");
  g_one_region.store(mode == "step", std::memory_order_relaxed);
}

std::string decoder_threading() { return g_one_region.load() ? "step" : "per_call"; }

torch::Tensor run_projection_calls(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                                   bool quant, int64_t calls) {
  RS_CHECK(!weights.empty() && calls > 0,
           "run_projection_calls: need at least one weight and one call");
  std::vector<PackedLinear> linears;
  for (const torch::Tensor& w : weights) linears.push_back({w, quant, std::nullopt});
  const auto run = [&](StepRunner& step, torch::Tensor* out) {
    for (int64_t i = 0; i < calls && !step.stopped(); ++i)
      step.op(out, [&] { return linears[i % linears.size()].prepare(x); });
  };
  torch::Tensor out;
  run_steps(g_one_region.load(std::memory_order_relaxed), at::get_num_threads(),
            [&](StepRunner& step) { run(step, &out); });
  return out;
}

DecoderStack::DecoderStack(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                           double rms_eps, torch::Tensor cos_sin_cache, bool is_neox)
    : num_heads_(num_heads),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      eps_(rms_eps),
      scale_(1.0 / std::sqrt(static_cast<double>(head_dim))),
      cos_sin_cache_(std::move(cos_sin_cache)),
      is_neox_(is_neox) {
  RS_CHECK(num_heads > 0 && num_kv_heads > 0 && head_dim > 0 && num_heads % num_kv_heads == 0,
           "DecoderStack: bad head counts ", num_heads, "/", num_kv_heads, " x ", head_dim);
}

void DecoderStack::add_layer(torch::Tensor input_norm, torch::Tensor post_attention_norm,
                             torch::Tensor qkv, bool qkv_quant,
                             std::optional<torch::Tensor> qkv_bias, torch::Tensor o, bool o_quant,
                             torch::Tensor gate_up, bool gate_up_quant, torch::Tensor down,
                             bool down_quant, int64_t sliding_window) {
  DecoderLayerWeights w;
  w.input_norm = std::move(input_norm);
  w.post_attention_norm = std::move(post_attention_norm);
  w.qkv = {std::move(qkv), qkv_quant, std::move(qkv_bias)};
  w.o = {std::move(o), o_quant, std::nullopt};
  w.gate_up = {std::move(gate_up), gate_up_quant, std::nullopt};
  w.down = {std::move(down), down_quant, std::nullopt};
  w.sliding_window = sliding_window;
  layers_.push_back(std::move(w));
}

std::tuple<torch::Tensor, torch::Tensor> DecoderStack::decode(
    torch::Tensor h, const torch::Tensor& positions, const std::vector<torch::Tensor>& k_caches,
    const std::vector<torch::Tensor>& v_caches, const torch::Tensor& out_cache_loc,
    const torch::Tensor& req_to_token, const torch::Tensor& req_pool_indices,
    const torch::Tensor& seq_lens, std::optional<torch::Tensor> residual_in, int64_t layer_begin,
    int64_t layer_end) const {
  const int64_t end = layer_end < 0 ? num_layers() : layer_end;
  RS_CHECK(0 <= layer_begin && layer_begin < end && end <= num_layers(),
           "DecoderStack.decode: bad layer range [", layer_begin, ", ", layer_end, ") of ",
           num_layers(), " layers");
  RS_CHECK(residual_in.has_value() == (layer_begin > 0),
           "DecoderStack.decode: a residual goes with (and only with) a range after layer 0");
  const int64_t n = end - layer_begin;
  RS_CHECK(static_cast<int64_t>(k_caches.size()) == n && static_cast<int64_t>(v_caches.size()) == n,
           "DecoderStack.decode: need one k and one v cache per layer of the range (", n,
           "), got ", k_caches.size(), " and ", v_caches.size());
  check_tensor(h, "h", 2);
  // Updated in place, as the per-op layers do (the caller's h and residual are spent).
  torch::Tensor residual = residual_in.has_value() ? *residual_in : torch::Tensor();
  if (residual.defined()) {
    check_tensor(residual, "residual", 2);
    RS_CHECK(residual.sizes() == h.sizes(), "DecoderStack.decode: residual and h differ in shape");
  }
  run_steps(g_one_region.load(std::memory_order_relaxed), at::get_num_threads(),
            [&](StepRunner& step) {
              run_layers(step, h, residual, positions, k_caches, v_caches, out_cache_loc,
                         req_to_token, req_pool_indices, seq_lens, layer_begin, end);
            });
  return {h, residual};
}

void DecoderStack::run_layers(StepRunner& step, torch::Tensor& h, torch::Tensor& residual,
                              const torch::Tensor& positions,
                              const std::vector<torch::Tensor>& k_caches,
                              const std::vector<torch::Tensor>& v_caches,
                              const torch::Tensor& out_cache_loc,
                              const torch::Tensor& req_to_token,
                              const torch::Tensor& req_pool_indices,
                              const torch::Tensor& seq_lens, int64_t layer_begin,
                              int64_t layer_end) const {
  const int64_t t = h.size(0);
  const int64_t q_size = num_heads_ * head_dim_, kv_size = num_kv_heads_ * head_dim_;
  // Written by the serial parts (one thread), read by them only.
  torch::Tensor qkv, attn, gate_up;
  for (int64_t i = layer_begin; i < layer_end && !step.stopped(); ++i) {
    const DecoderLayerWeights& w = layers_[i];
    step.op(&qkv, [&] {
      // input_layernorm: the first layer's residual is the embedding; later ones add first.
      if (!residual.defined()) {
        residual = h;
        h = torch::empty_like(residual);
        rms_norm(h, residual, w.input_norm, eps_);
      } else {
        fused_add_rms_norm(h, residual, w.input_norm, eps_);
      }
      return w.qkv.prepare(h);
    });
    if (step.stopped()) break;
    // Attention.
    step.op(&attn, [&] {
      torch::Tensor q = qkv.narrow(1, 0, q_size).contiguous();
      torch::Tensor k = qkv.narrow(1, q_size, kv_size).contiguous();
      const torch::Tensor v = qkv.narrow(1, q_size + kv_size, kv_size)
                                  .reshape({t, num_kv_heads_, head_dim_})
                                  .contiguous();
      rotary_embedding(positions, q, k, head_dim_, cos_sin_cache_, is_neox_);
      const torch::Tensor q3 = q.view({t, num_heads_, head_dim_});
      const torch::Tensor k3 = k.view({t, num_kv_heads_, head_dim_});
      const torch::Tensor& k_cache = k_caches[i - layer_begin];
      const torch::Tensor& v_cache = v_caches[i - layer_begin];
      store_kv(k_cache, v_cache, out_cache_loc, k3, v);
      const torch::Tensor out = torch::empty_like(q3);
      return prepare_decode_attention(out, q3, k_cache, v_cache, req_to_token,
                                      req_pool_indices, seq_lens, scale_, w.sliding_window);
    });
    if (step.stopped()) break;
    step.op(&h, [&] { return w.o.prepare(attn.view({t, q_size})); });
    if (step.stopped()) break;
    // post_attention_layernorm, MLP.
    step.op(&gate_up, [&] {
      fused_add_rms_norm(h, residual, w.post_attention_norm, eps_);
      return w.gate_up.prepare(h);
    });
    if (step.stopped()) break;
    step.op(&h, [&] {
      const torch::Tensor act = torch::empty({t, gate_up.size(1) / 2}, gate_up.options());
      silu_and_mul(act, gate_up);
      return w.down.prepare(act);
    });
  }
}

}  // namespace radixserve::cpu
