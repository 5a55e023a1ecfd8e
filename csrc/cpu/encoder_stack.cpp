// EncoderStack: the per-op forward of models/bert.py's BertEncoder, transcribed op for op.
#include "cpu/encoder_stack.h"

#include <omp.h>

#include "cpu/encoder_ops.h"
#include "cpu/gemm_int16.h"
#include "cpu/kernel_checks.h"
#include "cpu/split_call.h"
#include "cpu/step_runner.h"

namespace radixserve::cpu {
namespace {

// One OpenMP thread for the calling thread's kernels while alive (the ICV is per thread, so
// other threads are untouched): at::parallel_for and int16_linear then run inline.
class SerialScope {
 public:
  explicit SerialScope(bool on) : saved_(on ? omp_get_max_threads() : 0) {
    if (on) omp_set_num_threads(1);
  }
  ~SerialScope() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_;
};

void check_param(const torch::Tensor& t, const char* name, int64_t size) {
  check_tensor(t, name, 1);
  check_dtype(t, name, torch::kFloat32);
  check_size(t, name, 0, size);
}

}  // namespace

EncoderStack::EncoderStack(torch::Tensor word_embeddings, torch::Tensor position_embeddings,
                           torch::Tensor token_type_embeddings, torch::Tensor embed_norm_weight,
                           torch::Tensor embed_norm_bias, int64_t num_heads, int64_t head_dim,
                           double eps, double scale, bool tanh_gelu)
    : word_(std::move(word_embeddings)),
      position_(std::move(position_embeddings)),
      token_type_(std::move(token_type_embeddings)),
      embed_norm_weight_(std::move(embed_norm_weight)),
      embed_norm_bias_(std::move(embed_norm_bias)),
      num_heads_(num_heads),
      head_dim_(head_dim),
      hidden_(num_heads * head_dim),
      eps_(eps),
      scale_(scale),
      tanh_gelu_(tanh_gelu) {
  RS_CHECK(num_heads > 0 && head_dim > 0, "EncoderStack: bad heads ", num_heads, " x ",
           head_dim);
  for (const auto* t : {&word_, &position_, &token_type_}) {
    check_tensor(*t, "embedding table", 2);
    check_dtype(*t, "embedding table", torch::kFloat32);
    check_size(*t, "embedding table", 1, hidden_);
  }
  RS_CHECK(token_type_.size(0) >= 1, "EncoderStack: the token-type table needs a row");
  check_param(embed_norm_weight_, "embed_norm_weight", hidden_);
  check_param(embed_norm_bias_, "embed_norm_bias", hidden_);
}

void EncoderStack::add_layer(torch::Tensor qkv, torch::Tensor qkv_bias, torch::Tensor out,
                             torch::Tensor out_bias, torch::Tensor attn_norm_weight,
                             torch::Tensor attn_norm_bias, torch::Tensor inter,
                             torch::Tensor inter_bias, torch::Tensor down,
                             torch::Tensor down_bias, torch::Tensor out_norm_weight,
                             torch::Tensor out_norm_bias) {
  // Shapes as the layer's products chain them (int16_weight reads and checks each header).
  const auto n_of = [](const torch::Tensor& packed) {
    return std::get<0>(int16_weight(packed)).sizes().vec();
  };
  const auto q = n_of(qkv), o = n_of(out), i = n_of(inter), d = n_of(down);
  RS_CHECK(q[0] == 3 * hidden_ && q[1] == hidden_ && o[0] == hidden_ && o[1] == hidden_ &&
               i[1] == hidden_ && d[0] == hidden_ && d[1] == i[0],
           "EncoderStack.add_layer: projection shapes do not chain for hidden size ", hidden_);
  check_param(qkv_bias, "qkv_bias", q[0]);
  check_param(out_bias, "out_bias", hidden_);
  check_param(inter_bias, "inter_bias", i[0]);
  check_param(down_bias, "down_bias", hidden_);
  for (const auto* t : {&attn_norm_weight, &attn_norm_bias, &out_norm_weight, &out_norm_bias})
    check_param(*t, "layer norm parameter", hidden_);
  layers_.push_back({std::move(qkv), std::move(qkv_bias), std::move(out), std::move(out_bias),
                     std::move(attn_norm_weight), std::move(attn_norm_bias), std::move(inter),
                     std::move(inter_bias), std::move(down), std::move(down_bias),
                     std::move(out_norm_weight), std::move(out_norm_bias)});
}

torch::Tensor EncoderStack::forward(const torch::Tensor& input_ids,
                                    const torch::Tensor& positions,
                                    const std::optional<torch::Tensor>& token_type_ids,
                                    const torch::Tensor& cu_seqlens, bool serial) const {
  check_tensor(input_ids, "input_ids", 1);
  check_dtype(input_ids, "input_ids", torch::kInt64);
  check_tensor(positions, "positions", 1);
  check_dtype(positions, "positions", torch::kInt64);
  const int64_t t = input_ids.size(0);
  check_size(positions, "positions", 0, t);
  // A short input whose last region forward found a thread without a core runs serial for a
  // while: its ops last microseconds, so a partner that sleeps costs more than it brings.
  const bool adaptive = !serial && t <= kAdaptiveMaxTokens;
  if (adaptive && serial_left_.load(std::memory_order_relaxed) > 0) {
    serial_left_.fetch_sub(1, std::memory_order_relaxed);
    serial = true;
  }
  SerialScope scope(serial);
  // Embeddings, as BertEncoder.forward: word + position, then LayerNorm(h + token type).
  const torch::Tensor h0 = at::embedding(word_, input_ids) + at::embedding(position_, positions);
  torch::Tensor types;
  if (token_type_ids.has_value()) {
    check_size(*token_type_ids, "token_type_ids", 0, t);
    types = at::embedding(token_type_, *token_type_ids);
  } else {  // type 0 everywhere: the per-op path looks up zeros, the same row
    types = token_type_[0].expand({t, hidden_}).contiguous();
  }
  torch::Tensor h = torch::empty_like(h0);
  layer_norm(h, h0, types, embed_norm_weight_, embed_norm_bias_, eps_);
  // The layers: one OpenMP region with a barrier between ops (a region per op would wake the
  // other threads some 30 times a forward), or every kernel on this thread (serial).
  torch::Tensor down, mid;  // the last layer's MLP output and its residual
  const int64_t sleeps =
      run_steps(!serial, at::get_num_threads(),
                [&](StepRunner& step) { run_layers(step, h, down, mid, cu_seqlens); });
  if (!serial && at::get_num_threads() > 1) region_forwards_.fetch_add(1, std::memory_order_relaxed);
  if (adaptive && !serial)
    serial_left_.store(sleeps > kMaxSleeps ? kSerialForwards : 0, std::memory_order_relaxed);
  if (!layers_.empty()) {  // the last layer's output LayerNorm
    const EncoderLayerWeights& w = layers_.back();
    h = torch::empty_like(down);
    layer_norm(h, down, mid, w.out_norm_weight, w.out_norm_bias, eps_);
  }
  return h;
}

void EncoderStack::run_layers(StepRunner& step, torch::Tensor& h, torch::Tensor& down,
                              torch::Tensor& mid, const torch::Tensor& cu_seqlens) const {
  const int64_t t = h.size(0);
  // Written by the serial parts (thread 0), read by them only.
  torch::Tensor qkv, attn, projected, up, act;
  const EncoderLayerWeights* prev = nullptr;
  for (const EncoderLayerWeights& w : layers_) {
    step.op(&qkv, [&] {
      if (prev != nullptr) {  // the previous layer's output LayerNorm (residual: its mid)
        h = torch::empty_like(down);
        layer_norm(h, down, mid, prev->out_norm_weight, prev->out_norm_bias, eps_);
      }
      return prepare_int16_linear(h, w.qkv, w.qkv_bias);
    });
    if (step.stopped()) return;
    // BertSelfAttention: q, k, v are strided views of the fused projection's rows.
    step.op(&attn, [&] {
      const torch::Tensor qkv4 = qkv.view({t, 3, num_heads_, head_dim_});
      const torch::Tensor out = torch::empty({t, num_heads_, head_dim_}, h.options());
      SplitCall call = prepare_encoder_attention(out, qkv4.select(1, 0), qkv4.select(1, 1),
                                                 qkv4.select(1, 2), cu_seqlens, scale_);
      call.finish = [out, qkv4] { return out; };  // q, k and v stay alive until then
      return call;
    });
    if (step.stopped()) return;
    step.op(&projected,
            [&] { return prepare_int16_linear(attn.view({t, hidden_}), w.out, w.out_bias); });
    if (step.stopped()) return;
    // BertLayer's MLP.
    step.op(&up, [&] {
      mid = torch::empty_like(projected);
      layer_norm(mid, projected, h, w.attn_norm_weight, w.attn_norm_bias, eps_);
      return prepare_int16_linear(mid, w.inter, w.inter_bias);
    });
    if (step.stopped()) return;
    step.op(&act, [&] {
      const torch::Tensor out = torch::empty_like(up);
      SplitCall call = prepare_gelu(out, up, tanh_gelu_);
      call.finish = [out, up] { return out; };
      return call;
    });
    if (step.stopped()) return;
    step.op(&down, [&] { return prepare_int16_linear(act, w.down, w.down_bias); });
    if (step.stopped()) return;
    prev = &w;
  }
}

}  // namespace radixserve::cpu
