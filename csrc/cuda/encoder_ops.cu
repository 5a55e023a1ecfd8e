// Encoder kernels: LayerNorm (+ residual) one block per row, GELU grid-stride, and encoder
// attention one warp per query with K/V tiles in shared memory and an online softmax.
// Tested on an H200 (tools/gpu_check.sh).
#include <algorithm>

#include "cuda/encoder_ops.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kNormThreads = 256;
constexpr int kGeluThreads = 256;
constexpr int kAttnWarps = 8;  // queries per block
constexpr int kKeyTile = 32;   // keys staged in shared memory at a time
constexpr int kPerLane = kEncoderMaxHeadDim / kWarpSize;

template <typename T>
__device__ __forceinline__ float sum_at(const T* x, const T* res, int64_t i) {
  return to_float(x[i]) + (res ? to_float(res[i]) : 0.0f);
}

// Two passes over the row, as the CPU kernel and torch: mean, then variance about the mean.
template <typename T>
__global__ void layer_norm_kernel(T* __restrict__ out, const T* __restrict__ x,
                                  const T* __restrict__ residual, const float* __restrict__ w,
                                  const float* __restrict__ b, int64_t hidden, float eps) {
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  const T* rr = residual ? residual + row * hidden : nullptr;
  T* outr = out + row * hidden;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) s += sum_at(xr, rr, i);
  const float mean = block_sum(s, scratch) / static_cast<float>(hidden);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float d = sum_at(xr, rr, i) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    outr[i] = from_float<T>((sum_at(xr, rr, i) - mean) * inv * w[i] + b[i]);
  }
}

template <typename T>
__global__ void gelu_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t n,
                            bool tanh_approx) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const float v = to_float(x[i]);
    const float inner = tanh_approx ? tanhf(0.7978845608f * (v + 0.044715f * v * v * v))
                                    : erff(v * 0.70710678118654752f);
    out[i] = from_float<T>(0.5f * v * (1.0f + inner));
  }
}

// Block (sequence, head, query group): warp w owns query group * kAttnWarps + w; lane holds
// dims lane, lane + 32, ... of its query (pre-scaled) and of the running output.
template <typename T>
__global__ void encoder_attention_kernel(T* __restrict__ out, EncoderQkv qkv,
                                         const int64_t* __restrict__ cu_seqlens, int heads,
                                         int head_dim, float scale) {
  extern __shared__ float tiles[];  // K tile then V tile, kKeyTile * head_dim floats each
  float* k_tile = tiles;
  float* v_tile = tiles + kKeyTile * head_dim;
  const int64_t seq = blockIdx.x;
  const int head = blockIdx.y;
  const int64_t t0 = cu_seqlens[seq];
  const int64_t n = cu_seqlens[seq + 1] - t0;
  const int64_t first_query = static_cast<int64_t>(blockIdx.z) * kAttnWarps;
  if (first_query >= n) return;  // the whole block: no thread reaches a barrier
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t qi = first_query + warp;
  const bool active = qi < n;  // one value per warp, so the warp shuffles below stay full
  const T* q = static_cast<const T*>(qkv.q);
  const T* k = static_cast<const T*>(qkv.k);
  const T* v = static_cast<const T*>(qkv.v);
  float qreg[kPerLane], acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int d = lane + c * kWarpSize;
    qreg[c] = active && d < head_dim
                  ? to_float(q[(t0 + qi) * qkv.q_token_stride + head * qkv.q_head_stride + d]) *
                        scale
                  : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < n; j0 += kKeyTile) {
    const int tile = static_cast<int>(n - j0 < kKeyTile ? n - j0 : kKeyTile);
    __syncthreads();  // the previous tile is no longer read
    for (int idx = threadIdx.x; idx < tile * head_dim; idx += blockDim.x) {
      const int64_t t = t0 + j0 + idx / head_dim;
      const int d = idx % head_dim;
      k_tile[idx] = to_float(k[t * qkv.k_token_stride + head * qkv.k_head_stride + d]);
      v_tile[idx] = to_float(v[t * qkv.v_token_stride + head * qkv.v_head_stride + d]);
    }
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < tile; ++j) {
      float part = 0.0f;
#pragma unroll
      for (int c = 0; c < kPerLane; ++c) {
        const int d = lane + c * kWarpSize;
        if (d < head_dim) part += qreg[c] * k_tile[j * head_dim + d];
      }
      const float s = warp_sum(part);
      const float m_new = fmaxf(m, s);
      const float correction = expf(m - m_new);  // 0 on the first key (m = -inf)
      const float p = expf(s - m_new);
      l = l * correction + p;
#pragma unroll
      for (int c = 0; c < kPerLane; ++c) {
        const int d = lane + c * kWarpSize;
        acc[c] = acc[c] * correction + (d < head_dim ? p * v_tile[j * head_dim + d] : 0.0f);
      }
      m = m_new;
    }
  }
  if (!active) return;
  T* o = out + ((t0 + qi) * heads + head) * head_dim;
  const float inv_l = 1.0f / l;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int d = lane + c * kWarpSize;
    if (d < head_dim) o[d] = from_float<T>(acc[c] * inv_l);
  }
}

}  // namespace

cudaError_t launch_layer_norm(DType dtype, void* out, const void* x, const void* residual,
                              const float* weight, const float* bias, int64_t rows,
                              int64_t hidden, float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t warps = (hidden + kWarpSize - 1) / kWarpSize;
  const int threads =
      static_cast<int>(std::min<int64_t>(warps * kWarpSize, kNormThreads));
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    layer_norm_kernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(residual), weight,
        bias, hidden, eps);
    return cudaGetLastError();
  });
}

cudaError_t launch_gelu(DType dtype, void* out, const void* x, int64_t n, bool tanh_approx,
                        cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + kGeluThreads - 1) / kGeluThreads, 65535);
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    gelu_kernel<T><<<static_cast<unsigned>(blocks), kGeluThreads, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(x), n, tanh_approx);
    return cudaGetLastError();
  });
}

cudaError_t launch_encoder_attention(DType dtype, void* out, const EncoderQkv& qkv,
                                     const int64_t* cu_seqlens, int64_t num_seqs, int64_t max_len,
                                     int heads, int head_dim, float scale, cudaStream_t stream) {
  if (num_seqs == 0 || max_len == 0 || heads == 0) return cudaSuccess;
  if (head_dim <= 0 || head_dim > kEncoderMaxHeadDim) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_seqs), static_cast<unsigned>(heads),
                  static_cast<unsigned>((max_len + kAttnWarps - 1) / kAttnWarps));
  const size_t smem = 2 * sizeof(float) * kKeyTile * static_cast<size_t>(head_dim);
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    encoder_attention_kernel<T><<<grid, kAttnWarps * kWarpSize, smem, stream>>>(
        static_cast<T*>(out), qkv, cu_seqlens, heads, head_dim, scale);
    return cudaGetLastError();
  });
}

}  // namespace radixserve::cuda
