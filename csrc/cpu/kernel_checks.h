// Argument checks shared by the torch-facing CPU kernels: user errors raise ValueError in Python
// with a message naming the argument, instead of crashing inside a kernel.
#pragma once

#include <torch/extension.h>

#include <string>

#include "error_message.h"

#define RS_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) throw pybind11::value_error(radixserve::error_message(__VA_ARGS__)); \
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

// Output columns per work item of the linear ops (gemm.cpp's blocks, quant.cpp's tiles; both
// assert it), the unit of a column range.
constexpr int64_t kColumnBlock = 32;

// The output columns [col_begin, col_end) a linear op writes into a caller's `out` ([m, n],
// `dtype`); col_end < 0 means n. Both ends must fall on kColumnBlock (col_end may be n): then
// the op runs exactly the work items of the whole product over those columns, so a product
// computed slice by slice equals the whole one bit for bit. Returns col_end.
inline int64_t check_column_range(const at::Tensor& out, int64_t m, int64_t n,
                                  at::ScalarType dtype, int64_t col_begin, int64_t col_end,
                                  const char* op) {
  check_tensor(out, "out", 2);
  RS_CHECK(out.size(0) == m && out.size(1) == n, op, ": out must have shape [", m, ", ", n,
           "], got ", out.sizes());
  check_dtype(out, "out", dtype);
  const int64_t end = col_end < 0 ? n : col_end;
  RS_CHECK(col_begin >= 0 && col_begin < end && end <= n && col_begin % kColumnBlock == 0 &&
               (end % kColumnBlock == 0 || end == n),
           op, ": columns [", col_begin, ", ", end, ") must be a non-empty range within [0, ", n,
           ") whose ends are multiples of ", kColumnBlock, " (or N)");
  return end;
}

}  // namespace radixserve::cpu
