// RMSNorm and fused residual-add + RMSNorm: one thread block per row, float accumulation.
// Tested on an H200 (tools/gpu_check.sh).
#include "cuda/norm.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, typename W>
__global__ void rms_norm_kernel(T* __restrict__ out, const T* __restrict__ x,
                                const W* __restrict__ weight, int64_t hidden, float eps) {
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  T* outr = out + row * hidden;
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = to_float(xr[i]);
    sq += v * v;
  }
  const float inv_rms = rsqrtf(block_sum(sq, scratch) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    outr[i] = from_float<T>(to_float(xr[i]) * inv_rms * to_float(weight[i]));
  }
}

template <typename T, typename W>
__global__ void fused_add_rms_norm_kernel(T* __restrict__ x, T* __restrict__ residual,
                                          const W* __restrict__ weight, int64_t hidden,
                                          float eps) {
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;
  T* xr = x + row * hidden;
  T* rr = residual + row * hidden;
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    // Round the sum to the storage type first: the norm must see the residual it stores.
    const T sum = from_float<T>(to_float(xr[i]) + to_float(rr[i]));
    rr[i] = sum;
    const float v = to_float(sum);
    sq += v * v;
  }
  const float inv_rms = rsqrtf(block_sum(sq, scratch) / static_cast<float>(hidden) + eps);
  // Each thread re-reads only the elements it wrote itself, so no barrier is needed.
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    xr[i] = from_float<T>(to_float(rr[i]) * inv_rms * to_float(weight[i]));
  }
}

int threads_for(int64_t hidden) {
  // Small rows get fewer threads; always a whole number of warps.
  const int64_t warps = (hidden + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(warps >= kThreads / kWarpSize ? kThreads : warps * kWarpSize);
}

// Runs body(T{}, W{}): W is float when weight_dtype is float32, else T (weight_dtype == dtype).
template <typename Body>
cudaError_t dispatch_norm(DType dtype, DType weight_dtype, Body&& body) {
  if (weight_dtype != dtype && weight_dtype != DType::kFloat32) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (weight_dtype == DType::kFloat32) return body(tag, float{});
    return body(tag, tag);
  });
}

}  // namespace

cudaError_t launch_rms_norm(DType dtype, DType weight_dtype, void* out, const void* x,
                            const void* weight, int64_t rows, int64_t hidden, float eps,
                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return dispatch_norm(dtype, weight_dtype, [&](auto tag, auto wtag) {
    using T = decltype(tag);
    using W = decltype(wtag);
    rms_norm_kernel<T, W><<<static_cast<unsigned>(rows), threads_for(hidden), 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(x), static_cast<const W*>(weight), hidden,
        eps);
    return cudaGetLastError();
  });
}

cudaError_t launch_fused_add_rms_norm(DType dtype, DType weight_dtype, void* x, void* residual,
                                      const void* weight, int64_t rows, int64_t hidden, float eps,
                                      cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return dispatch_norm(dtype, weight_dtype, [&](auto tag, auto wtag) {
    using T = decltype(tag);
    using W = decltype(wtag);
    fused_add_rms_norm_kernel<T, W>
        <<<static_cast<unsigned>(rows), threads_for(hidden), 0, stream>>>(
            static_cast<T*>(x), static_cast<T*>(residual), static_cast<const W*>(weight),
            hidden, eps);
    return cudaGetLastError();
  });
}

}  // namespace radixserve::cuda
