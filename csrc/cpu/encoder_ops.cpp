// torch-facing LayerNorm, GELU and encoder attention: checks, parallel loops, portable kernels.
#include "cpu/encoder_ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/bf16.h"
#include "cpu/cpu_features.h"
#include "cpu/kernel_checks.h"
#include "cpu/split_call.h"

namespace radixserve::cpu {
namespace {

// Two passes over the (x + res) row kept in fp32: mean, then variance about the mean, which is
// what torch computes (no E[x^2] - E[x]^2 cancellation).
template <typename T>
void ln_row(T* out, const T* x, const T* res, const float* w, const float* b, int64_t h,
            float eps) {
  float mean = 0.0f;
  for (int64_t i = 0; i < h; ++i) mean += to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f);
  mean /= static_cast<float>(h);
  float var = 0.0f;
  for (int64_t i = 0; i < h; ++i) {
    const float d = to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f) - mean;
    var += d * d;
  }
  const float inv = 1.0f / std::sqrt(var / static_cast<float>(h) + eps);
  for (int64_t i = 0; i < h; ++i) {
    const float v = to_f32(x[i]) + (res ? to_f32(res[i]) : 0.0f);
    store_f32(out + i, (v - mean) * inv * w[i] + b[i]);
  }
}

template <typename T>
void gelu_row(T* out, const T* x, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = to_f32(x[i]);
    const float g = tanh_approx
                        ? 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v)))
                        : 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    store_f32(out + i, g);
  }
}

// One query at a time: scores, exact softmax, weighted sum of V (the scratch's first row).
void attend_generic(const EncoderAttendWork& w) {
  float* s = w.scores;
  for (int64_t i = 0; i < w.n; ++i) {
    const float* q = w.q + i * w.q_stride;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < w.n; ++j) {
      const float* k = w.k + j * w.k_stride;
      float dot = 0.0f;
      for (int64_t d = 0; d < w.head_dim; ++d) dot += q[d] * k[d];
      s[j] = dot * w.scale;
      m = std::max(m, s[j]);
    }
    float l = 0.0f;
    for (int64_t j = 0; j < w.n; ++j) {
      s[j] = std::exp(s[j] - m);
      l += s[j];
    }
    float* o = w.out + i * w.out_stride;
    for (int64_t d = 0; d < w.head_dim; ++d) o[d] = 0.0f;
    for (int64_t j = 0; j < w.n; ++j) {
      const float* v = w.v + j * w.v_stride;
      for (int64_t d = 0; d < w.head_dim; ++d) o[d] += s[j] * v[d];
    }
    for (int64_t d = 0; d < w.head_dim; ++d) o[d] /= l;
  }
}

EncoderKernels kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return encoder_kernels_avx512();
    case Isa::kAvx2:
      return encoder_kernels_avx2();
    default:
      return {&ln_row<float>, &ln_row<uint16_t>, &gelu_row<float>, &gelu_row<uint16_t>,
              &attend_generic};
  }
}

at::Tensor check_param(const at::Tensor& t, const char* name, int64_t h) {
  check_tensor(t, name, 1);
  check_float_dtype(t, name);
  check_size(t, name, 0, h);
  return t.to(at::kFloat).contiguous();
}

}  // namespace

