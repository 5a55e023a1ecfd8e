// Linear layer for CPU: the weight is packed once at load time into 32-row blocks that the
// kernels stream front to back (layout: gemm_kernels.h), then y = x @ W^T + b runs on it.
#pragma once

#include <torch/extension.h>

#include <optional>

#include "cpu/split_call.h"

namespace radixserve::cpu {

// weight [N, K] float32 or bfloat16 -> packed 1-D uint8 tensor: a 64-byte header (magic, N, K,
// dtype) followed by the blocks. Opaque to Python; only linear() reads it.
torch::Tensor pack_linear_weight(const torch::Tensor& weight);

// x [M, K] (same dtype as the packed weight), bias [N] (x's dtype or float32) or None
// -> [M, N] in x's dtype, accumulated in fp32. With `out` ([M, N], x's dtype): only output
// columns [col_begin, col_end) (col_end < 0: N) are computed, into out, which is returned; the
// ends must be multiples of 32 (or N), and those columns get the bits of the whole product.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed,
                     const std::optional<torch::Tensor>& bias,
                     const std::optional<torch::Tensor>& out = std::nullopt,
                     int64_t col_begin = 0, int64_t col_end = -1);
// linear as a prepared call (split_call.h): what linear runs, and what the fused decode step
// runs inside its own OpenMP region.
SplitCall prepare_linear(const torch::Tensor& x, const torch::Tensor& packed,
                         const std::optional<torch::Tensor>& bias,
                         const std::optional<torch::Tensor>& out = std::nullopt,
                         int64_t col_begin = 0, int64_t col_end = -1);

// The kernel build linear() uses now: "avx512bf16", "avx512", "avx2" or "generic".
std::string linear_isa();

}  // namespace radixserve::cpu
