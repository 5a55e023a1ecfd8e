// SiLU-and-multiply (the SwiGLU gate): one block per row, float math.
// Tested on an H200 (tools/gpu_check.sh).
#include "cuda/activation.cuh"

namespace radixserve::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void silu_and_mul_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t inter) {
  const int64_t row = blockIdx.x;
  const T* gate = x + row * 2 * inter;
  const T* up = gate + inter;
  T* o = out + row * inter;
  for (int64_t i = threadIdx.x; i < inter; i += blockDim.x) {
    const float g = to_float(gate[i]);
    // silu(g) = g / (1 + exp(-g)); a very negative g gives g / inf = -0, as torch does.
    o[i] = from_float<T>(g / (1.0f + expf(-g)) * to_float(up[i]));
  }
}

}  // namespace

cudaError_t launch_silu_and_mul(DType dtype, void* out, const void* x, int64_t rows, int64_t inter,
                                cudaStream_t stream) {
  if (rows == 0 || inter == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    silu_and_mul_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(x), inter);
    return cudaGetLastError();
  });
}

}  // namespace radixserve::cuda