SplitCall prepare_layer_norm(const at::Tensor& out, const at::Tensor& x,
                             const at::Tensor& residual, const at::Tensor& weight,
                             const at::Tensor& bias, double eps) {
  check_tensor(x, "x", 2);
  check_tensor(out, "out", 2);
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ",
           out.sizes());
  const bool has_res = residual.defined();
  if (has_res) {
    check_tensor(residual, "residual", 2);
    check_same_dtype(residual, x, "residual", "x");
    RS_CHECK(residual.sizes() == x.sizes(), "residual must have the shape of x ", x.sizes(),
             ", got ", residual.sizes());
  }
  const int64_t n = x.size(0), h = x.size(1);
  RS_CHECK(h > 0, "the hidden size must be positive");
  RS_CHECK(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
  const at::Tensor w = check_param(weight, "weight", h);
  const at::Tensor b = check_param(bias, "bias", h);
  const EncoderKernels k = kernels();
  const float e = static_cast<float>(eps);
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  const void* rp = has_res ? residual.data_ptr() : nullptr;
  SplitCall call;
  SplitPhase phase;
  phase.items = n;
  phase.threads = n > 16 ? omp_get_max_threads() : 1;  // a row takes well under a microsecond
  // The weight and bias copies (w, b) are kept by the lambda; the caller keeps the others.
  phase.run = [=](int64_t r0, int64_t r1) {
    const float* wp = w.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    for (int64_t r = r0; r < r1; ++r) {
      if (f32) {
        const float* rr = rp ? static_cast<const float*>(rp) + r * h : nullptr;
        k.ln_f32(static_cast<float*>(op) + r * h, static_cast<const float*>(xp) + r * h, rr, wp,
                 bp, h, e);
      } else {
        const uint16_t* rr = rp ? static_cast<const uint16_t*>(rp) + r * h : nullptr;
        k.ln_bf16(static_cast<uint16_t*>(op) + r * h, static_cast<const uint16_t*>(xp) + r * h,
                  rr, wp, bp, h, e);
      }
    }
  };
  call.phases.push_back(std::move(phase));
  return call;
}

void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps) {
  run_split_call(prepare_layer_norm(out, x, residual, weight, bias, eps));
}

SplitCall prepare_gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx) {
  RS_CHECK(x.defined() && out.defined(), "x and out must be tensors");
  RS_CHECK(x.device().is_cpu() && out.device().is_cpu(), "x and out must be on the CPU");
  RS_CHECK(x.is_contiguous() && out.is_contiguous(), "x and out must be contiguous");
  check_float_dtype(x, "x");
  check_same_dtype(out, x, "out", "x");
  RS_CHECK(out.sizes() == x.sizes(), "out must have the shape of x ", x.sizes(), ", got ",
           out.sizes());
  const int64_t total = x.numel();
  const EncoderKernels k = kernels();
  const bool f32 = x.scalar_type() == at::kFloat;
  void* op = out.data_ptr();
  const void* xp = x.data_ptr();
  constexpr int64_t kBlock = 4096;  // elements per item: large enough to amortise scheduling
  SplitCall call;
  SplitPhase phase;
  phase.items = (total + kBlock - 1) / kBlock;
  phase.threads = omp_get_max_threads();
  phase.run = [=](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t s = blk * kBlock, len = std::min(kBlock, total - s);
      if (f32) {
        k.gelu_f32(static_cast<float*>(op) + s, static_cast<const float*>(xp) + s, len,
                   tanh_approx);
      } else {
        k.gelu_bf16(static_cast<uint16_t*>(op) + s, static_cast<const uint16_t*>(xp) + s, len,
                    tanh_approx);
      }
    }
  };
  call.phases.push_back(std::move(phase));
  return call;
}

void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx) {
  run_split_call(prepare_gelu(out, x, tanh_approx));
}

