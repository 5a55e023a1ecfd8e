// Argument checks shared by the torch-facing CPU kernels: user errors raise ValueError in Python
// with a message naming the argument, instead of crashing inside a kernel.
#pragma once

#include <torch/extension.h>

#include <string>

#define RS_CHECK(cond, ...)                                     \
  do {                                                          \
    if (!(cond)) throw pybind11::value_error(c10::str(__VA_ARGS__)); \
  } while (0)

namespace radixserve::cpu {

// A contiguous CPU tensor with `dim` dimensions.
inline void check_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  RS_CHECK(t.defined(), name, " must be a tensor");
  RS_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  RS_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got shape ", t.sizes());
  RS_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  RS_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

// float32 or bfloat16, the dtypes the kernels compute in.
inline void check_float_dtype(const at::Tensor& t, const char* name) {
  RS_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
           " must be float32 or bfloat16, got ", t.scalar_type());
}

inline void check_same_dtype(const at::Tensor& t, const at::Tensor& ref, const char* name,
                             const char* ref_name) {
  RS_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have the dtype of ", ref_name, " (",
           ref.scalar_type(), "), got ", t.scalar_type());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t size) {
  RS_CHECK(t.size(dim) == size, name, ".size(", dim, ") must be ", size, ", got ", t.size(dim),
           " (shape ", t.sizes(), ")");
}

}  // namespace radixserve::cpu
