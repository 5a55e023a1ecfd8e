// Argument checks of the torch-facing CUDA ops: bad input raises ValueError naming the argument.
// UNTESTED ON HARDWARE (compile-checked only).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include "cuda/common.cuh"

namespace radixserve::cuda {

// A contiguous CUDA tensor with `dim` dimensions.
inline void check_cuda_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.defined(), name, " must be a tensor");
  TORCH_CHECK_VALUE(t.is_cuda(), name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on ", ref.device(), ", got ",
                    t.device());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK_VALUE(t.scalar_type() == dtype, name, " must be ", dtype, ", got ",
                    t.scalar_type());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t size) {
  TORCH_CHECK_VALUE(t.size(dim) == size, name, ".size(", dim, ") must be ", size, ", got ",
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
      TORCH_CHECK_VALUE(false, name, " must be float32, bfloat16 or float16, got ",
                        t.scalar_type());
  }
  return DType::kFloat32;  // not reached
}

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

}  // namespace radixserve::cuda
