// Encoder (BERT-family) launchers: LayerNorm with an optional fused residual add, GELU, and
// bidirectional attention over packed sequences; the CUDA twins of csrc/cpu/encoder_ops.h.
// Raw pointers on a stream. Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// Longest head_dim encoder attention takes (each lane of a warp holds head_dim / 32 floats).
constexpr int kEncoderMaxHeadDim = 256;

// out[r] = layer_norm(x[r] + residual[r]) * weight + bias; residual may be null; out, x and
// residual of `dtype`, contiguous [rows, hidden]; weight and bias float32 [hidden].
cudaError_t launch_layer_norm(DType dtype, void* out, const void* x, const void* residual,
                              const float* weight, const float* bias, int64_t rows,
                              int64_t hidden, float eps, cudaStream_t stream);

// out = gelu(x) elementwise over n contiguous elements (erf form, or the tanh approximation).
cudaError_t launch_gelu(DType dtype, void* out, const void* x, int64_t n, bool tanh_approx,
                        cudaStream_t stream);

// Views of q, k, v [T, heads, head_dim]: element (t, h, d) at base + t * token_stride +
// h * head_stride + d.
struct EncoderQkv {
  const void* q;
  const void* k;
  const void* v;
  int64_t q_token_stride, q_head_stride;
  int64_t k_token_stride, k_head_stride;
  int64_t v_token_stride, v_head_stride;
};

// Sequence s is tokens [cu_seqlens[s], cu_seqlens[s + 1]) (int64, on the device); each query
// attends to every key of its sequence. out: contiguous [T, heads, head_dim] of `dtype`.
// max_len is the longest sequence; head_dim <= kEncoderMaxHeadDim.
cudaError_t launch_encoder_attention(DType dtype, void* out, const EncoderQkv& qkv,
                                     const int64_t* cu_seqlens, int64_t num_seqs, int64_t max_len,
                                     int heads, int head_dim, float scale, cudaStream_t stream);

}  // namespace radixserve::cuda
