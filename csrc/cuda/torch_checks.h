// Argument checks of the torch-facing CUDA ops: bad input raises ValueError naming the argument.
// Tested on an H200 (tools/gpu_check.sh).
#pragma once

#include <ATen/core/Tensor.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "error_message.h"

#include "cuda/common.cuh"

// Bad input -> std::invalid_argument (pybind11 raises ValueError); a failed launch ->
// std::runtime_error (RuntimeError). Not TORCH_CHECK: its c10::str message is what crashed on
// an H200 machine (error_message.h says why).
#define RS_CUDA_CHECK_VALUE(cond, ...)                                                 \
  do {                                                                                 \
    if (!(cond)) throw std::invalid_argument(radixserve::error_message(__VA_ARGS__)); \
  } while (0)
#define RS_CUDA_CHECK(cond, ...)                                                     \
  do {                                                                               \
    if (!(cond)) throw std::runtime_error(radixserve::error_message(__VA_ARGS__)); \
  } while (0)

namespace radixserve::cuda {

// A contiguous CUDA tensor with `dim` dimensions.
inline void check_cuda_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  RS_CUDA_CHECK_VALUE(t.defined(), name, " must be a tensor");
  RS_CUDA_CHECK_VALUE(t.is_cuda(), name, " must be a CUDA tensor, got device ", t.device());
  RS_CUDA_CHECK_VALUE(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ",
                    t.sizes());
  RS_CUDA_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  RS_CUDA_CHECK_VALUE(t.device() == ref.device(), name, " must be on ", ref.device(), ", got ",
                    t.device());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  RS_CUDA_CHECK_VALUE(t.scalar_type() == dtype, name, " must be ", dtype, ", got ",
                    t.scalar_type());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t size) {
  RS_CUDA_CHECK_VALUE(t.size(dim) == size, name, ".size(", dim, ") must be ", size, ", got ",
                    t.size(dim), " (shape ", t.sizes(), ")");
}

// float32, bfloat16 or float16, as the launchers' DType.
inline DType float_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kHalf:
      return DType::kFloat16;
    default:
      RS_CUDA_CHECK_VALUE(false, name, " must be float32, bfloat16 or float16, got ",
                        t.scalar_type());
  }
  return DType::kFloat32;  // not reached
}

inline void check_launch(cudaError_t err, const char* op) {
  RS_CUDA_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

}  // namespace radixserve::cuda
