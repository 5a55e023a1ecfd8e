// Encoder (BERT-family) kernels: LayerNorm with an optional fused residual add, GELU (exact erf
// form, or the tanh approximation) and bidirectional (non-causal) attention over packed
// sequences. Kernels are built portable (encoder_ops.cpp), AVX2 and AVX-512
// (encoder_ops_avx2.cpp, encoder_ops_avx512.cpp from encoder_ops_simd.h), like norm.* and
// activation.*, and picked at run time (cpu_features.h).
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace radixserve::cpu {

struct SplitCall;  // split_call.h (kept out: the ISA sources include this header, not torch)

// Rows of queries one attention pass scores together (sizes EncoderAttendWork::scores).
constexpr int64_t kEncoderQueryBlock = 32;
// Key rows are padded to a multiple of this in the scratch (the widest vector, AVX-512).
constexpr int64_t kEncoderKeyPad = 16;

// One item of encoder attention: one head of one sequence of n tokens, every query against
// every key (no mask). Row t of q/k/v/out starts at base + t * stride; head_dim floats each.
struct EncoderAttendWork {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t q_stride, k_stride, v_stride, out_stride;
  int64_t n;
  int64_t head_dim;
  float scale;
  float* kt;      // scratch, head_dim * padded(n) floats: the keys transposed, pre-scaled
  float* scores;  // scratch, kEncoderQueryBlock * padded(n) floats
};

inline int64_t encoder_padded_len(int64_t n) {
  return (n + kEncoderKeyPad - 1) / kEncoderKeyPad * kEncoderKeyPad;
}

// One row each for LayerNorm and GELU; weight and bias in fp32. `res` may be null (no residual
// add). `attend_f32` runs one EncoderAttendWork.
struct EncoderKernels {
  void (*ln_f32)(float* out, const float* x, const float* res, const float* w, const float* b,
                 int64_t h, float eps);
  void (*ln_bf16)(uint16_t* out, const uint16_t* x, const uint16_t* res, const float* w,
                  const float* b, int64_t h, float eps);
  void (*gelu_f32)(float* out, const float* x, int64_t n, bool tanh_approx);
  void (*gelu_bf16)(uint16_t* out, const uint16_t* x, int64_t n, bool tanh_approx);
  void (*attend_f32)(const EncoderAttendWork& w);
};

EncoderKernels encoder_kernels_avx2();
EncoderKernels encoder_kernels_avx512();

// out = layer_norm(x + residual) * weight + bias per row of [N, H]; residual may be None.
void layer_norm(const at::Tensor& out, const at::Tensor& x, const at::Tensor& residual,
                const at::Tensor& weight, const at::Tensor& bias, double eps);
// layer_norm as a prepared call (split_call.h); out, x and residual must outlive it.
SplitCall prepare_layer_norm(const at::Tensor& out, const at::Tensor& x,
                             const at::Tensor& residual, const at::Tensor& weight,
                             const at::Tensor& bias, double eps);
// out = gelu(x), elementwise over any contiguous shape.
void gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx);
// gelu as a prepared call (split_call.h); out and x must outlive it.
SplitCall prepare_gelu(const at::Tensor& out, const at::Tensor& x, bool tanh_approx);
// Bidirectional attention over packed sequences: sequence s is rows [cu_seqlens[s],
// cu_seqlens[s + 1]) of q, k, v [T, heads, head_dim] (float32; the last dim contiguous, other
// strides free, so views of one fused QKV projection work); each query attends to every key of
// its own sequence: out = softmax(q k^T * scale) v. out is a contiguous [T, heads, head_dim].
// cu_seqlens: int32 or int64 [B + 1], 0 first, non-decreasing, T last.
void encoder_attention(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& cu_seqlens, double scale);
// encoder_attention as a prepared call (split_call.h); out, q, k and v must outlive it.
SplitCall prepare_encoder_attention(const at::Tensor& out, const at::Tensor& q,
                                    const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& cu_seqlens, double scale);

}  // namespace radixserve::cpu