namespace {

// q, k or v: float32 [T, heads, head_dim] on the CPU, head_dim contiguous.
void check_qkv(const at::Tensor& t, const char* name, const at::Tensor& q) {
  RS_CHECK(t.defined(), name, " must be a tensor");
  RS_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  RS_CHECK(t.dim() == 3, name, " must be [tokens, heads, head_dim], got shape ", t.sizes());
  RS_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
  RS_CHECK(t.sizes() == q.sizes(), name, " must have the shape of q ", q.sizes(), ", got ",
           t.sizes());
  RS_CHECK(t.size(2) == 0 || t.stride(2) == 1, name, "'s last dimension must be contiguous");
}

// cu_seqlens as int64, after checking it partitions [0, total).
std::vector<int64_t> check_cu_seqlens(const at::Tensor& cu, int64_t total) {
  check_tensor(cu, "cu_seqlens", 1);
  RS_CHECK(cu.scalar_type() == at::kInt || cu.scalar_type() == at::kLong,
           "cu_seqlens must be int32 or int64, got ", cu.scalar_type());
  RS_CHECK(cu.size(0) >= 1, "cu_seqlens needs at least one entry (0)");
  const at::Tensor c = cu.to(at::kLong);
  const int64_t* p = c.data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + c.size(0));
  RS_CHECK(out.front() == 0, "cu_seqlens[0] must be 0, got ", out.front());
  for (size_t s = 1; s < out.size(); ++s) {
    RS_CHECK(out[s] >= out[s - 1], "cu_seqlens must be non-decreasing, got ", out[s - 1],
             " then ", out[s], " at ", s);
  }
  RS_CHECK(out.back() == total, "cu_seqlens must end at the number of tokens ", total, ", got ",
           out.back());
  return out;
}

}  // namespace

SplitCall prepare_encoder_attention(const at::Tensor& out, const at::Tensor& q,
                                    const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& cu_seqlens, double scale) {
  check_qkv(q, "q", q);
  check_qkv(k, "k", q);
  check_qkv(v, "v", q);
  check_tensor(out, "out", 3);
  RS_CHECK(out.scalar_type() == at::kFloat, "out must be float32, got ", out.scalar_type());
  RS_CHECK(out.sizes() == q.sizes(), "out must have the shape of q ", q.sizes(), ", got ",
           out.sizes());
  RS_CHECK(std::isfinite(scale), "scale must be finite, got ", scale);
  const int64_t heads = q.size(1), hd = q.size(2);
  std::vector<int64_t> cu = check_cu_seqlens(cu_seqlens, q.size(0));
  const int64_t seqs = static_cast<int64_t>(cu.size()) - 1;
  SplitCall call;
  if (q.numel() == 0 || seqs == 0) return call;
  int64_t max_len = 0;
  for (int64_t s = 0; s < seqs; ++s) max_len = std::max(max_len, cu[s + 1] - cu[s]);
  EncoderAttendWork base{};
  base.q_stride = q.stride(0);
  base.k_stride = k.stride(0);
  base.v_stride = v.stride(0);
  base.out_stride = heads * hd;
  base.head_dim = hd;
  base.scale = static_cast<float>(scale);
  const int64_t np = encoder_padded_len(max_len);
  const int64_t qh = q.stride(1), kh = k.stride(1), vh = v.stride(1);
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const EncoderKernels kern = kernels();
  // Items are (sequence, head) pairs of uneven cost when the lengths differ: handed out one at
  // a time. The tensors stay alive in the caller (the encoder stack or the op below).
  SplitPhase phase;
  phase.items = seqs * heads;
  phase.threads = omp_get_max_threads();
  phase.dynamic = true;
  phase.run = [=, cu = std::move(cu)](int64_t w0, int64_t w1) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<size_t>((hd + kEncoderQueryBlock) * np))
      scratch.resize((hd + kEncoderQueryBlock) * np);
    for (int64_t item = w0; item < w1; ++item) {
      const int64_t s = item / heads, h = item % heads, t0 = cu[s];
      const int64_t n = cu[s + 1] - t0;
      if (n == 0) continue;
      EncoderAttendWork w = base;
      w.q = qp + t0 * base.q_stride + h * qh;
      w.k = kp + t0 * base.k_stride + h * kh;
      w.v = vp + t0 * base.v_stride + h * vh;
      w.out = op + (t0 * heads + h) * hd;
      w.n = n;
      w.kt = scratch.data();
      w.scores = scratch.data() + hd * np;
      kern.attend_f32(w);
    }
  };
  call.phases.push_back(std::move(phase));
  return call;
}

void encoder_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& cu_seqlens, double scale) {
  run_split_call(prepare_encoder_attention(out, q, k, v, cu_seqlens, scale));
}

}  // namespace radixserve::cpu
