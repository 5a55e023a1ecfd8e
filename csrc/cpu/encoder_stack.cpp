// EncoderStack: the per-op forward of models/bert.py's BertEncoder, transcribed op for op.
#include "cpu/encoder_stack.h"

#include "cpu/encoder_ops.h"
#include "cpu/gemm_int16.h"
#include "cpu/kernel_checks.h"
#include "cpu/split_call.h"
#include "cpu/step_runner.h"

namespace radixserve::cpu {
namespace {

void check_param(const torch::Tensor& t, const char* name, int64_t size) {
  check_tensor(t, name, 1);
  check_dtype(t, name, torch::kFloat32);
  check_size(t, name, 0, size);
}

// Consecutive whole sequences, at most kEncoderPassRows rows a pass unless one sequence is
// longer (it then runs alone); one pass when the batch fits in one or has no sequence.
std::vector<RowPass> row_passes(const torch::Tensor& cu_seqlens, int64_t total) {
  // One pass (no copy) when the batch fits in one: encoder_attention checks cu_seqlens.
  if (total <= kEncoderPassRows) return {{0, total, cu_seqlens}};
  check_tensor(cu_seqlens, "cu_seqlens", 1);
  RS_CHECK(cu_seqlens.scalar_type() == torch::kInt64 || cu_seqlens.scalar_type() == torch::kInt32,
           "cu_seqlens must be int32 or int64, got ", cu_seqlens.scalar_type());
  const torch::Tensor cu = cu_seqlens.to(torch::kInt64).contiguous();
  const int64_t* c = cu.data_ptr<int64_t>();
  const int64_t seqs = cu.size(0) - 1;
  if (seqs <= 0) return {{0, total, cu}};  // encoder_attention checks and rejects what is wrong
  for (int64_t s = 0; s < seqs; ++s) {
    RS_CHECK(c[s] <= c[s + 1], "cu_seqlens must be non-decreasing, got ", c[s], " then ",
             c[s + 1], " at ", s + 1);
  }
  RS_CHECK(c[0] == 0 && c[seqs] == total, "cu_seqlens must run from 0 to the number of tokens ",
           total, ", got ", c[0], " to ", c[seqs]);
  std::vector<RowPass> passes;
  for (int64_t s0 = 0; s0 < seqs;) {
    int64_t s1 = s0 + 1;
    while (s1 < seqs && c[s1 + 1] - c[s0] <= kEncoderPassRows) ++s1;
    passes.push_back({c[s0], c[s1] - c[s0], cu.slice(0, s0, s1 + 1) - c[s0]});
    s0 = s1;
  }
  return passes;
}

// `first`'s phases, then `then`'s, as one call with `then`'s result.
SplitCall chain(SplitCall first, SplitCall then) {
  for (SplitPhase& p : then.phases) first.phases.push_back(std::move(p));
  first.finish = std::move(then.finish);
  return first;
}

// LayerNorm(x + residual) into out, then the projection of proj_x (out itself, or rows that
// do not overlap it). When the projection reads its input while being prepared (a short one),
// the norm runs first, here, on one thread; otherwise it is the call's first phase, split over
// the threads.
SplitCall norm_then_project(const torch::Tensor& out, const torch::Tensor& x,
                            const torch::Tensor& residual, const torch::Tensor& weight,
                            const torch::Tensor& bias, double eps, const torch::Tensor& proj_x,
                            const torch::Tensor& packed, const torch::Tensor& packed_bias) {
  if (proj_x.size(0) <= kInt16RoundedInPrepare) {
    layer_norm(out, x, residual, weight, bias, eps);
    return prepare_int16_linear(proj_x, packed, packed_bias);
  }
  return chain(prepare_layer_norm(out, x, residual, weight, bias, eps),
               prepare_int16_linear(proj_x, packed, packed_bias));
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
  // A short input's ops last microseconds: while the host is busy, one thread does better.
  const bool adaptive = !serial && t <= kAdaptiveMaxTokens;
  if (adaptive) serial = busy_.take_serial();
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
  const std::vector<RowPass> passes = row_passes(cu_seqlens, t);
  const int64_t sleeps = run_steps(!serial, at::get_num_threads(),
                                   [&](StepRunner& step) { run_layers(step, h, passes); });
  if (!serial && at::get_num_threads() > 1) region_forwards_.fetch_add(1, std::memory_order_relaxed);
  if (adaptive && !serial) busy_.after_region(sleeps);
  return h;
}

void EncoderStack::run_layers(StepRunner& step, const torch::Tensor& h,
                              const std::vector<RowPass>& passes) const {
  // Written by the serial parts (thread 0), read by them only. hp: the pass's rows of h, read,
  // then overwritten with the layer's output.
  torch::Tensor hp, qkv, attn, projected, mid, up, down;
  // The layer whose output LayerNorm (down + mid -> its pass's hp) is still to run: it goes
  // with the next projection, so that it costs no op (and barrier) of its own.
  const EncoderLayerWeights* pending = nullptr;
  for (const EncoderLayerWeights& w : layers_) {
    for (const RowPass& pass : passes) {
      const int64_t n = pass.rows;
      step.op(&qkv, [&] {
        const torch::Tensor prev = hp;
        hp = h.narrow(0, pass.first_row, n);
        if (pending == nullptr) return prepare_int16_linear(hp, w.qkv, w.qkv_bias);
        return norm_then_project(prev, down, mid, pending->out_norm_weight,
                                 pending->out_norm_bias, eps_, hp, w.qkv, w.qkv_bias);
      });
      if (step.stopped()) return;
      // BertSelfAttention: q, k, v are strided views of the fused projection's rows.
      step.op(&attn, [&] {
        const torch::Tensor qkv4 = qkv.view({n, 3, num_heads_, head_dim_});
        const torch::Tensor out = torch::empty({n, num_heads_, head_dim_}, h.options());
        SplitCall call = prepare_encoder_attention(out, qkv4.select(1, 0), qkv4.select(1, 1),
                                                   qkv4.select(1, 2), pass.cu_seqlens, scale_);
        call.finish = [out, qkv4] { return out; };  // q, k and v stay alive until then
        return call;
      });
      if (step.stopped()) return;
      step.op(&projected,
              [&] { return prepare_int16_linear(attn.view({n, hidden_}), w.out, w.out_bias); });
      if (step.stopped()) return;
      // BertLayer's MLP (GELU in place: elementwise, each value read before it is written).
      step.op(&up, [&] {
        mid = torch::empty_like(projected);
        return norm_then_project(mid, projected, hp, w.attn_norm_weight, w.attn_norm_bias, eps_,
                                 mid, w.inter, w.inter_bias);
      });
      if (step.stopped()) return;
      step.op(&up, [&] {
        SplitCall call = prepare_gelu(up, up, tanh_gelu_);
        call.finish = [act = up] { return act; };
        return call;
      });
      if (step.stopped()) return;
      step.op(&down, [&] { return prepare_int16_linear(up, w.down, w.down_bias); });
      if (step.stopped()) return;
      pending = &w;
    }
  }
  if (pending == nullptr) return;
  // The last pass's output LayerNorm, an op of its own.
  torch::Tensor done;
  step.op(&done, [&] {
    SplitCall call = prepare_layer_norm(hp, down, mid, pending->out_norm_weight,
                                        pending->out_norm_bias, eps_);
    call.finish = [out = hp, down = down, mid = mid] { return out; };  // inputs stay alive
    return call;
  });
}

}  // namespace radixserve::cpu
