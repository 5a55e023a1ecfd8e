// Rotary position embedding, neox (halves) and GPT-J (pairs) styles: one block per token, one
// thread per (head, rotation pair). Tested on an H200 (tools/gpu_check.sh).
#include "cuda/rope.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kThreads = 256;

// Rotates one (x1, x2) pair of one head in place.
template <typename T>
__device__ __forceinline__ void rotate_pair(T* head, int i, int half, const float* cos_sin,
                                            bool is_neox) {
  const int i1 = is_neox ? i : 2 * i;
  const int i2 = is_neox ? i + half : 2 * i + 1;
  const float c = cos_sin[i];
  const float s = cos_sin[half + i];
  const float x1 = to_float(head[i1]);
  const float x2 = to_float(head[i2]);
  head[i1] = from_float<T>(x1 * c - x2 * s);
  head[i2] = from_float<T>(x2 * c + x1 * s);
}

template <typename T>
__global__ void rotary_kernel(const int64_t* __restrict__ positions, T* __restrict__ query,
                              int64_t q_stride, T* __restrict__ key, int64_t k_stride,
                              int num_q_heads, int num_kv_heads,
                              int head_size, const float* __restrict__ cos_sin_cache, int rot_dim,
                              bool is_neox) {
  const int64_t token = blockIdx.x;
  const int half = rot_dim / 2;
  const float* cos_sin = cos_sin_cache + positions[token] * rot_dim;
  T* q = query + token * q_stride;
  T* k = key == nullptr ? nullptr : key + token * k_stride;
  const int q_work = num_q_heads * half;
  const int total = q_work + num_kv_heads * half;
  for (int w = threadIdx.x; w < total; w += blockDim.x) {
    if (w < q_work) {
      rotate_pair(q + (w / half) * head_size, w % half, half, cos_sin, is_neox);
    } else {
      const int kw = w - q_work;
      rotate_pair(k + (kw / half) * head_size, kw % half, half, cos_sin, is_neox);
    }
  }
}

}  // namespace

cudaError_t launch_rotary_embedding(DType dtype, const int64_t* positions, void* query,
                                    int64_t q_stride, void* key, int64_t k_stride,
                                    int64_t num_tokens, int num_q_heads, int num_kv_heads,
                                    int head_size, const float* cos_sin_cache, int rot_dim,
                                    bool is_neox, cudaStream_t stream) {
  if (num_tokens == 0 || rot_dim == 0) return cudaSuccess;
  if (key == nullptr) num_kv_heads = 0;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rotary_kernel<T><<<static_cast<unsigned>(num_tokens), kThreads, 0, stream>>>(
        positions, static_cast<T*>(query), q_stride, static_cast<T*>(key), k_stride, num_q_heads,
        num_kv_heads, head_size, cos_sin_cache, rot_dim, is_neox);
    return cudaGetLastError();
  });
}

}  // namespace radixserve::cuda
